"""Trained models + a test set -> Table II, the figures, timings and a report (paper section III.C; docs/design.md, "Metrics").

:func:`evaluate` runs every method of an :class:`EvaluationConfig` on whole test slices,
scores them against NDCT (:mod:`vagan.evaluation.metrics`, both conventions), computes one FID
per method (real = NDCT slices, fake = the method's outputs), times each method on 512x512
slices and writes, into one folder that appears atomically::

    report.md, report.html      Table II, supplementary tables, figures and a description
    metrics.csv                 one row per (method, slice)
    summary.json                everything in the tables, machine-readable ("inf" as a string)
    figures/*.png               comparison_K, attention_<method>, curves_<method>

A method is ``ldct`` (the input itself), ``ndct`` (an oracle returning the reference: a sanity
row with PSNR inf, SSIM 1, FID 0), ``bm3d`` (sigma estimated per slice), ``bm3d:SIGMA_HU``
or the path of a checkpoint / run folder (:func:`vagan.inference.model_loading.load_trained_model`).
The test slices are by default the ``test`` patients of the first model's own data split, so
the evaluation never touches that model's training patients; a report note flags any overlap.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vagan.data.patches import SlicePair
from vagan.devices import resolve_device
from vagan.errors import ConfigError, InputDataError, VaganError
from vagan.evaluation.eval_config import EvaluationConfig, MethodSpec
from vagan.evaluation.evaluation_figures import figure_indices, write_figures
from vagan.evaluation.fid import FIDResult, fid_from_features
from vagan.evaluation.metrics import (
    METRICS,
    MetricAccumulator,
    MetricSummary,
    summarize,
)
from vagan.evaluation.report import (
    ReportFigure,
    ReportPaths,
    ReportSection,
    ReportTable,
    report_metadata,
    write_report,
)
from vagan.evaluation.table import format_summary, table_ii
from vagan.io.atomic import atomic_dir, check_no_overlap, check_output
from vagan.precision import Precision, resolve_precision

log = logging.getLogger(__name__)

DEFAULT_SPLIT: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}  # = DataConfig's default
Box = tuple[int, int, int, int]


# --------------------------------------------------------------------------- resolved pieces


@dataclass
class Method:
    """A method ready to run: its name, spec and denoiser (``None`` for ``ldct``/``ndct``)."""

    name: str
    spec: MethodSpec
    denoiser: Any = None
    model: Any = None  # vagan.inference.model_loading.TrainedModel for networks
    run_dir: Path | None = None  # the run folder of a model, when it has one

    @property
    def has_attention(self) -> bool:
        return self.model is not None and self.model.has_attention


@dataclass(frozen=True)
class EvaluationData:
    """The test slices and where they came from."""

    pairs: list[SlicePair]
    root: Path
    subset: str
    patients: tuple[str, ...]
    split: Mapping[str, Any] | None
    split_seed: int
    thickness: str
    split_source: str

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return sorted({p.ndct.shape for p in self.pairs})

    def label(self, index: int) -> str:
        pair = self.pairs[index]
        return f"{pair.patient} slice {pair.index + 1}"


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` wrote and computed (paths point into ``out_dir``)."""

    out_dir: Path
    report: ReportPaths
    metrics_csv: Path
    summary_json: Path
    figures: tuple[Path, ...]
    summary: dict[str, dict[str, MetricSummary]]
    fid: dict[str, FIDResult]
    timing_ms: dict[str, MetricSummary]
    table: ReportTable
    notes: tuple[str, ...] = ()


def _run_dir_of(spec_path: Path, checkpoint: Path) -> Path | None:
    """The run folder (holding ``logs/metrics.csv``) of a model given as a run or checkpoint folder."""
    for candidate in (spec_path, *checkpoint.parents[:3]):
        if (candidate / "logs" / "metrics.csv").is_file():
            return candidate
    return None


