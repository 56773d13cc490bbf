"""Checkpoints that load without executing code.

A checkpoint is a folder written atomically:

- ``model.safetensors``: network weights, keys prefixed ``generator.`` / ``discriminator.``;
- ``meta.json``: format tag and version, preset, the whole config, stage, epoch, step, metrics, and
  the SHA-256 of the other two files (``checksums``), checked at load: a flipped byte in the weights
  is an error, not a silently wrong model;
- ``state.pt``: optimizer and RNG states, read back with ``torch.load(weights_only=True)``.

Inference needs only the first two.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from vagan import __version__
from vagan.errors import MACHINE_FAULTS, CheckpointError
from vagan.io.atomic import staged_dir
from vagan.io.checksum import file_sha256

FORMAT = "vagan-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
STATE_FILE = "state.pt"


@dataclass
class Checkpoint:
    """What a checkpoint folder holds."""

    meta: dict[str, Any]
    weights: dict[str, torch.Tensor]
    state: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def preset(self) -> str:
        return str(self.meta.get("preset"))

    def module_state(self, prefix: str) -> dict[str, torch.Tensor]:
        """Weights of one network (``"generator"`` or ``"discriminator"``) without the prefix."""
        head = prefix + "."
        return {k[len(head) :]: v for k, v in self.weights.items() if k.startswith(head)}


def save_checkpoint(
    path: Path,
    modules: dict[str, torch.nn.Module],
    meta: dict[str, Any],
    state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically, replacing an older one at ``path``."""
    weights = {
        f"{name}.{key}": tensor.detach().cpu().contiguous()
        for name, module in modules.items()
        for key, tensor in module.state_dict().items()
    }
    full_meta = {"format": FORMAT, "version": FORMAT_VERSION, "vagan_version": __version__, **meta}
    with staged_dir(Path(path), replace=True) as tmp:  # inside a run folder this run owns
        # serialised in memory, written through Python's files: a disk that fills or fails mid-write raises
        # OSError(ENOSPC/EIO), where safetensors' writer raises SafetensorError and torch.save's "unexpected pos"
        (tmp / WEIGHTS_FILE).write_bytes(save(weights))
        if state is not None:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            (tmp / STATE_FILE).write_bytes(buffer.getbuffer())
        full_meta["checksums"] = {name: file_sha256(tmp / name) for name in (WEIGHTS_FILE, STATE_FILE)
                                  if (tmp / name).is_file()}
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2, default=str))
    return Path(path)


def _verify(path: Path, meta: dict[str, Any], name: str) -> None:
    """``path/name`` against the SHA-256 its ``meta.json`` recorded (checkpoints older than the
    checksums, and shipped models, which the registry checks, record none)."""
    expected = meta.get("checksums", {}).get(name) if isinstance(meta.get("checksums"), dict) else None
    if expected is not None and (path / name).is_file() and file_sha256(path / name) != expected:
        raise CheckpointError(f"{path / name} does not match the SHA-256 its {META_FILE} recorded when it was saved: "
                              "the file is damaged (a flipped byte, a bad disk or copy) or was replaced; use another "
                              "checkpoint of the run (last or final) or train again")


def read_meta(path: Path, expect_preset: str | None = None) -> dict[str, Any]:
    """A checkpoint folder's ``meta.json``, checked (format, version, preset) without reading any weights."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} not found (expected a folder with {WEIGHTS_FILE} and {META_FILE})")
    meta_path = path / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path} is not a vagan checkpoint: {META_FILE} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{meta_path} is corrupt ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: not a vagan checkpoint (format tag missing)")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {meta.get('version')} is not supported by vagan {__version__} "
            f"(expects {FORMAT_VERSION})"
        )
    if expect_preset is not None and meta.get("preset") != expect_preset:
        raise CheckpointError(f"{path} holds preset {meta.get('preset')!r}, not {expect_preset!r}")
    return meta


def load_checkpoint(path: Path, with_state: bool = False, expect_preset: str | None = None) -> Checkpoint:
    """Read a checkpoint folder; every failure is a :class:`CheckpointError` naming the file."""
    path = Path(path)
    meta = read_meta(path, expect_preset)
    _verify(path, meta, WEIGHTS_FILE)
    try:
        weights = load_file(str(path / WEIGHTS_FILE))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {WEIGHTS_FILE} is missing") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path / WEIGHTS_FILE} is corrupt or truncated ({err})") from None
    broken = [name for name, tensor in weights.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:  # found at load, not after a series was denoised into NaN
        raise CheckpointError(f"{path / WEIGHTS_FILE}: {len(broken)} weight tensor(s) hold NaN or infinite values "
                              f"(first: {broken[0]}); the checkpoint is damaged or its training diverged")
    state: dict[str, Any] = {}
    if with_state:
        _verify(path, meta, STATE_FILE)
        try:
            state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"{path}: {STATE_FILE} is missing, so training cannot resume from it") from None
        except MACHINE_FAULTS:
            raise
        except Exception as err:  # torch raises many types for a bad pickle
            raise CheckpointError(f"{path / STATE_FILE} is corrupt or holds more than tensors ({type(err).__name__})") from None
    return Checkpoint(meta=meta, weights=weights, state=state, path=path)


def load_module_state(module: torch.nn.Module, ckpt: Checkpoint, prefix: str) -> None:
    """Load one network's weights, with a clear error when the shapes or names do not fit."""
    state = ckpt.module_state(prefix)
    if not state:
        raise CheckpointError(f"{ckpt.path}: holds no {prefix} weights")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0] if str(err) else "mismatch"
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), "")
        raise CheckpointError(
            f"{ckpt.path}: {prefix} weights do not fit this model (preset {ckpt.preset!r}): {first} {detail}"[:500]
        ) from None
