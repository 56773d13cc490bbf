"""Train the ``ct-quality`` FID feature net (:mod:`vagan.evaluation.ct_quality_net`) on real CT.

Each training sample is a 64x64 patch of a normal-dose slice (inside the body) with realistic noise of
a random dose inserted from the slice's noise pool (:func:`vagan.data.noise_pool.mix`; no noise with
probability ``p_full``: the scan as it was), then blurred by a Gaussian of random width (none with
probability ``p_sharp``), flipped and rotated. The net regresses ``log2(dose)`` and the blur width
in pixels, scaled to about [-1, 1], with a mean squared error. Validation: the same on a fixed set of
patches from other patients; ``meta`` records their errors and the Spearman rank correlations.

Usage (the shipped weights; docs/fid.md)::

    python -m vagan.evaluation.ct_quality_training DATA_ROOT OUT --patients P1 [P2 ...] --val PV [...]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from scipy.stats import spearmanr

from vagan.data.noise_pool import mix
from vagan.data.patches import SlicePair
from vagan.errors import ConfigError, VaganError
from vagan.evaluation.ct_quality_net import BLUR_SCALE, LOG2_DOSE_SCALE, META_FILE, WEIGHTS_FILE, CTQualityNet
from vagan.io.windowing import BODY_THRESHOLD_HU, DISPLAY_RANGE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSettings:
    """How the net trains; recorded in the weights' meta file."""

    steps: int = 1500
    batch_size: int = 32
    patch: int = 64
    lr: float = 1e-3
    min_dose: float = 0.1
    max_blur_px: float = 2.0
    p_full: float = 0.25  # no inserted noise: the normal-dose scan itself
    p_sharp: float = 0.4  # no blur
    seed: int = 0
    val_patches: int = 512

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.patch < 16 or self.val_patches < 2:
            raise ConfigError(f"ct-quality training: steps, batch_size >= 1, patch >= 16 and val_patches >= 2, got {self}")
        if not 0.0 < self.min_dose < 1.0 or self.max_blur_px <= 0 or not 0 <= self.p_full <= 1 or not 0 <= self.p_sharp <= 1:
            raise ConfigError(f"ct-quality training: min_dose in (0, 1), max_blur_px > 0, probabilities in [0, 1]; got {self}")


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
    margin = int(np.ceil(4 * s.max_blur_px))  # blurred on a larger crop, so the patch has no border effect
    size = s.patch + 2 * margin
    images, targets = [], []
    while len(images) < n:
        pair = pairs[int(rng.integers(len(pairs)))]
        corner = _body_corner(pair, size, rng)
        if corner is None:
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
    return {"rmse_log2_dose": float((dose_p - dose_t).pow(2).mean().sqrt()),
            "rmse_blur_px": float((blur_p - blur_t).pow(2).mean().sqrt()),
            "spearman_dose": float(spearmanr(dose_p, dose_t)[0]), "spearman_blur": float(spearmanr(blur_p, blur_t)[0]),
            "spearman_dose_unblurred": float(spearmanr(dose_p[sharp], dose_t[sharp])[0]) if sharp.sum() > 2 else None}


def train_ct_quality(train_pairs: Sequence[SlicePair], val_pairs: Sequence[SlicePair], s: TrainingSettings,
                     progress: bool = True) -> tuple[CTQualityNet, dict[str, object]]:
    """Train the net on ``train_pairs`` (each with its noise pool); returns it and what the meta file records."""
    for what, pairs in (("training", train_pairs), ("validation", val_pairs)):
        if not pairs or any(p.noise is None for p in pairs):
            raise ConfigError(f"ct-quality training: the {what} slices need noise pools "
                              "(vagan simulate --from ... --set noise_pool=true)")
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


def save(net: CTQualityNet, meta: dict[str, object], out: Path) -> Path:
    """Write ``OUT/ct-quality.safetensors`` and ``OUT/ct-quality.json`` (with the weights' SHA-256)."""
    from safetensors.torch import save_file

    from vagan.io.atomic import atomic_file, with_default_mode
    from vagan.io.checksum import file_sha256

    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    with atomic_file(weights) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
        with_default_mode(tmp)  # safetensors writes 0600
    with atomic_file(out / META_FILE) as tmp:
        tmp.write_text(json.dumps({**meta, "sha256": file_sha256(weights)}, indent=2) + "\n", encoding="utf-8")
    return weights


def main(argv: Sequence[str] | None = None) -> int:
    from vagan.data.paired import load_slice_pairs

    parser = argparse.ArgumentParser(prog="python -m vagan.evaluation.ct_quality_training", description=__doc__.split("\n")[0])
    parser.add_argument("data_root", type=Path, help="a dataset written by vagan simulate --from ... --set noise_pool=true")
    parser.add_argument("out", type=Path, help="new folder for ct-quality.safetensors and ct-quality.json")
    parser.add_argument("--patients", nargs="+", required=True, help="training patients")
    parser.add_argument("--val", nargs="+", required=True, help="validation patients")
    parser.add_argument("--thickness", default="any")
    parser.add_argument("--steps", type=int, default=TrainingSettings.steps)
    parser.add_argument("--seed", type=int, default=TrainingSettings.seed)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.out.exists():
            raise ConfigError(f"{args.out} exists; give a new folder")
        overlap = sorted(set(args.patients) & set(args.val))
        if overlap:
            raise ConfigError(f"patients {overlap} are in both the training and the validation set")
        settings = TrainingSettings(steps=args.steps, seed=args.seed)
        train = load_slice_pairs(args.data_root, list(args.patients), args.thickness, with_noise_pool=True)
        val = load_slice_pairs(args.data_root, list(args.val), args.thickness, with_noise_pool=True)
        net, meta = train_ct_quality(train, val, settings)
        meta["training_data"] = {"root": str(args.data_root), "patients": list(args.patients), "val": list(args.val)}
        log.info("validation: %s", meta["validation"])
        log.info("wrote %s", save(net, meta, args.out))
    except VaganError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
