"""Ownership markers: which folders vagan wrote, so ``--overwrite`` never deletes anything else.

Every output folder gets a small JSON marker (:data:`MARKER`) saying what wrote it: the kind of
output, the vagan version, the command line and the time. A finished output lists every file it
holds; a folder that grows while a command runs (a training run, the demo) lists the top-level
names vagan may create in it. A folder may be replaced only when it carries a marker of the same
kind and holds nothing else.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from vagan.errors import OutputExistsError

MARKER = ".vagan-output.json"
OutputKind = Literal["dicom-series", "attention-maps", "dataset", "evaluation", "training-report", "run", "demo"]

_DESCRIBE = {
    "dicom-series": "denoised or simulated DICOM series",
    "attention-maps": "folder of attention maps",
    "dataset": "paired LDCT/NDCT dataset",
    "evaluation": "evaluation report",
    "training-report": "training report",
    "run": "training run",
    "demo": "demo folder",
}


def _command() -> str:
    argv = list(sys.argv) or ["vagan"]
    argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() and p.name != MARKER)


def write_marker(folder: Path, kind: OutputKind, entries: Iterable[str] | None = None) -> Path:
    """Mark ``folder`` as a vagan ``kind``; it lists the files it holds now, or with ``entries``
    the top-level names vagan may create in a folder that grows."""
    from vagan import __version__

    folder = Path(folder)
    record: dict[str, Any] = {"written_by": "vagan", "kind": kind, "vagan_version": __version__,
                              "command": _command(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "pid": os.getpid()}
    if entries is None:
        record["files"] = _files(folder)
    else:
        record["entries"] = sorted(set(entries))
    path = folder / MARKER
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder``; ``None`` when it has none (or an unreadable one, which proves nothing)."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("written_by") != "vagan" or record.get("kind") not in _DESCRIBE:
        return None
    return record


def _some(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _foreign(folder: Path, record: dict[str, Any]) -> list[str]:
    """What ``folder`` holds that its marker does not account for."""
    if isinstance(record.get("entries"), list):
        allowed = set(record["entries"]) | {MARKER}
        return sorted(p.name for p in folder.iterdir() if p.name not in allowed)
    listed = set(record.get("files") or [])
    return [name for name in _files(folder) if name not in listed]


def check_replaceable(path: Path, kind: OutputKind) -> None:
    """Raise :class:`OutputExistsError` unless ``path`` is empty or a vagan ``kind`` holding only what vagan wrote."""
    path = Path(path)
    what = _DESCRIBE[kind]
    if path.is_symlink():
        raise OutputExistsError(f"--overwrite refused: {path} is a symbolic link; vagan replaces only a {what} it wrote")
    if not path.is_dir():
        raise OutputExistsError(f"--overwrite refused: {path} is a file, not a {what} vagan wrote")
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return
    record = read_marker(path)
    if record is None:
        raise OutputExistsError(f"--overwrite refused: {path} was not written by vagan (it has no {MARKER} marker) and "
                                f"holds {len(names)} item(s): {_some(names)}; move them or choose another output")
    if record["kind"] != kind:
        raise OutputExistsError(f"--overwrite refused: {path} is a vagan {_DESCRIBE[record['kind']]} (written by "
                                f"`{record.get('command', '?')}`), not a {what}; choose another output")
    foreign = _foreign(path, record)
    if foreign:
        raise OutputExistsError(f"--overwrite refused: {path} also holds {len(foreign)} item(s) vagan did not write: "
                                f"{_some(foreign)}; move them or choose another output")
