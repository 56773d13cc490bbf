"""Atomic output: write into a hidden temporary sibling, rename at the end.

A crash, a full disk or a user error never leaves a half-written output, and an existing
output is only replaced when the caller says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from vagan.errors import OutputExistsError, VaganError


def check_no_overlap(path: Path, inputs: Sequence[Path]) -> None:
    """Refuse an output that is an input, lies inside one, or holds one (replacing it would delete it)."""
    out = Path(path).expanduser().resolve()
    for src in inputs:
        src = Path(src).expanduser().resolve()
        if out == src or out in src.parents or src in out.parents:
            raise VaganError(f"output {path} overlaps the input {src}; choose an output outside the inputs")


def check_output(path: Path, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse an existing output without ``overwrite``, and any output that overlaps an input."""
    path = Path(path)
    check_no_overlap(path, inputs)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"output {path} exists; pass --overwrite to replace it")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _as_if_created(path: Path, base_mode: int) -> None:
    """Give a ``tempfile`` path (created 0600/0700) the permissions a plain open/mkdir would give."""
    os.chmod(path, base_mode & ~_umask())


def _replace(tmp: Path, final: Path) -> None:
    if final.exists():
        backup = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, backup)
        os.replace(tmp, final)
        if backup.is_dir():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            backup.unlink(missing_ok=True)
    else:
        os.replace(tmp, final)


@contextlib.contextmanager
def atomic_dir(final: Path, overwrite: bool = False, inputs: Sequence[Path] = ()) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success it becomes ``final``."""
    final = Path(final)
    check_output(final, overwrite, inputs)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    _as_if_created(tmp, 0o777)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace(tmp, final)


@contextlib.contextmanager
def atomic_file(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file path next to ``final``; on success it is renamed to ``final``."""
    final = Path(final)
    check_output(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.tmp-", dir=final.parent, suffix=final.suffix)
    os.close(fd)
    tmp = Path(name)
    _as_if_created(tmp, 0o666)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
