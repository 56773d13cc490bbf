"""Which engine runs a trained network on this machine: PyTorch or onnxruntime.

``auto`` (the default of ``vagan denoise`` and ``vagan evaluate``) chooses as ``auto`` precision
does: by what this CPU runs well, confirmed by a short measured probe (docs/performance.md,
"Engines").

* On a GPU, with ``--compile``, or with an explicitly reduced precision: PyTorch.
* On a CPU where ``onnxruntime`` is installed (``pip install "vagan[onnx]"``): the model is exported
  once to an ONNX file in vagan's cache (:func:`cache_dir`), verified within 1 HU of PyTorch fp32 by
  :func:`~vagan.inference.export.export_onnx`, and both engines denoise one
  :data:`PROBE_SIDE`² phantom slice (one warm-up, best of :data:`PROBE_REPEATS`). The faster one is
  taken; onnxruntime only when it is at least :data:`MIN_SPEEDUP` faster, since PyTorch is the
  reference.
* The cache is keyed by the SHA-256 of the checkpoint's weights and config, so a changed model never
  meets an old graph; the graph's own SHA-256 is stored beside it and checked before use, and the
  probe's verdict is stored per CPU, so the second run on a machine pays only the hashing.

The cache lives in ``$VAGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/vagan``, else ``~/.cache/vagan``:
never next to the model, whose folder is an input and may be read-only (a shipped model inside the
installed package). A cache that cannot be written costs the speed-up, never the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from vagan import __version__
from vagan.devices import cpu_model
from vagan.errors import CheckpointError, ConfigError, MissingResourceError, VaganError
from vagan.inference.denoise import Denoiser, NetworkDenoiser
from vagan.inference.model_loading import TrainedModel
from vagan.inference.export import INSTALL_HINT
from vagan.io.checksum import file_sha256
from vagan.precision import Precision

log = logging.getLogger(__name__)

EngineName = Literal["auto", "torch", "onnxruntime"]
ENGINES: tuple[str, ...] = typing.get_args(EngineName)
PROBE_SIDE = 256
"""Side of the phantom slice the probe denoises (time grows with pixels alike for both engines)."""
PROBE_REPEATS = 2
MIN_SPEEDUP = 1.05
"""onnxruntime must beat PyTorch by this factor in the probe to be chosen (PyTorch is the reference)."""


def cache_dir() -> Path:
    """vagan's cache folder (see the module docstring); not created here."""
    if os.environ.get("VAGAN_CACHE_DIR"):
        return Path(os.environ["VAGAN_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "vagan"


def onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def model_key(model: TrainedModel) -> str:
    """SHA-256 of what the exported graph depends on: the checkpoint's files, vagan and torch versions."""
    from vagan.training.checkpoint import META_FILE, WEIGHTS_FILE

    digest = hashlib.sha256()
    for name in (WEIGHTS_FILE, META_FILE):
        if not (model.checkpoint / name).is_file():
            raise CheckpointError(f"{model.checkpoint}: no {name}; the engine cache needs a checkpoint folder")
        digest.update(name.encode() + b"\0" + file_sha256(model.checkpoint / name).encode())
    import onnx
    import onnxruntime

    versions = (__version__, torch.__version__, onnx.__version__, onnxruntime.__version__)
    digest.update("\0".join(versions).encode())  # a graph verified under one runtime is checked again under another
    return digest.hexdigest()


def machine_key() -> str:
    """This CPU and thread count, for the stored probe verdict."""
    import onnxruntime

    return "|".join([cpu_model(), platform.machine(), torch.backends.cpu.get_cpu_capability(),
                     f"{torch.get_num_threads()} threads", f"onnxruntime {onnxruntime.__version__}"])


class _Entry:
    """One cached model: ``<key>.onnx`` and ``<key>.json`` (the graph's SHA-256 and the probe verdicts)."""

    def __init__(self, root: Path, key: str) -> None:
        self.graph = root / "onnx" / f"{key}.onnx"
        self.info_path = self.graph.with_suffix(".json")

    def info(self) -> dict:
        try:
            info = json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def valid_graph(self) -> bool:
        """The graph exists and has the SHA-256 recorded when it was exported and verified."""
        sha = self.info().get("sha256")
        return self.graph.is_file() and isinstance(sha, str) and file_sha256(self.graph) == sha

    def save_info(self, info: dict) -> None:
        from vagan.io.atomic import atomic_file

        with atomic_file(self.info_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(info, indent=2))


def cached_onnx(model: TrainedModel, root: Path | None = None) -> Path:
    """The verified ONNX graph of ``model`` in the cache, exported (and verified) on first use."""
    return _cached_entry(model, root or cache_dir()).graph


def _cached_entry(model: TrainedModel, root: Path) -> _Entry:
    """The cache entry of ``model`` with its graph exported and verified (once)."""
    from vagan.inference.export import export_onnx

    entry = _Entry(root, model_key(model))
    if not entry.valid_graph():
        if entry.graph.exists():
            log.warning("cached ONNX graph %s does not match its checksum; exporting it again", entry.graph)
        entry.graph.parent.mkdir(parents=True, exist_ok=True)
        report = export_onnx(model, entry.graph, overwrite=True)
        entry.save_info({"model": model.name, "checkpoint": str(model.checkpoint), "sha256": file_sha256(entry.graph),
                         "max_abs_diff_hu": report.max_abs_diff_hu, "probes": {}})
    return entry


def _probe_seconds(denoiser: Denoiser, hu: np.ndarray) -> float:
    denoiser(hu)  # warm-up: first-call allocations, oneDNN primitive creation
    best = float("inf")
    for _ in range(PROBE_REPEATS):
        start = time.perf_counter()
        denoiser(hu)
        best = min(best, time.perf_counter() - start)
    return best


def _measured(torch_denoiser: NetworkDenoiser, onnx_denoiser: Callable[[], Denoiser], entry: _Entry
              ) -> dict[str, float]:
    """Probe times of both engines on this machine, stored in the cache entry (measured once; the
    onnxruntime session is only built when a probe is due)."""
    from vagan.inference.export import default_check_slice

    machine = machine_key()
    info = entry.info()
    stored = info.get("probes", {}).get(machine)
    if isinstance(stored, dict) and {"torch", "onnxruntime"} <= stored.keys():
        return stored
    hu = default_check_slice(PROBE_SIDE)[None]
    times = {"torch": _probe_seconds(torch_denoiser, hu), "onnxruntime": _probe_seconds(onnx_denoiser(), hu)}
    info.setdefault("probes", {})[machine] = times
    try:
        entry.save_info(info)
    except (OSError, VaganError) as err:
        log.info("could not store the engine probe in %s (%s)", entry.info_path, err)
    return times


def check_engine(engine: str) -> None:
    """A :class:`ConfigError` for an engine name that is not one of :data:`ENGINES`."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine}: expected one of {', '.join(ENGINES)}")


def network_denoiser(model: TrainedModel, *, engine: str = "auto", precision: Precision | None = None,
                     batch_size: int | None = None, compile: bool = False, name: str | None = None) -> Denoiser:
    """The denoiser of ``model`` on the engine ``engine`` asks for (``auto``: see the module docstring).

    The returned denoiser carries ``engine`` (``"torch"`` or ``"onnxruntime"``) and ``precision``
    (for onnxruntime fp32, its reason naming the engine and the probe).
    """
    check_engine(engine)
    torch_denoiser = NetworkDenoiser(model, batch_size=batch_size, precision=precision, compile=compile, name=name)
    on_cpu = model.device.type == "cpu"
    explicit_reduced = precision is not None and precision.requested in ("bf16", "fp16")
    if engine == "torch":
        return torch_denoiser
    if engine == "onnxruntime":
        if not on_cpu:
            raise ConfigError(f"--engine onnxruntime runs on the CPU; {model.name} is on {model.device}")
        if compile or explicit_reduced:
            raise ConfigError("--engine onnxruntime runs the fp32 graph: it cannot be combined with --compile or "
                              f"--precision {precision.requested if precision else ''}")
        if not onnxruntime_available():
            raise MissingResourceError(f"--engine onnxruntime needs onnx and onnxruntime: {INSTALL_HINT}")
        return _onnx_denoiser(model, cached_onnx(model), torch_denoiser, "requested")
    # auto
    if not on_cpu or compile or explicit_reduced:
        return torch_denoiser
    if not onnxruntime_available():
        log.info("engine: torch (onnxruntime is not installed; pip install \"vagan[onnx]\" lets auto try it)")
        return torch_denoiser
    try:
        root = cache_dir()  # Path.home() raises RuntimeError where HOME is unset and the user has no passwd entry
        entry = _cached_entry(model, root)
        times = _measured(torch_denoiser, lambda: _onnx_denoiser(model, entry.graph, torch_denoiser, ""), entry)
    except (OSError, RuntimeError, VaganError) as err:
        log.warning("engine auto: onnxruntime could not be prepared (%s); running PyTorch", err)
        return torch_denoiser
    speedup = times["torch"] / max(times["onnxruntime"], 1e-9)
    label = f"{torch_denoiser.precision.name} PyTorch"
    if speedup >= MIN_SPEEDUP:
        log.info("engine: onnxruntime (measured %.2fx faster than %s on this CPU)", speedup, label)
        return _onnx_denoiser(model, entry.graph, torch_denoiser, f"measured {speedup:.2f}x faster than {label}")
    log.info("engine: torch (onnxruntime measured %.2fx of %s's speed on this CPU)", speedup, label)
    return torch_denoiser


def _onnx_denoiser(model: TrainedModel, graph: Path, torch_denoiser: NetworkDenoiser, why: str) -> Denoiser:
    from vagan.inference.export import OnnxDenoiser

    denoiser = OnnxDenoiser(graph, name=torch_denoiser.name, batch_size=torch_denoiser.batch_size,
                            threads=torch.get_num_threads())
    denoiser.precision = Precision("fp32", "cpu", "onnxruntime" + (f", {why}" if why else ""), "auto")
    denoiser.model = model  # what `denoise` reports of it: notice, pixel range, label
    return denoiser
