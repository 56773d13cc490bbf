"""Train the ``ct-quality`` FID feature net (:mod:`vagan.evaluation.ct_quality_net`) on real CT.

Each training sample is a 64x64 patch of a normal-dose slice (inside the body) with realistic noise of
a random dose inserted from the slice's noise pool (:func:`vagan.data.noise_pool.mix`; no noise with
probability ``p_full``: the scan as it was), then blurred by a Gaussian of random width (none with
probability ``p_sharp``), flipped and rotated. The net regresses ``log2(dose)`` and the blur width
in pixels, scaled to about [-1, 1], with a mean squared error. Validation: the same on a fixed set of
patches of the validation patients (other slices than the training's); the meta file records their
errors and Spearman rank correlations.

``vagan train-fid-net DATA OUT --patient P --val PV`` runs it (the shipped weights: docs/fid.md).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr

from vagan.config_schema import Section, bounded
from vagan.data.noise_pool import mix
from vagan.data.patches import SlicePair
from vagan.errors import ConfigError, InputDataError
from vagan.evaluation.ct_quality_net import BLUR_SCALE, LOG2_DOSE_SCALE, META_FILE, WEIGHTS_FILE, CTQualityNet
from vagan.io.atomic import atomic_dir, check_output, with_default_mode
from vagan.io.checksum import file_sha256
from vagan.io.windowing import BODY_THRESHOLD_HU, DISPLAY_RANGE

log = logging.getLogger(__name__)

MAX_MISSES = 1000  # slices drawn in a row without a crop inside the body before the data is refused


@dataclass(frozen=True)
class TrainingSettings(Section):
    """How the net trains; recorded in the weights' meta file."""

    steps: int = bounded(3000, ge=1)
    batch_size: int = bounded(32, ge=1)
    patch: int = bounded(64, ge=16)
    lr: float = bounded(1e-3, gt=0)
    min_dose: float = bounded(0.1, gt=0, lt=1)
    max_blur_px: float = bounded(2.0, gt=0.3)
    p_full: float = bounded(0.25, ge=0, le=1)  # no inserted noise: the normal-dose scan itself
    p_sharp: float = bounded(0.4, ge=0, le=1)  # no blur
    seed: int = bounded(0, ge=0)
    val_patches: int = bounded(512, ge=3)

    @property
    def crop(self) -> int:
        """The side of the crop a patch is cut from: blurred on a larger crop, it has no border effect."""
        return self.patch + 2 * int(np.ceil(4 * self.max_blur_px))


def degrade(ndct: np.ndarray, noise: np.ndarray, dose: float, blur_px: float, rng: np.random.Generator) -> np.ndarray:
    """``ndct`` (HU) with noise of ``dose`` mixed from its unit noise images ``(2, 2, H, W)`` at random
    angles (none at dose 1), then Gaussian-blurred by ``blur_px`` (none at 0)."""
    hu = ndct.astype(np.float32)
    if dose < 1.0:
        hu = hu + mix(noise, dose, *rng.uniform(0.0, 2.0 * np.pi, 2))
    if blur_px > 0:
        hu = gaussian_filter(hu, blur_px, mode="reflect")
    return hu


def _body_corner(pair: SlicePair, size: int, rng: np.random.Generator) -> tuple[int, int] | None:
    h, w = pair.ndct.shape
    for _ in range(20):
        r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        if pair.ndct[r:r + size, c:c + size].mean() > BODY_THRESHOLD_HU:
            return r, c
    return None


