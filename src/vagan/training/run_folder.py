"""The run folder of ``vagan train``, the one place that knows its layout: created atomically with
its ownership marker, locked while a process trains in it, replaced only when vagan wrote it,
resumed only with an unchanged config, and read back (config, checkpoints, logs) by inference,
evaluation and the reports.

Layout: ``config.yaml`` (the validated config), ``checkpoints/<stage>/{last,final}``, ``logs/``
(``metrics.csv`` and TensorBoard), the marker ``.vagan-output.json`` and the lock ``.vagan-lock``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from vagan.config_schema import load_yaml
from vagan.errors import CheckpointError, ConfigError, OutputError, OutputExistsError
from vagan.io.atomic import (
    atomic_file,
    check_no_overlap,
    check_writable,
    prepare_growing_dir,
)
from vagan.io.ownership import check_replaceable, read_marker, write_marker
from vagan.training.checkpoint import META_FILE, STATE_FILE, WEIGHTS_FILE
from vagan.training.config import ExperimentConfig, config_from_dict

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
CHECKPOINTS = "checkpoints"
LAST = "last"  # the newest checkpoint of a stage in progress
FINAL = "final"  # the checkpoint of a finished stage
LOGS = "logs"
METRICS_CSV = f"{LOGS}/metrics.csv"
TENSORBOARD = f"{LOGS}/tensorboard"
LOCK_FILE = ".vagan-lock"
RUN_ENTRIES = (
    CONFIG_FILE, LOCK_FILE, METRICS_CSV, f"{TENSORBOARD}/events.out.tfevents.*",
    *(f"{CHECKPOINTS}/*/*/{name}" for name in (WEIGHTS_FILE, META_FILE, STATE_FILE)),
    f"{CHECKPOINTS}/*/.*.tmp-*/*",  # a checkpoint being written when a process was killed
    f"{CHECKPOINTS}/*/.*.old-*/*/*",  # a checkpoint being replaced then
)
"""The files a run may hold (``fnmatch`` per path segment; see :mod:`vagan.io.ownership`)."""

RESUME_MAY_CHANGE = (
    "stages.*.epochs", "stages.*.max_steps",  # lengthen a run
    "train.device", "train.num_workers", "train.log_every", "train.checkpoint_every", "train.progress",
    "train.precision",  # a resumed stage keeps the precision recorded in its checkpoint
)
"""Config keys (``fnmatch`` patterns over dotted keys, stages by name) that a resumed run may change:
they change how long a run is, where and how visibly it runs, not the weights of a given step."""


PATH_KEYS = ("data.root", "train.vgg_weights", "train.init_weights")  # compared as resolved paths


def stage_dir(run_dir: Path, stage: str) -> Path:
    """Where the checkpoints of ``stage`` live."""
    return Path(run_dir) / CHECKPOINTS / stage


def final_dir(run_dir: Path, stage: str) -> Path:
    """The checkpoint of ``stage`` once it has finished."""
    return stage_dir(run_dir, stage) / FINAL


# ------------------------------------------------------------------------------------------ reading a run


def is_run_folder(path: Path) -> bool:
    """``path`` holds a run's config and its training log."""
    return (Path(path) / CONFIG_FILE).is_file() and (Path(path) / METRICS_CSV).is_file()


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """The config a run was started with, as written (no schema applied); :class:`CheckpointError` if unreadable."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a vagan run folder ({CONFIG_FILE} is missing)")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"), str(path)) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupt ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} is not a config mapping")
    return raw


def load_run_config(run_dir: Path) -> ExperimentConfig:
    """The run's config under today's schema; :class:`CheckpointError` naming the file when it is not valid."""
    try:
        return config_from_dict(read_run_config(run_dir))
    except ConfigError as err:
        raise CheckpointError(f"{Path(run_dir) / CONFIG_FILE} is not a valid vagan config ({err})") from None


def final_checkpoint(path: Path) -> Path:
    """A checkpoint folder itself, or for a run folder the final checkpoint of its last finished stage."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    if not (path / CHECKPOINTS).is_dir():
        raise CheckpointError(f"{path} is neither a vagan checkpoint folder (with {META_FILE}) nor a run folder "
                              f"(with {CHECKPOINTS}/)")
    stages = read_run_config(path).get("stages")
    if not isinstance(stages, list) or not all(isinstance(s, dict) and "name" in s for s in stages):
        raise CheckpointError(f"{path / CONFIG_FILE} is corrupt: it should list the run's stages")
    finals = [final_dir(path, s["name"]) for s in stages if final_dir(path, s["name"]).is_dir()]
    if not finals:
        raise CheckpointError(f"run folder {path} has no finished stage (no {CHECKPOINTS}/<stage>/{FINAL}); "
                              "train it first")
    return finals[-1]


