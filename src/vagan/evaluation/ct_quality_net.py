"""``ct-quality``: the FID feature net that fits CT, a small CNN trained on real normal-dose CT to
estimate how much noise and how much blur a patch carries (docs/fid.md).

FID compares a method's outputs with the normal-dose images in some feature space. An ImageNet
network sees CT as a foreign texture, and an untrained one (``random-ct``) weights its features at
random. A denoiser departs from normal dose in two ways: it leaves noise (too little denoising) or it
takes sharpness and texture away (too much, the paper's "over-smoothing"). This network learns
exactly these two from real anatomy: trained by :mod:`vagan.evaluation.ct_quality_training` to
regress the dose of noise inserted into normal-dose patches (realistic noise of
:mod:`vagan.data.noise_pool`) and the Gaussian blur applied after it. Its features are the spatial
means of its four stages (16 + 32 + 64 + 128 = 240), from the pixel scale of noise grain up to
organ texture; the two regression outputs are only the training target.

The weights ship in the package (``vagan/pretrained/fid/ct-quality.safetensors``, loaded as tensors
only, with their SHA-256 checked); the report names the network with the first characters of that
checksum, because FIDs from different weights are not comparable.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from vagan.errors import CheckpointError, MissingResourceError
from vagan.io.checksum import file_sha256
from vagan.io.windowing import DISPLAY_RANGE, HURange

WIDTHS = (16, 32, 64, 128)
WEIGHTS_FILE = "ct-quality.safetensors"
META_FILE = "ct-quality.json"  # WEIGHTS_FILE with .json: settings, validation and the SHA-256
TRAINING_COMMAND = "vagan train-fid-net DATA OUT --patient P --val PV"
LOG2_DOSE_SCALE = 3.3219  # -log2(0.1): the regression targets are log2(dose) / this and blur_px / BLUR_SCALE
BLUR_SCALE = 2.0


class CTQualityNet(nn.Module):
    """Four conv stages (the first at full resolution, the others stride 2), two 3x3 convs + ReLU each;
    :meth:`forward` gives the concatenated spatial means of the stages ``(B, 240)``, :meth:`predict`
    the scaled ``(log2 dose, blur px)`` regression ``(B, 2)`` of the training.

    Input: ``(B, 1, H, W)`` in [0, 1] (HU through the display window, as every FID feature net)."""

    def __init__(self, widths: tuple[int, ...] = WIDTHS) -> None:
        super().__init__()
        stages, c_in = [], 1
        for i, width in enumerate(widths):
            stages.append(nn.Sequential(
                nn.Conv2d(c_in, width, 3, stride=1 if i == 0 else 2, padding=1), nn.ReLU(),
                nn.Conv2d(width, width, 3, padding=1), nn.ReLU()))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.num_features = int(sum(widths))
        self.head = nn.Linear(self.num_features, 2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, pooled = x - 0.5, []
        for stage in self.stages:
            h = stage(h)
            pooled.append(h.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward(x))


def default_weights() -> Path:
    """The shipped weights: ``vagan/pretrained/fid/ct-quality.safetensors``."""
    return Path(str(resources.files("vagan") / "pretrained" / "fid" / WEIGHTS_FILE))


def load_ct_quality(path: Path | None = None) -> tuple[CTQualityNet, str]:
    """The trained net (eval mode) and its report name ``ct-quality(<sha256[:8]>)``, from ``path`` or the
    shipped file; tensors only (safetensors). The SHA-256 recorded beside the weights (``<name>.json``, as
    the training writes it) must match when that file exists; the shipped weights always have one."""
    from safetensors.torch import load_file

    shipped = path is None
    path = default_weights() if shipped else Path(path)
    fix = "reinstall vagan" if shipped else f"train them again with `{TRAINING_COMMAND}`"
    if not path.is_file():
        raise MissingResourceError(f"FID feature net 'ct-quality': weights {path} not found; nothing is downloaded. "
                                   + ("Reinstall vagan (they ship with it)" if shipped else
                                      f"Give the file that `{TRAINING_COMMAND}` wrote"))
    digest = file_sha256(path)
    meta = path.with_suffix(".json")
    if meta.is_file() or shipped:
        try:
            expected = json.loads(meta.read_text(encoding="utf-8"))["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{meta}: no readable SHA-256 of the ct-quality weights ({err}); {fix}") from None
        if expected != digest:
            raise CheckpointError(f"{path} fails its SHA-256 checksum (recorded in {meta}): the file is damaged or "
                                  f"was changed; {fix}")
    net = CTQualityNet()
    try:
        net.load_state_dict(load_file(str(path)))
    except Exception as err:  # safetensors raises its own SafetensorError on a damaged file
        raise CheckpointError(f"{path} does not hold ct-quality weights ({str(err).splitlines()[0]}); {fix}") from None
    return net.eval(), f"ct-quality({digest[:8]})"


def ct_quality_feature_net(path: Path | None = None, window: HURange = DISPLAY_RANGE):  # -> FeatureNet
    """The ``ct-quality`` :class:`~vagan.evaluation.feature_nets.FeatureNet`."""
    from vagan.evaluation.feature_nets import FeatureNet

    net, name = load_ct_quality(path)
    return FeatureNet(net, name, window)
