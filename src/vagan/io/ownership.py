"""Ownership markers: which folders vagan wrote, so ``--overwrite`` never deletes anything else.

Every output folder gets a small JSON marker (:data:`MARKER`) saying what wrote it: the kind of
output, the vagan version, the command line and the time. A finished output lists every file it
holds with its size; a folder that grows while a command runs (a training run, the demo) lists
the paths vagan may create in it as patterns, one ``fnmatch`` pattern per path segment (``*``
never crosses a ``/``). A sub-folder with a marker of its own (a run inside the demo folder) is
judged by that marker. A folder may be replaced only when it carries a marker of the same kind
and holds nothing else.
"""

from __future__ import annotations

import fnmatch
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
OutputKind = Literal["dicom-series", "attention-maps", "dataset", "evaluation", "training-report", "run", "demo", "study",
                     "study-report", "fid-net"]

_DESCRIBE = {
    "dicom-series": "denoised or simulated DICOM series",
    "attention-maps": "folder of attention maps",
    "dataset": "paired LDCT/NDCT dataset",
    "evaluation": "evaluation report",
    "training-report": "training report",
    "run": "training run",
    "demo": "demo folder",
    "study": "study folder",
    "study-report": "study report",
    "fid-net": "FID feature net",
}


def _command() -> str:
    argv = list(sys.argv) or ["vagan"]
    argv[0] = "vagan" if Path(argv[0]).name in ("__main__.py", "-m", "-c") else Path(argv[0]).name
    return shlex.join(argv)


def _walk_files(folder: Path) -> dict[str, int]:
    """Relative path -> size of every file under ``folder`` except markers (links are not followed)."""
    out = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if name != MARKER:
                out[path.relative_to(folder).as_posix()] = path.lstat().st_size
    return dict(sorted(out.items()))


def write_marker(folder: Path, kind: OutputKind, entries: Iterable[str] | None = None) -> Path:
    """Mark ``folder`` as a vagan ``kind``; it lists the files it holds now (with sizes), or with
    ``entries`` the path patterns vagan may create in a folder that grows."""
    from vagan import __version__

    folder = Path(folder)
    record: dict[str, Any] = {"written_by": "vagan", "kind": kind, "vagan_version": __version__,
                              "command": _command(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "pid": os.getpid()}
    if entries is None:
        record["files"] = _walk_files(folder)
        record["dirs"] = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_dir())
    else:
        record["entries"] = sorted(set(entries))
    path = folder / MARKER
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of ``folder``; ``None`` when it has none (or an unreadable one, which proves nothing)."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("written_by") != "vagan" or record.get("kind") not in _DESCRIBE:
        return None
    if not isinstance(record.get("files"), (dict, list)) and not isinstance(record.get("entries"), list):
        return None
    return record


def enclosing_run(path: Path) -> Path:
    """The training run folder ``path`` lies in (a checkpoint folder given as ``--model``), else ``path``:
    an input inside a run protects the whole run."""
    path = Path(path)
    for folder in (path, *path.parents):
        record = read_marker(folder) if folder.is_dir() else None
        if record is not None and record["kind"] == "run":
            return folder
    return path


def enclosing_container(path: Path) -> tuple[Path, str] | None:
    """The vagan dataset, training run or study that ``path`` lies inside (an ancestor folder carrying
    such a marker), with its description; ``None`` when there is none. A command writing there would
    change what that folder's own command made (a dataset would then fail to train)."""
    for parent in Path(path).resolve().parents:
        record = read_marker(parent)
        if record is not None and record["kind"] in ("dataset", "run", "study"):
            return parent, _DESCRIBE[record["kind"]]
    return None


def _matches(path: str, pattern: str, prefix: bool = False) -> bool:
    """``path`` matches ``pattern`` segment by segment (with ``prefix``: the start of it, for a folder)."""
    parts, wanted = path.split("/"), pattern.split("/")
    if len(parts) > len(wanted) or (len(parts) < len(wanted) and not prefix):
        return False
    return all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _some(names: list[str], n: int = 3) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _foreign(folder: Path, record: dict[str, Any]) -> list[str]:
    """Files under ``folder`` that its marker does not account for, or that changed size since."""
    patterns = record.get("entries")
    listed = record.get("files")
    sizes = listed if isinstance(listed, dict) else dict.fromkeys(listed or [])
    folders = set(record.get("dirs") or [])
    foreign = []
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if here != folder and (here / MARKER).is_file():
            nested = read_marker(here)
            if nested is not None:  # a vagan output inside this one answers for itself
                prefix = here.relative_to(folder).as_posix()
                foreign += [f"{prefix}/{name}" for name in _foreign(here, nested)]
                dirs[:] = []
                continue
        for name in list(dirs):  # vagan writes no links, and no empty folders it does not account for
            path = here / name
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                foreign.append(rel)
                dirs.remove(name)
            elif not any(path.iterdir()) and rel not in folders and not (
                    patterns is not None and any(_matches(rel, p, prefix=True) for p in patterns)):
                foreign.append(rel + "/")
        for name in files:
            rel = (here / name).relative_to(folder).as_posix()
            if rel == MARKER:
                continue
            if (here / name).is_symlink():
                foreign.append(rel)
            elif patterns is not None:
                if not any(_matches(rel, pattern) for pattern in patterns):
                    foreign.append(rel)
            elif rel not in sizes or (sizes[rel] is not None and (here / name).lstat().st_size != sizes[rel]):
                foreign.append(rel)
    return sorted(foreign)


def check_replaceable(path: Path, kind: OutputKind) -> None:
    """Raise :class:`OutputExistsError` unless ``path`` is empty or a vagan ``kind`` holding only what vagan wrote."""
    path = Path(path)
    what = _DESCRIBE[kind]
    if path.is_symlink():
        raise OutputExistsError(f"--overwrite refused: {path} is a symbolic link; vagan replaces only {_article(what)} "
                                f"{what} it wrote")
    if not path.is_dir():
        raise OutputExistsError(f"--overwrite refused: {path} is a file, not {_article(what)} {what} vagan wrote")
    names = sorted(p.name for p in path.iterdir())
    if not names:
        return
    record = read_marker(path)
    if record is None:
        why = f"its {MARKER} is not a valid vagan marker" if MARKER in names else f"it has no {MARKER} marker"
        raise OutputExistsError(f"--overwrite refused: {path} was not written by vagan ({why}) and holds "
                                f"{len(names)} item(s): {_some(names)}; move them or choose another output")
    if record["kind"] != kind:
        raise OutputExistsError(f"--overwrite refused: {path} is a vagan {_DESCRIBE[record['kind']]} (written by "
                                f"`{record.get('command', '?')}`), not {_article(what)} {what}; choose another output")
    foreign = _foreign(path, record)
    if foreign:
        raise OutputExistsError(f"--overwrite refused: {path} also holds {len(foreign)} file(s) vagan did not write "
                                f"(or that changed since): {_some(foreign)}; move them or choose another output")
