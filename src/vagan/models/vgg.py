"""VGG19 convolutional trunk for the perceptual loss (eq. 9), loadable from torchvision's weights.

The module is defined here (torchvision is not a dependency) with torchvision's ``state_dict`` key
names (``features.0.weight`` ... ``features.34.bias``: 16 convs x (weight, bias) = 32 tensors), so
the ImageNet file ``vgg19-dcbb9e9d.pth`` loads as is. Nothing is downloaded: weights come from a
path the user gives or from the torch hub cache; loading never executes code (``weights_only``
unpickling or safetensors).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from vagan.errors import (
    MACHINE_FAULTS,
    CheckpointError,
    ConfigError,
    MissingResourceError,
)

logger = logging.getLogger(__name__)

VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's configuration "E": channels per conv, "M" = 2x2 max-pool.
_VGG19_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                     512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


def _layer_indices() -> dict[str, int]:
    """``'convB_I'`` -> index in ``features`` of the ReLU after that conv (torchvision numbering)."""
    names: dict[str, int] = {}
    index, block, conv = 0, 1, 0
    for item in _VGG19_CFG:
        if item == "M":
            index += 1
            block, conv = block + 1, 0
        else:
            conv += 1
            names[f"conv{block}_{conv}"] = index + 1
            index += 2
    return names


LAYERS: dict[str, int] = _layer_indices()
"""Selectable layers: ``'conv5_4'`` -> 35 (the ReLU after conv5_4), ``'conv3_4'`` -> 17, ..."""


def hub_cache_path() -> Path:
    """Where torchvision would cache the ImageNet VGG19 weights: ``<torch hub dir>/checkpoints/vgg19-dcbb9e9d.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def _build_trunk() -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for item in _VGG19_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            c_in = int(item)
    return nn.Sequential(*layers)


def _state_shapes() -> dict[str, tuple[int, ...]]:
    return {f"features.{k}": tuple(v.shape) for k, v in _build_trunk().state_dict().items()}


def find_vgg19_weights(path: Path | str | None = None) -> Path:
    """The VGG19 weights file: ``path`` or :func:`hub_cache_path`; a clear error if there is none."""
    if path is None:
        cached = hub_cache_path()
        if not cached.is_file():
            raise MissingResourceError(
                f"ImageNet VGG19 weights for the perceptual loss (eq. 9) not found: no file at {cached}. "
                f"Put torchvision's {VGG19_FILENAME} at {cached} or pass --vgg-weights PATH "
                "(config train.vgg_weights); nothing is downloaded at run time.")
        return cached
    path = Path(path)
    if not path.is_file():
        raise MissingResourceError(f"VGG19 weights file {path} does not exist; pass an existing file with --vgg-weights PATH "
                         f"or put {VGG19_FILENAME} at {hub_cache_path()}")
    return path


