"""Run every method on the test slices: outputs, per-slice metrics, attention error, FID features, timing."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from vagan.data.patches import SlicePair
from vagan.errors import MethodOutputError
from vagan.evaluation.eval_config import EvaluationConfig
from vagan.evaluation.fid import FIDResult, fid_from_features
from vagan.evaluation.inputs import EvaluationData, Method
from vagan.evaluation.metrics import (
    MetricAccumulator,
    MetricSummary,
    summarize,
)

if TYPE_CHECKING:
    from vagan.evaluation.feature_nets import FeatureNet
    from vagan.evaluation.quality_run import SliceNoisePlan
    from vagan.inference.model_loading import TrainedModel

log = logging.getLogger(__name__)


def _chunks(pairs: Sequence[SlicePair], size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of at most ``size`` consecutive slices of one shape."""
    out, start = [], 0
    for i in range(1, len(pairs) + 1):
        if i == len(pairs) or i - start == size or pairs[i].ndct.shape != pairs[start].ndct.shape:
            out.append((start, i))
            start = i
    return out


def _apply(method: Method, ldct: np.ndarray, ndct: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Output HU (and M_T for attentive models) of one chunk."""
    if method.spec.kind == "ldct":
        return ldct, None
    if method.spec.kind == "ndct":
        return ndct, None
    result = method.denoiser(ldct, keep_attention=method.has_attention)
    return result.hu, result.attention


def _attention_mse(ldct: np.ndarray, ndct: np.ndarray, learned: np.ndarray, model: TrainedModel
                   ) -> dict[str, list[float]]:
    """Per-slice MSE(M_T, M) (the last term of eq. 6) for both target modes of eq. 5."""
    from vagan.data.attention_target import ATTENTION_MODES, attention_target

    hu_range = model.hu_range
    x, y = torch.from_numpy(hu_range.to_unit(ldct)), torch.from_numpy(hu_range.to_unit(ndct))
    m_t = torch.from_numpy(learned)
    return {mode: ((m_t - attention_target(x, y, mode)) ** 2).mean(dim=(-2, -1)).tolist() for mode in ATTENTION_MODES}


def _fit(image: np.ndarray, size: int, fill: float = -1024.0) -> np.ndarray:
    """Centre-crop or centre-pad (with air) an ``(H, W)`` slice to ``size x size``."""
    out = np.full((size, size), fill, dtype=np.float32)
    h, w = image.shape
    sr, sc = max(0, (h - size) // 2), max(0, (w - size) // 2)
    dr, dc = max(0, (size - h) // 2), max(0, (size - w) // 2)
    ch, cw = min(h, size), min(w, size)
    out[dr:dr + ch, dc:dc + cw] = image[sr:sr + ch, sc:sc + cw]
    return out


def time_method(method: Method, slices: Sequence[np.ndarray], device: torch.device) -> MetricSummary:
    """Milliseconds per slice: one warm-up call, then one timed call per slice (batch of 1).

    Networks: the first slice is the warm-up (kernel selection is shape-dependent); BM3D: a
    64x64 crop (its cost grows with size and it has nothing to compile). Times include the
    host <-> device copies of the input and output.
    """
    first = slices[0]
    r, c = max(0, first.shape[0] // 2 - 32), max(0, first.shape[1] // 2 - 32)
    warm = first if method.spec.kind == "model" else first[r:r + 64, c:c + 64]
    method.denoiser(warm[None])
    times = []
    for image in slices:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        method.denoiser(image[None])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(1000.0 * (time.perf_counter() - start))
    return summarize(times)


@dataclass
class Collected:
    """Everything a run over the test set produced (in memory, before writing)."""

    acc: MetricAccumulator
    fid: dict[str, FIDResult] = field(default_factory=dict)
    fid_skipped: str | None = None  # why FID was not computed although a feature net was given
    timing: dict[str, MetricSummary] = field(default_factory=dict)
    outputs: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)  # method -> slice -> HU
    attention: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    attention_mse: dict[str, dict[str, MetricSummary]] = field(default_factory=dict)
    bm3d_sigmas: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    noise_rois: dict[str, list[np.ndarray]] = field(default_factory=dict)  # method -> uniform ROIs of its outputs
    notes: list[str] = field(default_factory=list)


def run_methods(cfg: EvaluationConfig, methods: Sequence[Method], test: EvaluationData, device: torch.device,
                fid_net: FeatureNet | None, keep: Sequence[int], progress: bool = True,
                noise_rois: SliceNoisePlan | None = None) -> Collected:
    """Run every method on all test slices; score, extract FID features, time, keep figure slices and
    cut the ``noise_rois`` out of each output."""
    from tqdm.auto import tqdm

    from vagan.evaluation.feature_nets import body_tiles, extract_features, fid_label, fid_samples
    from vagan.inference.bm3d_denoiser import BM3DDenoiser

    pairs = test.pairs
    chunks = _chunks(pairs, cfg.batch_size)
    keep = set(keep)
    acc = MetricAccumulator([m.name for m in methods], cfg.patches)
    out = Collected(acc)

    def stack(start: int, stop: int, what: str) -> np.ndarray:
        return np.stack([getattr(p, what) for p in pairs[start:stop]]).astype(np.float32)

    real_features, fid_name = None, None
    if fid_net is not None:
        tile = cfg.fid_tile
        samples = sum(len(body_tiles(stack(a, b, "ndct"), tile)) for a, b in chunks) if tile else len(pairs)
        if samples < 2:
            out.fid_skipped = (f"fewer than 2 test {tile}x{tile} tiles inside the body (fid_tile=0 takes whole slices)"
                               if tile else "fewer than 2 test slices")
            out.notes.append(f"FID was not computed: {out.fid_skipped}.")
            fid_net = None
        else:
            fid_net, fid_name = fid_net.to(device), fid_label(fid_net.name, tile)
            real = (fid_samples(ndct, ndct, tile) for ndct in (stack(a, b, "ndct") for a, b in chunks))
            real_features = torch.cat([extract_features(fid_net, r, cfg.batch_size) for r in real if len(r)])
    for method in methods:
        feats, mse = [], {"signed": [], "abs": []}
        out.outputs[method.name], out.attention[method.name] = {}, {}
        rois = out.noise_rois.setdefault(method.name, []) if noise_rois is not None and method.spec.kind != "ndct" \
            else None
        sigmas: list[float] = []
        start_time = time.perf_counter()
        with tqdm(total=len(pairs), desc=method.name, unit="slice", disable=not progress, dynamic_ncols=True) as bar:
            for a, b in chunks:
                ldct, ndct = stack(a, b, "ldct"), stack(a, b, "ndct")
                hu, attention = _apply(method, ldct, ndct)
                if not np.isfinite(hu).all():
                    raise MethodOutputError(f"method {method.name} produced NaN/inf on test slices {a}-{b - 1}; "
                                            "check the checkpoint")
                acc.update(method.name, hu, ndct, image_index=a)
                if fid_net is not None and len(seen := fid_samples(hu, ndct, cfg.fid_tile)):
                    feats.append(extract_features(fid_net, seen, cfg.batch_size))
                if isinstance(method.denoiser, BM3DDenoiser):
                    sigmas.extend(method.denoiser.last_sigmas_hu)
                if attention is not None:
                    for mode, values in _attention_mse(ldct, ndct, attention, method.model).items():
                        mse[mode].extend(values)
                if rois is not None:
                    side = noise_rois.side
                    rois.extend(hu[i - a, r:r + side, c:c + side].copy() for i in range(a, b)
                                for r, c in noise_rois.rois.get(i, ()))
                for i in keep & set(range(a, b)):
                    out.outputs[method.name][i] = np.array(hu[i - a])
                    if attention is not None:
                        out.attention[method.name][i] = np.array(attention[i - a])
                bar.update(b - a)
        out.seconds[method.name] = time.perf_counter() - start_time
        if sigmas:
            out.bm3d_sigmas[method.name] = sigmas
        if mse["signed"]:
            out.attention_mse[method.name] = {mode: summarize(v) for mode, v in mse.items()}
        if real_features is not None:
            out.fid[method.name] = fid_from_features(real_features, torch.cat(feats), fid_name)
    if cfg.timing_slices:
        images = [_fit(pairs[i % len(pairs)].ldct, cfg.timing_size) for i in range(cfg.timing_slices)]
        for method in methods:
            if method.denoiser is not None:
                log.info("timing %s on %d slices of %d^2", method.name, len(images), cfg.timing_size)
                out.timing[method.name] = time_method(method, images, device)
    return out


