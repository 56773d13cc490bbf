"""Atomic output: write into a hidden temporary sibling, rename at the end.

A crash, a full disk or a user error never leaves a half-written output, and an existing
output is only replaced when the caller says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from vagan.errors import OutputExistsError, VaganError


def check_output(path: Path, overwrite: bool, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse an existing output without ``overwrite`` and an output that is one of the inputs."""
    path = Path(path)
    for src in inputs:
        src = Path(src)
        if src.exists() and path.exists() and path.resolve() == src.resolve():
            raise VaganError(f"output {path} is the input; choose another output path")
        if src.exists() and src.resolve() in path.resolve().parents:
            raise VaganError(f"output {path} lies inside the input {src}; choose another path")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"output {path} exists; pass --overwrite to replace it")


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
def atomic_dir(final: Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to ``final``; on success it becomes ``final``."""
    final = Path(final)
    check_output(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
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
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
