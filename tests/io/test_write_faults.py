"""Fault injection into the writers: the disk fills (ENOSPC) or fails (EIO) in the middle of writing a DICOM
series, a NIfTI or ``.npy`` volume (``vagan denoise``), a checkpoint (``vagan train``) or an evaluation report
(``vagan evaluate``).

Every case runs the command line and expects one ``error: <cause>: <output>`` line, exit code 1 and no traceback;
no output and no hidden temporary left behind; an earlier output given with ``--overwrite`` (or, for a checkpoint,
the run's previous ``last``) intact byte for byte, and a run that resumes from it.

Two ways to fail a write, both after half the output's bytes, so the failure falls mid-output:

* ``ENOSPC``/``EIO``: Python's ``open``/``io.open`` hand vagan's hidden temporaries (``.NAME.tmp-*``, see
  :mod:`vagan.io.atomic`) a file that fails as the kernel does: a short write, then ``OSError(errno)`` with no file
  name. Writes that bypass Python's file layer (C, C++ or Rust writing to a path) do not see it: hence the
* ``tmpfs`` case: the output lies on a small real tmpfs, filled up to half the output's size, so every layer meets
  a real ENOSPC. It needs root and ``mount`` (skipped elsewhere).
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support import TINY, write_tiny_dataset
from typer.testing import CliRunner

from vagan.cli import app
from vagan.io.volume import CTVolume

runner = CliRunner()

REAL_OPEN = io.open
TEMPORARY = re.compile(r"^\..+\.(tmp|old)-")  # vagan.io.atomic._prefix
CAUSE = {"ENOSPC": "no space left on device", "EIO": "input/output error", "tmpfs": "no space left on device"}
FAULTS = ["ENOSPC", "EIO", "tmpfs"]

SPLIT = "data.split={train: [T000], val: [T001], test: [T002]}"
TRAIN_SETS = [*TINY, SPLIT, "data.patches_per_slice=2", "data.val_slices=1", "stages.*.max_steps=4",
              "train.checkpoint_every=2"]  # saves: last@2 (twice: step, epoch end), then last@4 and final@4
EVALUATE_SETS = ["timing_slices=0", "figure_slices=1", "patches.size=32", "split={train: [T000], test: [T002]}"]


# --------------------------------------------------------------------------- the failing disks


class _FailingFile(io.FileIO):
    """A file whose writes stop, as the kernel's do, when its disk's budget of bytes is spent: a short write,
    then ``OSError(code)`` without a file name."""

    def __init__(self, disk: FailingDisk, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.disk = disk

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        allowed = min(len(view), self.disk.left)
        if view.nbytes and not allowed:
            self.disk.fired += 1
            raise OSError(self.disk.code, os.strerror(self.disk.code))
        written = super().write(view[:allowed])
        self.disk.left -= written
        return written


class FailingDisk:
    """``open``/``io.open`` that give vagan's temporaries a :class:`_FailingFile` once :meth:`fail_after` armed it."""

    def __init__(self, code: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.code, self.left, self.armed, self.fired = code, 0, False, 0
        monkeypatch.setattr(builtins, "open", self.open)
        monkeypatch.setattr(io, "open", self.open)

    def fail_after(self, nbytes: int) -> None:
        self.left, self.armed = nbytes, True

    def heal(self) -> None:
        self.armed = False

    def open(self, file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, closefd=True, opener=None):
        writes = any(c in mode for c in "wax+")
        if not (self.armed and writes and isinstance(file, (str, bytes, os.PathLike))
                and any(TEMPORARY.match(part) for part in Path(os.fsdecode(file)).parts)):
            return REAL_OPEN(file, mode, buffering, encoding, errors, newline, closefd, opener)
        raw = _FailingFile(self, file, mode.replace("b", "").replace("t", ""), closefd=closefd, opener=opener)
        if "b" in mode and buffering == 0:
            return raw
        buffered = io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)
        if "b" in mode:
            return buffered
        text = io.TextIOWrapper(buffered, encoding=encoding, errors=errors, newline=newline,
                                line_buffering=buffering == 1)
        text.mode = mode
        return text


class FullTmpfs:
    """A real tmpfs that :meth:`fail_after` fills up to ``nbytes`` of free space with a ballast file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ballast = root / "ballast"

    def fail_after(self, nbytes: int) -> None:
        self.heal()
        page = os.sysconf("SC_PAGE_SIZE")
        size = (shutil.disk_usage(self.root).free - nbytes) // page * page
        with REAL_OPEN(self.ballast, "wb") as fh:
            fh.write(bytes(size))
        assert shutil.disk_usage(self.root).free <= nbytes + page

    def heal(self) -> None:
        self.ballast.unlink(missing_ok=True)

    @property
    def fired(self) -> bool:
        return True  # the file system itself fails; the error message proves it did


@pytest.fixture
def disk(fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``(where, failing disk)`` for the test's ``fault``: a folder to write into and what makes its writes fail."""
    if fault != "tmpfs":
        where = tmp_path / "work"
        where.mkdir()
        yield where, FailingDisk(getattr(errno, fault), monkeypatch)
        return
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a tmpfs needs root and mount")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        (mount / "work").mkdir()
        yield mount / "work", FullTmpfs(mount)
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


# --------------------------------------------------------------------------- what is checked


def _contents(path: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``path`` (or ``path`` itself) by relative name: its size and SHA-256."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {p.relative_to(path).as_posix(): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in files}


def _size(path: Path) -> int:
    return sum(size for size, _ in _contents(path).values())


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TEMPORARY.match(p.name))


