"""Feature networks for FID, each with a name that goes into every report.

A :class:`FeatureNet` maps ``(B, 1, H, W)`` images in [0, 1] (HU mapped through its
``window``, by default the display window [-160, 240] HU) to ``(B, D)`` features.
Four kinds (:func:`build_feature_net`):

* ``ct-quality``: a small CNN trained on real normal-dose CT to estimate a patch's dose and blur
  (:mod:`vagan.evaluation.ct_quality_net`), the net that fits CT: it sees the residual noise and the
  lost sharpness by which a denoiser departs from normal dose. Its weights ship with vagan.

* ``inception``: Inception-v3 pool3 (2048) through torchmetrics/torch-fidelity, the standard
  FID network. Needs the ``torch-fidelity`` package and its weight file in the torch hub cache
  (or a path): nothing is downloaded at run time.
* ``vgg19``: any module the caller passes (the project passes its ImageNet VGG19 features);
  4-D outputs are global-average pooled.
* ``random-ct``: :class:`RandomCTNet`, an *untrained*, fixed-seed, randomly initialised small
  conv net. It needs no weights and is deterministic, but its FID values have no meaning in
  absolute terms and cannot be compared with published FIDs: only the ranking of methods
  measured with the same net, seed and sample count is meaningful. Its name says so.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from torch import nn

from vagan.errors import ConfigError, MissingResourceError
from vagan.io.windowing import BODY_THRESHOLD_HU, DISPLAY_RANGE, HURange

FeatureKind = Literal["ct-quality", "inception", "vgg19", "random-ct"]
FEATURE_KINDS: tuple[str, ...] = get_args(FeatureKind)
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


def pool_features(out: object) -> torch.Tensor:
    """Turn a network output into ``(B, D)``: 4-D maps are averaged over space; dicts/tuples concatenated."""
    if isinstance(out, torch.Tensor):
        if out.ndim == 2:
            return out
        if out.ndim >= 3:
            return out.flatten(2).mean(dim=2)
        raise ValueError(f"feature output must have a batch dimension, got shape {tuple(out.shape)}")
    if isinstance(out, Mapping):
        return torch.cat([pool_features(v) for v in out.values()], dim=1)
    if isinstance(out, (tuple, list)):
        return torch.cat([pool_features(v) for v in out], dim=1)
    raise TypeError(f"cannot turn a {type(out).__name__} feature output into (B, D) features")


class FeatureNet(nn.Module):
    """A named feature extractor: ``(B, 1, H, W)`` in [0, 1] -> ``(B, D)``; never trains.

    Args:
        module: the network; gets 1 channel, or the grey image repeated to 3 if ``in_channels=3``.
        name: how reports name this network (e.g. ``"vgg19-imagenet(conv5_4)"``).
        window: the HU range mapped to [0, 1] by :func:`extract_features`.
        in_channels: 1 or 3.
    """

    def __init__(self, module: nn.Module, name: str, window: HURange = DISPLAY_RANGE, in_channels: int = 1) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.module = module
        self.name = name
        self.window = window
        self.in_channels = in_channels
        if isinstance(getattr(module, "num_features", None), int):
            self.num_features = module.num_features  # lets torchmetrics' FID skip its dummy forward
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureNet:  # always in eval mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"feature net {self.name!r} expects (B, 1, H, W), got {tuple(x.shape)}")
        if self.in_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        return pool_features(self.module(x))


class RandomCTNet(nn.Module):
    """Untrained conv net with fixed-seed He-normal weights: 4 stride-2 3x3 conv + ReLU stages.

    Features are the spatial means of every stage's output, concatenated (16+32+64+128 = 240
    for the default widths), so both fine noise texture and coarser structure count. The
    weights come from ``torch.Generator().manual_seed(seed)`` on the CPU, so every instance
    with the same seed and widths is identical.
    """

    def __init__(self, seed: int = 0, widths: Sequence[int] = (16, 32, 64, 128)) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        stages, c_in = [], 1
        for width in widths:
            conv = nn.Conv2d(c_in, width, kernel_size=3, stride=2, padding=1)
            with torch.no_grad():
                fan_in = c_in * 9
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                conv.bias.zero_()
            stages.append(nn.Sequential(conv, nn.ReLU()))
            c_in = width
        self.stages = nn.ModuleList(stages)
        self.num_features = int(sum(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x - 0.5
        pooled = []
        for stage in self.stages:
            h = stage(h)
            pooled.append(h.mean(dim=(2, 3)))
        return torch.cat(pooled, dim=1)


def random_ct_net(seed: int = 0, window: HURange = DISPLAY_RANGE) -> FeatureNet:
    """The ``random-ct`` feature net, named ``random-ct-untrained(seed=...)``."""
    return FeatureNet(RandomCTNet(seed), f"random-ct-untrained(seed={seed})", window)


class _InceptionAdapter(nn.Module):
    """[0, 1] grey -> uint8 RGB, as torch-fidelity's Inception expects (it resizes to 299 itself)."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x8 = (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).expand(-1, 3, -1, -1)
        return self.inception(x8).reshape(x.shape[0], -1)