def load_methods(cfg: EvaluationConfig, device: torch.device, precision: Precision) -> list[Method]:
    """Load every model (a :class:`~vagan.errors.CheckpointError` for a folder that is not one) and name all methods."""
    from vagan.inference.bm3d_denoiser import BM3DDenoiser
    from vagan.inference.denoise import NetworkDenoiser
    from vagan.inference.model_loading import load_trained_model

    methods = []
    for spec in cfg.methods:
        if spec.kind == "model":
            model = load_trained_model(spec.path, device)
            name = spec.name or model.name
            denoiser = NetworkDenoiser(model, cfg.batch_size, device, precision=precision, compile=cfg.compile, name=name)
            methods.append(Method(name, spec, denoiser, model, _run_dir_of(spec.path, model.checkpoint)))
        elif spec.kind == "bm3d":
            methods.append(Method(spec.name or spec.default_name(), spec, BM3DDenoiser(spec.sigma_hu)))
        else:
            methods.append(Method(spec.name or spec.default_name(), spec))
    seen: dict[str, int] = {}
    for m in methods:  # automatic names may clash (two runs of one preset): add the folder name
        seen[m.name] = seen.get(m.name, 0) + 1
    for m in methods:
        if seen[m.name] > 1 and not m.spec.name:
            m.name = f"{m.name} ({m.spec.path.name if m.spec.path else m.spec.spec})"
    names = [m.name for m in methods]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"methods: several methods are named {dup}; give them names (name=spec)")
    return methods


def load_test_set(cfg: EvaluationConfig, models: Sequence[Any]) -> EvaluationData:
    """The test slice pairs: ``cfg``'s dataset and split, or the first model's."""
    from vagan.data.paired import load_slice_pairs, patient_split
    from vagan.io.mayo import list_mayo_patients

    first = models[0].config.data if models else None
    source = f"model {models[0].name} ({models[0].checkpoint})" if models else "defaults"
    root = cfg.data_root or (first.root if first else None)
    if root is None:
        raise ConfigError("data_root is not set and no model names its dataset; give data_root (a dataset in the "
                          "Mayo layout, e.g. written by `vagan simulate`)")
    thickness = cfg.thickness or (first.thickness if first else "1mm")
    split = cfg.split if cfg.split is not None else (dict(first.split) if first else dict(DEFAULT_SPLIT))
    seed = cfg.split_seed if cfg.split_seed is not None else (first.split_seed if first else 0)
    if cfg.split is not None:
        source = "the evaluation config"
    root = Path(root).expanduser()
    if cfg.subset == "all":
        patients = list_mayo_patients(root, thickness) if root.is_dir() else []
        split_used: Mapping[str, Any] | None = None
        if not root.is_dir():
            raise InputDataError(f"dataset folder {root} does not exist; give data_root")
    else:
        subsets = patient_split(root, split, seed, thickness)
        if cfg.subset not in subsets:
            raise ConfigError(f"subset {cfg.subset!r} is not in the split; use one of {sorted(subsets)} or 'all'")
        patients = subsets[cfg.subset]
        split_used = split
    if not patients:
        raise InputDataError(
            f"{root}: the {cfg.subset!r} subset has no patients (split {split}, seed {seed}, source: {source}); "
            "give a split with test patients (e.g. split={train: [...], test: [P1]}), subset='all' for a folder of "
            "test patients only, or another data_root")
    pairs = load_slice_pairs(root, list(patients), thickness, cfg.max_slices)
    if not pairs:
        raise InputDataError(f"{root}: patients {patients} hold no slice pairs of thickness {thickness}")
    log.info("test set: %d slices of %d patient(s) from %s", len(pairs), len(patients), root)
    return EvaluationData(pairs, root, cfg.subset, tuple(patients), split_used, seed, thickness, source)


def leakage_notes(test: EvaluationData, models: Sequence[Any]) -> list[str]:
    """Warnings for models whose training/validation patients are among the test patients."""
    from vagan.data.paired import patient_split

    notes = []
    for model in models:
        d = model.config.data
        if d.root is None or Path(d.root).expanduser().resolve() != test.root.resolve():
            notes.append(f"{model.name} was trained on another dataset folder ({d.root}); patient overlap with "
                         f"the test set was not checked.")
            continue
        try:
            subsets = patient_split(test.root, d.split, d.split_seed, d.thickness)
        except VaganError as err:
            notes.append(f"{model.name}: its training split cannot be rebuilt ({err}); overlap not checked.")
            continue
        seen = sorted(set(test.patients) & (set(subsets.get("train", [])) | set(subsets.get("val", []))))
        if seen:
            notes.append(f"WARNING: {model.name} was trained or validated on test patients {seen}; its scores are "
                         "optimistic.")
    for note in notes:
        log.warning("%s", note)
    return notes