def _one_clear_error(result, cause: str, output: Path) -> None:
    """Exit code 1 (a failure of the file system), one ``error:`` line naming the cause and the output, no traceback."""
    assert result.exit_code != 0, f"the command did not fail: its writes went past the fault\n{result.output}"
    assert isinstance(result.exception, SystemExit), f"uncaught {result.exception!r}: a traceback\n{result.output}"
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {cause}: {output}"], result.output
    assert "Traceback" not in result.output


def _copy(src: Path, dst: Path) -> Path:
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copy2(src, dst)
    return dst


# --------------------------------------------------------------------------- inputs and earlier outputs


def _train(data: Path, out: Path, *extra: str):
    sets = [x for s in TRAIN_SETS for x in ("--set", s)]
    return runner.invoke(app, ["train", "--config", "g_psnr", "--out", str(out), "--data", str(data), *sets, *extra])


def _denoise(made: dict, kind: str, out: Path, *extra: str):
    return runner.invoke(app, ["denoise", "--model", str(made["run"]), str(made[kind]), str(out), "--device", "cpu",
                               "--engine", "torch", *extra])


def _evaluate(made: dict, out: Path, *extra: str):
    sets = [x for s in EVALUATE_SETS for x in ("--set", s)]
    return runner.invoke(app, ["evaluate", "ldct", "--out", str(out), "--data", str(made["data"]), "--fid-net", "none",
                               "--device", "cpu", *sets, *extra])


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    """A tiny dataset and run, one input per kind (4 slices of 64x64) and a good output of every writer."""
    from vagan.io.dicom import write_dicom_series
    from vagan.io.nifti import write_nifti

    base = tmp_path_factory.mktemp("faults")
    made = {"data": write_tiny_dataset(base / "data"), "run": base / "run"}
    assert _train(made["data"], made["run"]).exit_code == 0
    hu = np.random.default_rng(0).normal(40.0, 30.0, (4, 64, 64)).astype(np.float32)
    made["dicom"] = write_dicom_series(hu, base / "in_dicom", series_description="in", pixel_spacing_mm=(0.7, 0.7),
                                       slice_thickness_mm=1.0)
    made["nifti"] = write_nifti(base / "in.nii.gz", CTVolume(hu=hu, pixel_spacing_mm=(0.7, 0.7)))
    np.save(base / "in.npy", hu)
    made["npy"] = base / "in.npy"
    for kind, name in (("dicom", "out_dicom"), ("nifti", "out.nii.gz"), ("npy", "out.npy")):
        made[f"{kind}_out"] = base / name
        assert _denoise(made, kind, base / name).exit_code == 0
    made["report_out"] = base / "report"
    assert _evaluate(made, made["report_out"]).exit_code == 0
    return made


# --------------------------------------------------------------------------- the cases


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("kind", ["dicom", "nifti", "npy"])
def test_denoise_output_on_a_failing_disk(made, kind, fault, disk, monkeypatch):
    where, failing = disk
    if fault == "tmpfs":  # the check before work would refuse the full disk: here it is to fill while writing
        monkeypatch.setattr("vagan.inference.files.check_free_space", lambda *args: None)
    earlier = _copy(made[f"{kind}_out"], where / made[f"{kind}_out"].name)
    before = _contents(earlier)
    half = _size(earlier) // 2
    failing.fail_after(half)
    replaced = _denoise(made, kind, earlier, "--overwrite")
    _one_clear_error(replaced, CAUSE[fault], earlier)
    assert _contents(earlier) == before
    failing.fail_after(half)
    fresh = where / f"fresh_{earlier.name}"
    new = _denoise(made, kind, fresh)
    _one_clear_error(new, CAUSE[fault], fresh)
    assert failing.fired
    assert not fresh.exists() and not fresh.is_symlink()
    assert _temporaries(where) == []


@pytest.mark.parametrize("fault", FAULTS)
def test_evaluation_report_on_a_failing_disk(made, fault, disk):
    where, failing = disk
    earlier = _copy(made["report_out"], where / "report")
    before = _contents(earlier)
    failing.fail_after(_size(earlier) // 2)
    _one_clear_error(_evaluate(made, earlier, "--overwrite"), CAUSE[fault], earlier)
    assert _contents(earlier) == before
    failing.fail_after(_size(earlier) // 2)
    fresh = where / "fresh_report"
    _one_clear_error(_evaluate(made, fresh), CAUSE[fault], fresh)
    assert failing.fired
    assert not fresh.exists()
    assert _temporaries(where) == []


@pytest.mark.parametrize("fault", FAULTS)
def test_checkpoint_on_a_failing_disk_keeps_the_previous_one_to_resume_from(made, fault, disk, monkeypatch, caplog):
    from vagan.training import trainer
    from vagan.training.checkpoint import load_checkpoint

    where, failing = disk
    run = where / "run"
    last = run / "checkpoints" / "psnr" / "last"
    kept: dict[str, tuple[int, str]] = {}
    real_save = trainer.save_checkpoint

    def save(path, modules, meta, state=None):
        if meta["progress"]["step"] == 4 and not kept:  # the first save that replaces the checkpoint of step 2
            kept.update(_contents(last))
            failing.fail_after(_size(last) // 2)
        return real_save(path, modules, meta, state)

    monkeypatch.setattr(trainer, "save_checkpoint", save)
    _one_clear_error(_train(made["data"], run), CAUSE[fault], last)
    assert failing.fired and kept
    assert _contents(last) == kept
    assert load_checkpoint(last, with_state=True).meta["progress"]["step"] == 2
    assert _temporaries(last.parent) == [] and not (last.parent / "final").exists()
    failing.heal()
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    with caplog.at_level(logging.INFO, logger="vagan.training.trainer"):
        resumed = _train(made["data"], run, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "resumed at step 2" in caplog.text
    assert load_checkpoint(last.parent / "final").meta["progress"]["step"] == 4