def run_of_checkpoint(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint folder (``RUN/checkpoints/<stage>/<name>``) belongs to, if it is one."""
    run = Path(checkpoint).parent.parent.parent
    return run if Path(checkpoint).parent.parent.name == CHECKPOINTS and is_run_folder(run) else None


class RunLock:
    """An exclusive ``flock`` on the run folder's lock file, held while one process trains in it."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Lock ``run_dir``; :class:`OutputError` when another process holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows has no flock
            return cls(None)
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError(f"run folder {run_dir} is in use by another vagan process; wait for it to finish or "
                              "choose another --out (a run that was just killed frees it once its data-loading "
                              "workers have exited, within seconds)") from None
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of a config, stages keyed by name, lists as lists (YAML reads tuples back as lists)."""
    config = yaml.safe_load(yaml.safe_dump(config))
    stages = {f"stages.{s.get('name')}": s for s in config.pop("stages", []) or []}
    flat = _flatten(config)
    flat.update(_flatten(stages))
    flat.update({name: True for name in stages})  # a stage added or removed is a difference too
    for key in PATH_KEYS:  # the same file given relative or absolute is the same file
        if flat.get(key) and Path(flat[key]).expanduser().exists():  # (init_weights may name a shipped model)
            flat[key] = str(Path(flat[key]).expanduser().resolve())
    return flat


def resume_mismatches(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose value differs between the saved and the current config, except :data:`RESUME_MAY_CHANGE`."""
    old, new = _comparable(previous), _comparable(current)
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))
    return [k for k in changed if not any(fnmatch.fnmatchcase(k, pattern) for pattern in RESUME_MAY_CHANGE)]


def _saved_config(run_dir: Path) -> dict[str, Any]:
    """The config a run was started with, normalised by today's schema (old keys upgraded, defaults filled)."""
    try:
        raw = read_run_config(run_dir)
    except CheckpointError as err:
        raise CheckpointError(f"--resume: {err}") from None
    try:
        return config_from_dict(raw).to_dict()
    except ConfigError:  # written by a vagan whose schema differed: compare what is there
        return raw


def _write_config(run_dir: Path, cfg: ExperimentConfig) -> None:
    with atomic_file(run_dir / CONFIG_FILE, overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")


# ------------------------------------------------------------------------------------------ writing a run


def _has_checkpoints(run_dir: Path) -> bool:
    folder = run_dir / CHECKPOINTS
    return folder.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in folder.rglob("*"))


def _open_for_resume(run_dir: Path, cfg: ExperimentConfig) -> RunLock:
    previous = _saved_config(run_dir)
    if previous.get("preset") != cfg.preset:
        raise ConfigError(f"{run_dir} holds a {previous.get('preset')!r} run; cannot resume it as {cfg.preset!r}")
    changed = resume_mismatches(previous, cfg.to_dict())
    if changed:
        shown = ", ".join(changed[:6]) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
        raise ConfigError(f"cannot resume {run_dir}: the config differs in {shown}; a resumed run may change only "
                          f"{', '.join(RESUME_MAY_CHANGE)}. Start a new run instead")
    lock = RunLock.acquire(run_dir)
    try:
        if read_marker(run_dir) is None:  # a run folder of a vagan from before the markers
            write_marker(run_dir, "run", RUN_ENTRIES)
        if not _has_checkpoints(run_dir):
            log.warning("--resume: %s has no checkpoint yet; training starts from the beginning", run_dir)
        _write_config(run_dir, cfg)
    except BaseException:
        lock.release()
        raise
    return lock


def check_run_folder(run_dir: Path, *, resume: bool, overwrite: bool, inputs: tuple[Path, ...] = ()) -> bool:
    """The checks of :func:`open_run_folder` that need no config (cheap: run them before reading data);
    True when ``run_dir`` holds a run to resume."""
    run_dir = Path(run_dir)
    check_no_overlap(run_dir, inputs)
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"--out {run_dir} is a file; give a folder for the run")
    holds_something = run_dir.is_dir() and any(run_dir.iterdir())
    if resume:
        return holds_something
    if holds_something:
        if not overwrite:
            raise OutputExistsError(f"run folder {run_dir} is not empty; pass --resume to continue it or --overwrite "
                                    "to start again")
        check_replaceable(run_dir, "run")
    check_writable(run_dir)
    return False


def open_run_folder(run_dir: Path, cfg: ExperimentConfig, *, resume: bool, overwrite: bool,
                    inputs: tuple[Path, ...] = ()) -> RunLock:
    """Check, create (or resume) and lock ``run_dir`` for ``cfg``; nothing changes unless every check passes.

    Raises:
        OutputError: ``run_dir`` overlaps an input (the data, the VGG19 weights), is a file, is not
            writable, or another process trains in it.
        OutputExistsError: it holds a run and neither ``resume`` nor ``overwrite`` is given; with
            ``overwrite``, it was not written by ``vagan train`` or holds other files; or another
            process created it meanwhile.
        ConfigError: ``resume`` with a config that differs in a key outside :data:`RESUME_MAY_CHANGE`.
    """
    run_dir = Path(run_dir)
    if check_run_folder(run_dir, resume=resume, overwrite=overwrite, inputs=inputs):
        return _open_for_resume(run_dir, cfg)
    if resume:
        log.warning("--resume: %s holds no run yet; starting a new one", run_dir)
    prepare_growing_dir(run_dir, "run", RUN_ENTRIES, overwrite=overwrite, inputs=inputs, guard=_locked)
    lock = RunLock.acquire(run_dir)
    try:
        _write_config(run_dir, cfg)
    except BaseException:
        lock.release()
        raise
    return lock


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    lock = RunLock.acquire(run_dir)
    try:
        yield
    finally:
        lock.release()
