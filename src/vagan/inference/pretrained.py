"""Pretrained models shipped inside the package, usable by name wherever a run folder is accepted
(``vagan denoise --model NAME``, ``vagan evaluate NAME``; ``vagan models`` lists them).

Each model is a generator-only checkpoint folder under ``src/vagan/pretrained/<name>/`` (weights in
safetensors, fp16 where that keeps outputs within :data:`MAX_FP16_RMS_HU` of fp32) listed in
``registry.json`` with the SHA-256 of its files and its model-card facts (docs/model-card.md).
A file that fails its checksum is an error: nothing is ever downloaded or silently replaced.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from vagan.errors import CheckpointError, ConfigError, OutputExistsError
from vagan.io.atomic import atomic_file, staged_dir, with_default_mode
from vagan.io.checksum import file_sha256
from vagan.training.checkpoint import META_FILE, WEIGHTS_FILE, read_meta

log = logging.getLogger(__name__)

REGISTRY = "registry.json"
NOTICE = "trained on simulated data; not for diagnostic use"
MAX_FP16_RMS_HU = 1.0
"""fp16 storage is used only when the fp16 weights change a check slice by at most this RMS (HU)."""


@dataclass(frozen=True)
class ShippedModel:
    """One entry of the registry: where the model is and what a model card says about it."""

    name: str
    preset: str
    training_data: str
    dose: float
    budget: str
    test_metrics: dict[str, float]
    sha256: dict[str, str]  # file name -> checksum
    storage: str = "fp16"
    notice: str = NOTICE
    folder: Path = field(default=Path(), compare=False)


def pretrained_dir() -> Path:
    """The package's folder of shipped models."""
    return Path(str(resources.files("vagan") / "pretrained"))


def shipped_models(root: Path | None = None) -> dict[str, ShippedModel]:
    """The registry's models by name (empty when none are shipped)."""
    root = Path(root) if root is not None else pretrained_dir()
    path = root / REGISTRY
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return {name: ShippedModel(name=name, folder=root / name, **entry) for name, entry in entries.items()}
    except (json.JSONDecodeError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path} is corrupt ({err}); reinstall vagan") from None


def verified_folder(model: ShippedModel) -> Path:
    """The model's checkpoint folder once every file matches its checksum."""
    for name, expected in model.sha256.items():
        path = model.folder / name
        if not path.is_file():
            raise CheckpointError(f"shipped model {model.name!r}: {path} is missing; reinstall vagan")
        if file_sha256(path) != expected:
            raise CheckpointError(f"shipped model {model.name!r}: {path} fails its SHA-256 checksum (the file is damaged "
                                  "or was changed); reinstall vagan. Nothing is downloaded")
    return model.folder


def resolve_model(spec: str, root: Path | None = None) -> Path | None:
    """The verified folder of the shipped model named ``spec``, or ``None`` when no model has that name."""
    model = shipped_models(root).get(spec)
    return verified_folder(model) if model is not None else None


def _check_slice() -> np.ndarray:
    from vagan.physics.phantom import make_phantom_slice

    return make_phantom_slice(256, 1.4, np.random.default_rng(0))


def pack_model(source: Path, name: str, *, training_data: str, dose: float, budget: str,
               test_metrics: dict[str, float], root: Path | None = None, notice: str = NOTICE) -> ShippedModel:
    """Write the generator of ``source`` (a run or checkpoint folder) as the shipped model ``name``.

    The weights are stored in fp16 when that changes a phantom check slice by at most
    :data:`MAX_FP16_RMS_HU` RMS, else in fp32. The registry gains (or updates) the entry.
    """
    from vagan.inference.denoise import NetworkDenoiser
    from vagan.inference.model_loading import load_trained_model

    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"model name {name!r}: use letters, digits, '-' and '_'")
    root = Path(root) if root is not None else pretrained_dir()
    registered = shipped_models(root)
    if (root / name).exists() and name not in registered:
        raise OutputExistsError(f"{root / name} exists but is no shipped model of {root / REGISTRY}; not replacing it")
    model = load_trained_model(Path(source), "cpu")
    stored = read_meta(model.checkpoint)
    generator = {f"generator.{k}": v.detach().clone() for k, v in model.generator.state_dict().items()}
    check = _check_slice()
    reference = NetworkDenoiser(model)(check).hu
    half = {k: v.half() if v.is_floating_point() else v for k, v in generator.items()}
    model.generator.load_state_dict({k.removeprefix("generator."): v.float() for k, v in half.items()})
    rms = float(np.sqrt(np.mean((NetworkDenoiser(model)(check).hu - reference) ** 2)))
    storage = "fp16" if rms <= MAX_FP16_RMS_HU else "fp32"
    log.info("%s: fp16 weights change the check slice by %.3f HU RMS; stored in %s", name, rms, storage)
    # the run's file checksums describe the run's weights, not these; the registry's SHA-256 covers both files
    meta = {**{k: v for k, v in stored.items() if k != "checksums"}, "shipped_as": name, "notice": notice}
    with staged_dir(root / name, replace=(root / name).exists()) as tmp:
        save_file(half if storage == "fp16" else generator, str(tmp / WEIGHTS_FILE))
        with_default_mode(tmp / WEIGHTS_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        sums = {WEIGHTS_FILE: file_sha256(tmp / WEIGHTS_FILE), META_FILE: file_sha256(tmp / META_FILE)}
    entry = ShippedModel(name, model.config.preset, training_data, float(dose), budget, dict(test_metrics), sums,
                         storage, notice=notice, folder=root / name)
    registry = {n: _record(m) for n, m in registered.items()} | {name: _record(entry)}
    with atomic_file(root / REGISTRY, overwrite=True) as tmp:
        tmp.write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return entry


def _record(model: ShippedModel) -> dict[str, Any]:
    return {k: v for k, v in asdict(model).items() if k not in ("name", "folder")}


def load_shipped(name: str, device: torch.device | str = "cpu"):
    """The :class:`~vagan.inference.model_loading.TrainedModel` of a shipped model, checksums verified."""
    from vagan.inference.model_loading import load_trained_model

    folder = resolve_model(name)
    if folder is None:
        known = ", ".join(sorted(shipped_models())) or "none in this version"
        raise CheckpointError(f"no shipped model named {name!r}; shipped: {known}")
    return load_trained_model(folder, device)