def _load_failure(exc: Exception) -> str:
    """One line on why a weights file did not load, without torch's advice to unpickle arbitrary code."""
    text = str(exc)
    if "Unsupported global" in text:
        return "it holds pickled Python objects besides tensors, which vagan never loads (they could run code)"
    if "weights_only" in text or "Weights only load failed" in text:
        detail = next((line.split("WeightsUnpickler error:", 1)[1].strip() for line in text.splitlines()
                       if "WeightsUnpickler error:" in line), "")
        return "not a readable torch weights file" + (f" ({detail})" if detail else "")
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_vgg19_weights(path: Path | str | None = None) -> dict[str, torch.Tensor]:
    """Read VGG19 weights (torchvision layout) without executing code.

    Args:
        path: a ``.pth``/``.pt`` file (read with ``torch.load(weights_only=True)``) or a
            ``.safetensors`` file. ``None`` looks for :func:`hub_cache_path`.

    Returns:
        The ``features.*`` tensors (classifier weights, if present, are dropped).

    Raises:
        VaganError: no file found (the message says where to put it or how to pass it), the file
            is unreadable, or tensors are missing / of the wrong shape.
    """
    path = find_vgg19_weights(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except MACHINE_FAULTS:
        raise
    except Exception as exc:  # corrupt file, or a pickle that would need code execution
        raise CheckpointError(f"cannot read VGG19 weights from {path}: {_load_failure(exc)}; expected torchvision's "
                              f"{VGG19_FILENAME} (a state_dict of tensors) or a .safetensors file") from None
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"VGG19 weights file {path} holds a {type(raw).__name__}, expected a state_dict")
    shapes = _state_shapes()
    missing = [k for k in shapes if k not in raw]
    if missing:
        raise CheckpointError(f"VGG19 weights file {path} lacks {len(missing)} of {len(shapes)} tensors "
                              f"(first: {missing[0]}); expected torchvision's vgg19 state_dict keys")
    not_tensors = [k for k in shapes if not isinstance(raw[k], torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"VGG19 weights file {path}: {not_tensors[0]} holds a {type(raw[not_tensors[0]]).__name__}, "
                              "expected a tensor")
    wrong = [k for k, s in shapes.items() if tuple(raw[k].shape) != s]
    if wrong:
        raise CheckpointError(f"VGG19 weights file {path}: {wrong[0]} has shape {tuple(raw[wrong[0]].shape)}, "
                              f"expected {shapes[wrong[0]]}")
    not_finite = [k for k in shapes if raw[k].is_floating_point() and not torch.isfinite(raw[k]).all()]
    if not_finite:
        raise CheckpointError(f"VGG19 weights file {path}: {not_finite[0]} holds NaN or infinite values")
    logger.info("loaded VGG19 weights from %s", path)
    return {k: raw[k].float() for k in shapes}


class VGG19Features(nn.Module):
    """Frozen VGG19 features of a grayscale image in [0, 1] (network units).

    The 1-channel input is repeated to RGB and ImageNet-normalised; the output is the activation
    after the ReLU of ``layer`` (default ``'conv5_4'``, as WGAN-VGG). Parameters never require
    grad and the module stays in eval mode; gradients still flow to the input.

    Args:
        state_dict: torchvision-layout weights, e.g. from :func:`load_vgg19_weights`.
        layer: one of :data:`LAYERS` (``'conv1_1'`` ... ``'conv5_4'``).
    """

    def __init__(self, state_dict: Mapping[str, torch.Tensor], layer: str = "conv5_4") -> None:
        super().__init__()
        if layer not in LAYERS:
            close = difflib.get_close_matches(layer, list(LAYERS), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown VGG19 layer {layer!r}: expected one of {', '.join(LAYERS)}{hint}")
        self.layer = layer
        self.features = _build_trunk()
        self.load_state_dict(dict(state_dict), strict=True)
        self._stop = LAYERS[layer] + 1
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_pretrained(cls, path: Path | str | None = None, layer: str = "conv5_4") -> VGG19Features:
        """ImageNet weights from ``path`` or the torch hub cache (see :func:`load_vgg19_weights`)."""
        return cls(load_vgg19_weights(path), layer)

    @classmethod
    def random_init(cls, generator: torch.Generator, layer: str = "conv5_4") -> VGG19Features:
        """RANDOMLY initialised VGG19 (Kaiming-normal, fan-out, zero bias) for tests and offline smoke
        runs: *not* a perceptual network. ``generator`` makes it reproducible."""
        state: dict[str, torch.Tensor] = {}
        for key, shape in _state_shapes().items():
            if key.endswith("weight"):
                fan_out = shape[0] * shape[2] * shape[3]
                state[key] = torch.randn(shape, generator=generator) * (2.0 / fan_out) ** 0.5
            else:
                state[key] = torch.zeros(shape)
        return cls(state, layer)

    def train(self, mode: bool = True) -> VGG19Features:
        """Always stays in eval mode (frozen feature extractor)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 1, H, W)`` in [0, 1]. Returns ``(B, C, H / 2^k, W / 2^k)`` features of ``layer``."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"VGG19Features expects a grayscale (B, 1, H, W) batch, got {tuple(x.shape)}")
        h = (x.expand(-1, 3, -1, -1) - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        for module in self.features[: self._stop]:
            h = module(h)
        return h