def sample_batch(pairs: Sequence[SlicePair], n: int, s: TrainingSettings,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` degraded patches ``(n, 1, P, P)`` in [0, 1] (display window) and their scaled targets ``(n, 2)``."""
    margin, size = (s.crop - s.patch) // 2, s.crop
    images, targets, misses = [], [], 0
    while len(images) < n:
        pair = pairs[int(rng.integers(len(pairs)))]
        corner = _body_corner(pair, size, rng)
        if corner is None:
            misses += 1
            if misses > MAX_MISSES:
                raise InputDataError(f"ct-quality training: no {size}x{size} crop inside the body (mean above "
                                     f"{BODY_THRESHOLD_HU:g} HU) in {MAX_MISSES} slices drawn; give slices of patients")
            continue
        r, c = corner
        dose = 1.0 if rng.random() < s.p_full else float(np.exp(rng.uniform(np.log(s.min_dose), 0.0)))
        blur = 0.0 if rng.random() < s.p_sharp else float(rng.uniform(0.3, s.max_blur_px))
        hu = degrade(pair.ndct[r:r + size, c:c + size], pair.noise[:, :, r:r + size, c:c + size], dose, blur, rng)
        hu = np.rot90(hu[margin:margin + s.patch, margin:margin + s.patch], int(rng.integers(4)))
        images.append(hu[:, ::-1] if rng.random() < 0.5 else hu)
        targets.append((np.log2(dose) / LOG2_DOSE_SCALE, blur / BLUR_SCALE))
    x = DISPLAY_RANGE.to_unit(torch.from_numpy(np.ascontiguousarray(np.stack(images)))[:, None])
    return x.float(), torch.tensor(targets, dtype=torch.float32)


def evaluate(net: CTQualityNet, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """RMSE in log2 dose and in blur px, and the Spearman correlations of the predictions; the dose also on
    the unblurred patches alone (a blur hides noise, so the dose of a blurred patch is partly ambiguous)."""
    with torch.no_grad():
        p = torch.cat([net.predict(x[i:i + 64]) for i in range(0, len(x), 64)])
    dose_p, dose_t = p[:, 0] * LOG2_DOSE_SCALE, y[:, 0] * LOG2_DOSE_SCALE
    blur_p, blur_t = p[:, 1] * BLUR_SCALE, y[:, 1] * BLUR_SCALE
    sharp = blur_t == 0

    def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float | None:
        """Spearman's rho; None when undefined (fewer than 3 values, or one side constant)."""
        rho = float(spearmanr(a, b)[0]) if len(a) > 2 else math.nan
        return rho if math.isfinite(rho) else None

    return {"rmse_log2_dose": float((dose_p - dose_t).pow(2).mean().sqrt()),
            "rmse_blur_px": float((blur_p - blur_t).pow(2).mean().sqrt()),
            "spearman_dose": rank_correlation(dose_p, dose_t), "spearman_blur": rank_correlation(blur_p, blur_t),
            "spearman_dose_unblurred": rank_correlation(dose_p[sharp], dose_t[sharp])}


def train_ct_quality(train_pairs: Sequence[SlicePair], val_pairs: Sequence[SlicePair], s: TrainingSettings,
                     progress: bool = True) -> tuple[CTQualityNet, dict[str, object]]:
    """Train the net on ``train_pairs`` (each with its noise pool); returns it and what the meta file records."""
    for what, pairs in (("training", train_pairs), ("validation", val_pairs)):
        if not pairs or any(p.noise is None for p in pairs):
            raise InputDataError(f"ct-quality training: the {what} slices need noise pools "
                                 "(vagan simulate --from ... --set noise_pool=true)")
        small = sorted({p.ndct.shape for p in pairs if min(p.ndct.shape) < s.crop})
        if small:
            raise InputDataError(f"ct-quality training: {what} slices of {small} are smaller than the {s.crop}x{s.crop} "
                                 f"crops its {s.patch}x{s.patch} patches are cut from")
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    x_val, y_val = sample_batch(val_pairs, s.val_patches, s, np.random.default_rng(s.seed + 1))
    net = CTQualityNet()
    optimiser = torch.optim.Adam(net.parameters(), lr=s.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, s.steps)
    start = time.perf_counter()
    from tqdm import tqdm

    with tqdm(range(s.steps), desc="ct-quality", disable=not progress, dynamic_ncols=True) as bar:
        for _ in bar:
            x, y = sample_batch(train_pairs, s.batch_size, s, rng)
            loss = torch.nn.functional.mse_loss(net.predict(x), y)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")
    net.eval()
    meta = {"settings": asdict(s), "validation": evaluate(net, x_val, y_val),
            "training_seconds": round(time.perf_counter() - start, 1), "torch": torch.__version__}
    return net, meta


def save(net: CTQualityNet, meta: dict[str, object], folder: Path) -> Path:
    """Write ``folder/ct-quality.safetensors`` and ``folder/ct-quality.json`` (with the weights' SHA-256) into an
    existing ``folder``; returns the weights' path."""
    from safetensors.torch import save_file

    weights = Path(folder) / WEIGHTS_FILE
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    with_default_mode(weights)  # safetensors writes 0600
    record = {**meta, "sha256": file_sha256(weights)}
    (Path(folder) / META_FILE).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return weights


def run_training(data_root: Path, out: Path, patients: Sequence[str], val: Sequence[str], thickness: str = "any",
                 settings: TrainingSettings | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """``vagan train-fid-net``: check everything, train on ``patients`` of ``data_root``, validate on ``val``,
    and write the new folder ``out`` whole or not at all; returns the weights' path."""
    from vagan.data.paired import load_slice_pairs

    settings = settings or TrainingSettings()
    data_root, out = Path(data_root), Path(out)
    if not patients or not val:
        raise ConfigError("give at least one training patient (--patient) and one validation patient (--val)")
    both = sorted(set(patients) & set(val))
    if both:
        raise ConfigError(f"patients {both} are both training and validation patients; the validation must be unseen")
    check_output(out, overwrite, inputs=(data_root,), kind="fid-net")
    try:
        train_pairs = load_slice_pairs(data_root, list(patients), thickness, with_noise_pool=True)
        val_pairs = load_slice_pairs(data_root, list(val), thickness, with_noise_pool=True)
    except InputDataError as err:
        raise InputDataError(f"ct-quality training reads normal-dose slices and their noise pools: {err}") from None
    net, meta = train_ct_quality(train_pairs, val_pairs, settings, progress)
    meta["training_data"] = {"root": str(data_root), "patients": list(patients), "val": list(val),
                             "thickness": thickness}
    log.info("validation: %s", meta["validation"])
    with atomic_dir(out, "fid-net", overwrite=overwrite, inputs=(data_root,)) as tmp:
        save(net, meta, tmp)
    return out / WEIGHTS_FILE