def build_fid_net(cfg: EvaluationConfig):
    """The FID :class:`~vagan.evaluation.feature_nets.FeatureNet`, or ``None`` for ``fid_net='none'``."""
    from vagan.evaluation.feature_nets import build_feature_net

    if cfg.fid_net == "none":
        return None
    if cfg.fid_net == "vgg19":
        from vagan.models.vgg import VGG19Features

        module = VGG19Features.from_pretrained(cfg.fid_weights, layer=cfg.fid_vgg_layer)
        return build_feature_net("vgg19", module=module, name=f"vgg19-imagenet({cfg.fid_vgg_layer})")
    weights = Path(cfg.fid_weights) if cfg.fid_weights else None
    return build_feature_net(cfg.fid_net, weights_path=weights, seed=cfg.fid_seed)


# --------------------------------------------------------------------------- running


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


def _attention_mse(ldct: np.ndarray, ndct: np.ndarray, learned: np.ndarray, model: Any) -> dict[str, list[float]]:
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
class _Collected:
    """Everything a run over the test set produced (in memory, before writing)."""

    acc: MetricAccumulator
    fid: dict[str, FIDResult] = field(default_factory=dict)
    timing: dict[str, MetricSummary] = field(default_factory=dict)
    outputs: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)  # method -> slice -> HU
    attention: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    attention_mse: dict[str, dict[str, MetricSummary]] = field(default_factory=dict)
    bm3d_sigmas: dict[str, list[float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def run_methods(cfg: EvaluationConfig, methods: Sequence[Method], test: EvaluationData, device: torch.device,
                fid_net: Any, keep: Sequence[int], progress: bool = True) -> _Collected:
    """Run every method on all test slices; score, extract FID features, time and keep figure slices."""
    from tqdm.auto import tqdm

    from vagan.evaluation.feature_nets import extract_features

    pairs = test.pairs
    chunks = _chunks(pairs, cfg.batch_size)
    keep = set(keep)
    acc = MetricAccumulator([m.name for m in methods], cfg.patches)
    out = _Collected(acc)

    def stack(start: int, stop: int, what: str) -> np.ndarray:
        return np.stack([getattr(p, what) for p in pairs[start:stop]]).astype(np.float32)

    real_features = None
    if fid_net is not None:
        if len(pairs) < 2:
            out.notes.append("FID needs at least 2 test slices; it was not computed.")
            fid_net = None
        else:
            fid_net = fid_net.to(device)
            real_features = torch.cat([extract_features(fid_net, stack(a, b, "ndct"), cfg.batch_size)
                                       for a, b in chunks])
    for method in methods:
        feats, mse = [], {"signed": [], "abs": []}
        out.outputs[method.name], out.attention[method.name] = {}, {}
        sigmas: list[float] = []
        start_time = time.perf_counter()
        with tqdm(total=len(pairs), desc=method.name, unit="slice", disable=not progress, dynamic_ncols=True) as bar:
            for a, b in chunks:
                ldct, ndct = stack(a, b, "ldct"), stack(a, b, "ndct")
                hu, attention = _apply(method, ldct, ndct)
                if not np.isfinite(hu).all():
                    raise VaganError(f"method {method.name} produced NaN/inf on test slices {a}-{b - 1}; "
                                     "check the checkpoint")
                acc.update(method.name, hu, ndct, image_index=a)
                if fid_net is not None:
                    feats.append(extract_features(fid_net, hu, cfg.batch_size))
                if method.spec.kind == "bm3d":
                    sigmas.extend(method.denoiser.last_sigmas_hu)
                if attention is not None:
                    for mode, values in _attention_mse(ldct, ndct, attention, method.model).items():
                        mse[mode].extend(values)
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
            out.fid[method.name] = fid_from_features(real_features, torch.cat(feats), fid_net.name)
    if cfg.timing_slices:
        images = [_fit(pairs[i % len(pairs)].ldct, cfg.timing_size) for i in range(cfg.timing_slices)]
        for method in methods:
            if method.denoiser is not None:
                log.info("timing %s on %d slices of %d^2", method.name, len(images), cfg.timing_size)
                out.timing[method.name] = time_method(method, images, device)
    return out


# --------------------------------------------------------------------------- report


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def _bm3d_text(collected: _Collected, methods: Sequence[Method]) -> str:
    lines = []
    for m in methods:
        if m.spec.kind != "bm3d":
            continue
        sig = collected.bm3d_sigmas.get(m.name, [])
        if m.spec.sigma_hu is not None:
            lines.append(f"- {m.name}: fixed sigma {m.spec.sigma_hu:g} HU.")
        elif sig:
            s = summarize(sig)
            lines.append(f"- {m.name}: sigma estimated per slice (wavelet MAD, skimage.restoration.estimate_sigma); "
                         f"mean {s.mean:.1f} HU (std {s.std:.1f}, min {min(sig):.1f}, max {max(sig):.1f}) over "
                         f"{s.n} slices. BM3D assumes white Gaussian noise; CT noise is neither.")
    return "\n".join(lines)


def _sections(cfg: EvaluationConfig, methods: Sequence[Method], test: EvaluationData, collected: _Collected,
              fid_name: str | None, device: torch.device, precision: Precision,
              notes: Sequence[str]) -> list[ReportSection]:
    shapes = ", ".join(f"{h}x{w}" for h, w in test.shapes)
    split = "all patients of the folder" if test.split is None else f"{dict(test.split)} (seed {test.split_seed})"
    data = (f"Dataset {test.root} (thickness {test.thickness}), subset {test.subset!r}: {len(test.patients)} "
            f"patient(s) ({', '.join(test.patients)}), {len(test.pairs)} slice pairs of {shapes} pixels"
            + (f" (capped at max_slices={cfg.max_slices})" if cfg.max_slices else "") + f".\n\nSplit: {split}; "
            f"taken from {test.split_source}.")
    p = cfg.patches
    conventions = (
        "Field convention (the paper's Table II): HU mapped from [-1024, 3072] to [0, 1] (clipped), data range 1; "
        f"on {p.per_image} patches of {p.size}x{p.size} per slice ({p.mode}, chosen from NDCT only, so every method "
        "is scored on the same pixels) and on whole slices.\n\n"
        "Window convention (RED-CNN code): HU clipped to the display window [-160, 240], data range 400 HU, whole "
        "slices. RMSE in HU on raw whole slices. SSIM: Gaussian window sigma 1.5, K1 0.01, K2 0.03.\n\n"
        "Every method sees whole slices (networks are fully convolutional) and is compared with NDCT. "
        "'NDCT (oracle)' returns the reference itself: a sanity row (PSNR inf, SSIM 1, FID 0).")
    if fid_name is None:
        fid = "FID was not computed (fid_net: none" + (", or fewer than 2 test slices)." if len(test.pairs) < 2 else ").")
    else:
        fid = (f"FID per method between the NDCT slices (real) and the method's outputs (fake), whole slices mapped "
               f"through the display window [-160, 240] HU to [0, 1], features from {fid_name}. "
               f"n = {len(test.pairs)} slices per set: far fewer than the 2048 needed for an unbiased estimate, so "
               "values are biased upwards and only the ranking of methods on the same test set means anything.")
        if fid_name.startswith("random-ct"):
            fid += (" random-ct is an untrained network with fixed-seed random weights (no pretrained weights are "
                    "available offline): its FIDs cannot be compared with published ones.")
    timing = ("Not measured (timing_slices = 0)." if not cfg.timing_slices else
              f"Milliseconds per {cfg.timing_size}x{cfg.timing_size} slice, mean ± std over {cfg.timing_slices} "
              "test LDCT slices centre-padded with air / cropped to that size, one slice per call, after one "
              "warm-up call; includes host-device copies. Paper: about 80 ms on a Titan V GPU.")
    run_s = ", ".join(f"{name} {s:.1f} s" for name, s in collected.seconds.items())
    env = (f"Device: {describe_device(device)}; torch {torch.__version__}, {torch.get_num_threads()} intra-op "
           f"threads; batch size {cfg.batch_size}; networks channels-last, precision {precision.describe()}"
           f"{', torch.compile' if _compiled(methods) else ''}."
           f"\n\nWall time over the test set: {run_s}.")
    described = []
    for m in methods:
        if m.model is not None:
            c = m.model.config
            described.append(f"- {m.name}: preset {c.preset}, stage {m.model.stage}, generator {c.model.generator} "
                             f"({c.model.generator_features} features), checkpoint {m.model.checkpoint}; "
                             f"HU range [{c.data.hu_min:g}, {c.data.hu_max:g}], attention target mode "
                             f"{c.data.attention_mode}; inference in {m.denoiser.precision.describe()}.")
        else:
            described.append(f"- {m.name}: {m.spec.spec}.")
    sections = [
        ReportSection("Test data", data),
        ReportSection("Methods", "\n".join(described) + ("\n\n" + _bm3d_text(collected, methods)
                                                          if any(m.spec.kind == "bm3d" for m in methods) else "")),
        ReportSection("Metric conventions", conventions),
        ReportSection("FID", fid),
        ReportSection("Inference time", timing),
        ReportSection("Environment", env),
    ]
    if notes:
        sections.insert(0, ReportSection("Notes", "\n".join(f"- {n}" for n in notes)))
    return sections


def _extra_tables(collected: _Collected) -> list[ReportTable]:
    summary = collected.acc.summary()
    tables = [table_ii(summary, metrics=("psnr_slice", "ssim_slice"),
                       title="Whole-slice metrics in the field convention")]
    if collected.attention_mse:
        rows = [[name, *(format_summary(s, 4) for s in per.values())]
                for name, per in collected.attention_mse.items()]
        modes = list(next(iter(collected.attention_mse.values())))
        tables.append(ReportTable(
            "Attention: MSE(M_T, M) per slice", ["Method", *(f"target M, {mode} mode" for mode in modes)], rows,
            caption="The last term of eq. 6 on whole test slices, for both definitions of the target M of eq. 5 "
                    "(signed: y - x > mean; abs: |y - x| > mean). Lower is closer."))
    return tables


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become the strings 'inf', '-inf', 'nan'; paths become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if hasattr(value, "_asdict"):
            return _jsonable(value._asdict())
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def _compiled(methods: Sequence[Method]) -> bool:
    """Whether the networks really ran compiled (``--compile`` falls back to eager where it fails)."""
    return any(getattr(m.denoiser, "compile", False) for m in methods if m.model is not None)


def _summary_json(cfg: EvaluationConfig, methods: Sequence[Method], test: EvaluationData, collected: _Collected,
                  device: torch.device, precision: Precision, notes: Sequence[str]) -> dict[str, Any]:
    summary = collected.acc.summary()
    per_method = {}
    for m in methods:
        entry: dict[str, Any] = {
            "spec": m.spec.spec, "kind": m.spec.kind,
            "metrics": {k: s._asdict() for k, s in summary[m.name].items()},
            "fid": dataclasses.asdict(collected.fid[m.name]) if m.name in collected.fid else None,
            "timing_ms": collected.timing[m.name]._asdict() if m.name in collected.timing else None,
            "seconds_test_set": collected.seconds.get(m.name),
        }
        if m.model is not None:
            entry.update(checkpoint=m.model.checkpoint, preset=m.model.config.preset, stage=m.model.stage,
                         has_attention=m.has_attention, precision=m.denoiser.precision.name)
        if m.name in collected.attention_mse:
            entry["attention_mse"] = {k: s._asdict() for k, s in collected.attention_mse[m.name].items()}
        if m.name in collected.bm3d_sigmas:
            entry["bm3d_sigma_hu"] = summarize(collected.bm3d_sigmas[m.name])._asdict()
        per_method[m.name] = entry
    return _jsonable({
        "title": cfg.title,
        "data": {"root": test.root, "subset": test.subset, "patients": list(test.patients),
                 "slices": len(test.pairs), "shapes": [list(s) for s in test.shapes], "thickness": test.thickness,
                 "split": test.split, "split_seed": test.split_seed, "split_source": test.split_source},
        "conventions": {"field": {"hu_range": [-1024.0, 3072.0], "data_range": 1.0,
                                  "patches": dataclasses.asdict(cfg.patches)},
                        "window": {"hu_range": [-160.0, 240.0], "data_range": 400.0},
                        "rmse": "HU, raw whole slices", "metrics": list(METRICS)},
        "fid_net": next((r.feature_net for r in collected.fid.values()), None),
        "device": describe_device(device), "torch_threads": torch.get_num_threads(),
        "precision": {"name": precision.name, "reason": precision.reason, "compile": _compiled(methods)},
        "methods": per_method, "notes": list(notes), "config": cfg.to_dict(),
    })


def _write_metrics_csv(path: Path, collected: _Collected, test: EvaluationData) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["method", "image_index", "patient", "slice", *METRICS])
        writer.writeheader()
        for row in collected.acc.rows():
            pair = test.pairs[int(row["image_index"])]
            cells = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            writer.writerow({**cells, "patient": pair.patient, "slice": pair.index})
    return path


# --------------------------------------------------------------------------- entry point


def evaluate(cfg: EvaluationConfig, out_dir: Path, overwrite: bool = False, progress: bool = True,
             extra_sections: Sequence[ReportSection] = (), extra_tables: Sequence[ReportTable] = (),
             extra_figures: Sequence[ReportFigure] = ()) -> EvaluationResult:
    """Run the evaluation of ``cfg`` and write its report folder ``out_dir`` atomically.

    ``extra_*`` are added to the report after the evaluation's own (e.g. the demo's simulation check).

    Raises :class:`~vagan.errors.OutputExistsError` for an existing ``out_dir`` without
    ``overwrite`` (before any work), :class:`~vagan.errors.CheckpointError` for a model folder
    that is not a checkpoint, :class:`~vagan.errors.InputDataError` for an empty test subset and
    :class:`~vagan.errors.ConfigError` for a bad config. On any failure nothing is left at
    ``out_dir`` (an existing folder is kept as it was).
    """
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    inputs = [m.path for m in cfg.methods if m.path is not None]
    inputs += [Path(p) for p in (cfg.data_root, cfg.fid_weights) if p]
    check_output(out_dir, overwrite, inputs, kind="evaluation")
    precision = resolve_precision(cfg.precision, device)
    methods = load_methods(cfg, device, precision)
    models = [m.model for m in methods if m.model is not None]
    test = load_test_set(cfg, models)
    check_no_overlap(out_dir, [test.root])
    if cfg.zoom is not None and any(cfg.zoom[0] + cfg.zoom[2] > h or cfg.zoom[1] + cfg.zoom[3] > w
                                    for h, w in test.shapes):
        raise ConfigError(f"zoom {cfg.zoom} (row, col, height, width) does not fit the test slices {test.shapes}")
    fid_net = build_fid_net(cfg)
    notes = leakage_notes(test, models)
    keep = figure_indices(len(test.pairs), cfg.figure_slices)
    collected = run_methods(cfg, methods, test, device, fid_net, keep, progress)
    notes = [*notes, *collected.notes]
    summary = collected.acc.summary()
    table = table_ii(summary, fid=collected.fid, timing_ms=collected.timing, methods=[m.name for m in methods])
    if cfg.timing_size != 512:  # table_ii labels the timing column for the paper's 512x512 slices
        columns = [c.replace("512²", f"{cfg.timing_size}²") for c in table.columns]
        table = dataclasses.replace(table, columns=columns)
    metadata = report_metadata(describe_device(device), f"{test.root} [{test.subset}]: {len(test.pairs)} slices",
                               {"torch threads": str(torch.get_num_threads())})
    with atomic_dir(out_dir, "evaluation", overwrite=overwrite) as folder:
        metrics_csv = _write_metrics_csv(folder / "metrics.csv", collected, test)
        (folder / "summary.json").write_text(
            json.dumps(_summary_json(cfg, methods, test, collected, device, precision, notes), indent=2, allow_nan=False) + "\n",
            encoding="utf-8")
        figures = write_figures(folder / "figures", methods, test, collected.outputs, collected.attention, keep,
                                cfg.zoom)
        fid_name = next((r.feature_net for r in collected.fid.values()), None)
        sections = _sections(cfg, methods, test, collected, fid_name, device, precision, notes)
        paths = write_report(folder, cfg.title, [*sections, *extra_sections],
                             [table, *_extra_tables(collected), *extra_tables], [*figures, *extra_figures], metadata)

        def rel(path: Path) -> Path:  # where a file will be once the folder is renamed
            return out_dir / Path(path).relative_to(folder)

        report = ReportPaths(rel(paths.markdown), rel(paths.html), tuple(rel(p) for p in paths.figures))
        metrics_csv = rel(metrics_csv)
    log.info("evaluation written to %s", out_dir)
    return EvaluationResult(out_dir, report, metrics_csv, out_dir / "summary.json", report.figures, summary,
                            collected.fid, collected.timing, table, tuple(notes))
