"""Atomic output: nothing half-written, nothing overwritten unasked, ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vagan.errors import OutputExistsError, VaganError
from vagan.io.atomic import atomic_dir, atomic_file


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_failure_leaves_no_output_and_no_temporary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "half.dcm").write_bytes(b"x")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "one.npy") as tmp:
        tmp.write_bytes(b"x")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert (out / "old.txt").read_text() == "old"
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]


def test_output_inside_an_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "series"
    src.mkdir()
    with pytest.raises(VaganError, match="overlaps the input"), atomic_dir(src / "denoised", inputs=[src]):
        pass
    assert list(src.iterdir()) == []


def test_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "a.txt").write_text("a")
        with atomic_file(tmp_path / "b.png") as tmp:
            tmp.write_bytes(b"b")
    finally:
        os.umask(old)
    # tempfile makes 0700 folders and 0600 files; a user's output is readable by others as usual
    assert _mode(tmp_path / "out") == 0o755
    assert _mode(tmp_path / "b.png") == 0o644