def default_inception_weights() -> Path:
    """Where torch-fidelity caches its Inception weights: ``<torch hub dir>/checkpoints/<file>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def inception_net(weights_path: Path | None = None, window: HURange = DISPLAY_RANGE) -> FeatureNet:
    """Inception-v3 (FID pool3, 2048 features) from local weights; a clear error if unavailable."""
    try:
        import torch_fidelity  # noqa: F401
    except ImportError as exc:
        raise MissingResourceError(
            "FID feature net 'inception' needs the torch-fidelity package, which is not installed; "
            "install it with `pip install torch-fidelity` (or `pip install torchmetrics[image]`), "
            "or choose the feature net 'ct-quality', 'vgg19' or 'random-ct'"
        ) from exc
    path = Path(weights_path) if weights_path is not None else default_inception_weights()
    if not path.is_file():
        raise MissingResourceError(
            f"Inception-v3 FID weights not found at {path}; nothing is downloaded at run time. "
            f"Fetch {INCEPTION_WEIGHTS_FILE} (torch-fidelity release v0.2.0) on a machine with internet, "
            f"then copy it to {default_inception_weights()} or pass its path as the FID weights; "
            "or choose the feature net 'ct-quality', 'vgg19' or 'random-ct'"
        )
    from torchmetrics.image.fid import NoTrainInceptionV3

    inception = NoTrainInceptionV3(
        name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
    )
    return FeatureNet(_InceptionAdapter(inception), "inception-v3-fid(pool3,2048)", window)


def build_feature_net(
    kind: FeatureKind,
    *,
    module: nn.Module | None = None,
    name: str | None = None,
    weights_path: Path | None = None,
    seed: int = 0,
    window: HURange = DISPLAY_RANGE,
    in_channels: int = 1,
) -> FeatureNet:
    """Make a :class:`FeatureNet` of ``kind`` ``ct-quality`` | ``inception`` | ``vgg19`` | ``random-ct``.

    ``ct-quality`` and ``inception`` load ``weights_path`` (default: the shipped / cached file); ``vgg19`` needs ``module`` (a network mapping ``(B, in_channels, H, W)`` to features);
    ``name`` overrides its report name (default ``"vgg19"``).
    """
    if kind == "random-ct":
        return random_ct_net(seed, window)
    if kind == "ct-quality":
        from vagan.evaluation.ct_quality_net import ct_quality_feature_net

        return ct_quality_feature_net(weights_path, window)
    if kind == "inception":
        return inception_net(weights_path, window)
    if kind == "vgg19":
        if module is None:
            raise ConfigError(
                "feature net 'vgg19' needs the VGG19 feature module; pass module=VGG19Features(...) "
                "(vagan.models.vgg) built from local ImageNet weights"
            )
        return FeatureNet(module, name or "vgg19", window, in_channels)
    hint = difflib.get_close_matches(kind, FEATURE_KINDS, n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    raise ConfigError(f"unknown FID feature net {kind!r}; expected one of {FEATURE_KINDS}{suggestion}")


def _iter_images(images: np.ndarray | torch.Tensor | Iterable[np.ndarray | torch.Tensor]) -> Iterable[torch.Tensor]:
    """Yield ``(H, W)`` float32 tensors from a stack ``(N, H, W)`` / ``(N, 1, H, W)`` or an iterable."""
    if isinstance(images, (np.ndarray, torch.Tensor)):
        t = torch.as_tensor(images)
        if t.ndim == 4 and t.shape[1] == 1:
            t = t[:, 0]
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3:
            raise ValueError(f"images: expected (N, H, W) or (N, 1, H, W), got {tuple(t.shape)}")
        yield from (img.float() for img in t)
        return
    for img in images:
        t = torch.as_tensor(img).float()
        while t.ndim > 2 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 2:
            raise ValueError(f"images: each image must be (H, W), got {tuple(t.shape)}")
        yield t


def body_tiles(ndct: np.ndarray, tile: int) -> list[tuple[int, int, int]]:
    """``(image, row, col)`` of the non-overlapping ``tile`` x ``tile`` tiles of ``ndct`` ``(N, H, W)`` (HU)
    whose mean lies above :data:`~vagan.io.windowing.BODY_THRESHOLD_HU`; an image smaller than a tile gives none."""
    n, h, w = ndct.shape
    return [(i, r, c) for i in range(n) for r in range(0, h - tile + 1, tile) for c in range(0, w - tile + 1, tile)
            if float(ndct[i, r:r + tile, c:c + tile].mean()) > BODY_THRESHOLD_HU]


def fid_samples(images: np.ndarray, ndct: np.ndarray, tile: int) -> np.ndarray:
    """What FID sees of ``images`` ``(N, H, W)``: the whole images (``tile`` 0), or their tiles at the body
    tiles of the reference ``ndct`` (:func:`body_tiles`), so that every method is sampled at the same places."""
    if not tile:
        return images
    where = body_tiles(ndct, tile)
    if not where:
        return np.zeros((0, tile, tile), images.dtype)
    return np.stack([images[i, r:r + tile, c:c + tile] for i, r, c in where])


def fid_label(net_name: str, tile: int) -> str:
    """How reports name an FID: the feature net, and the tile size when it saw tiles (FIDs of different
    nets, weights or tilings are not comparable)."""
    return f"{net_name}/tile{tile}" if tile else net_name


@torch.no_grad()
def extract_features(
    net: FeatureNet,
    images_hu: np.ndarray | torch.Tensor | Iterable[np.ndarray | torch.Tensor],
    batch_size: int = 16,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Features ``(N, D)`` (float64, CPU) of HU images mapped through ``net.window`` to [0, 1].

    Consecutive images of equal shape are batched; ``device`` defaults to the net's device.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if device is not None:
        net = net.to(device)
    param = next(net.parameters(), None)
    dev = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    out: list[torch.Tensor] = []
    batch: list[torch.Tensor] = []

    def flush() -> None:
        if batch:
            hu = torch.stack(batch)[:, None]
            if not torch.isfinite(hu).all():
                raise ValueError("images contain NaN or infinite values")
            x = net.window.to_unit(hu.to(device=dev, dtype=dtype))
            out.append(net(x).double().cpu())
            batch.clear()

    for img in _iter_images(images_hu):
        if batch and (len(batch) == batch_size or img.shape != batch[0].shape):
            flush()
        batch.append(img)
    flush()
    if not out:
        raise ValueError("no images were given to extract features from")
    return torch.cat(out)
