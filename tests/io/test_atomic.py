"""Safe output: nothing half-written, nothing replaced unasked or unowned, no race lost silently."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from vagan.errors import OutputError, OutputExistsError
from vagan.io.atomic import (
    atomic_dir,
    atomic_file,
    check_outputs_apart,
    check_writable,
    prepare_growing_dir,
    rename_no_replace,
)
from vagan.io.ownership import MARKER, read_marker


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write(out: Path, text: str, overwrite: bool = False) -> None:
    with atomic_dir(out, "evaluation", overwrite=overwrite) as tmp:
        (tmp / "report.md").write_text(text)
        (tmp / "figures").mkdir()
        (tmp / "figures" / "a.png").write_bytes(b"png")


def test_failure_leaves_no_output_and_no_temporary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out", "evaluation") as tmp:
        (tmp / "half.dcm").write_bytes(b"x")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "one.npy") as tmp:
        tmp.write_bytes(b"x")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_written_folder_carries_a_marker_listing_its_files(tmp_path: Path) -> None:
    _write(tmp_path / "out", "one")
    record = read_marker(tmp_path / "out")
    assert record is not None and record["kind"] == "evaluation" and record["written_by"] == "vagan"
    assert record["files"] == {"figures/a.png": 3, "report.md": 3}  # path -> size
    assert record["vagan_version"] and record["command"]


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        _write(out, "new")
    assert (out / "report.md").read_text() == "old"
    _write(out, "new", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "report.md").read_text() == "new"


def test_overwrite_never_deletes_a_folder_vagan_did_not_write(tmp_path: Path) -> None:
    user = tmp_path / "u"
    user.mkdir()
    (user / "thesis.docx").write_text("years of work")
    with pytest.raises(OutputExistsError, match=r"not written by vagan.*thesis\.docx"):
        _write(user, "x", overwrite=True)
    assert (user / "thesis.docx").read_text() == "years of work"
    assert sorted(p.name for p in user.iterdir()) == ["thesis.docx"]


def test_overwrite_refuses_a_vagan_folder_of_another_kind_or_with_added_files(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    with pytest.raises(OutputExistsError, match="evaluation report"), atomic_dir(out, "dicom-series", overwrite=True):
        pass
    (out / "figures" / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"vagan did not write.*: figures/notes\.txt"):
        _write(out, "new", overwrite=True)
    assert (out / "figures" / "notes.txt").read_text() == "mine" and (out / "report.md").read_text() == "old"


def test_a_forged_or_broken_marker_proves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.csv").write_text("1")
    (out / MARKER).write_text(json.dumps({"kind": "evaluation"}))  # not written_by vagan
    with pytest.raises(OutputExistsError, match="not written by vagan"):
        _write(out, "x", overwrite=True)
    (out / MARKER).write_bytes(b"\xff\xfe not json")
    with pytest.raises(OutputExistsError, match="not written by vagan"):
        _write(out, "x", overwrite=True)
    assert (out / "data.csv").read_text() == "1"


def test_an_empty_folder_may_be_replaced(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    _write(tmp_path / "out", "new", overwrite=True)
    assert (tmp_path / "out" / "report.md").read_text() == "new"


def test_outputs_of_one_command_may_not_overlap(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="overlap"):
        check_outputs_apart([tmp_path / "a", tmp_path / "a"])
    with pytest.raises(OutputError, match="overlap"):
        check_outputs_apart([tmp_path / "a", tmp_path / "a" / "maps"])
    check_outputs_apart([tmp_path / "a", tmp_path / "ab"])


def test_output_inside_an_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "series"
    src.mkdir()
    with pytest.raises(OutputError, match="overlaps the input"), atomic_dir(src / "denoised", "dicom-series",
                                                                           inputs=[src]):
        pass
    assert list(src.iterdir()) == []


def test_an_unwritable_place_is_refused_before_work(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        check_writable(tmp_path / "file" / "out")
    # root may write anywhere, so the permission answer is simulated
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match="no permission"):
        check_writable(tmp_path / "new" / "out")


def test_a_folder_created_meanwhile_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(OutputExistsError, match="another process"), atomic_dir(out, "evaluation") as tmp:
        (tmp / "mine.md").write_text("mine")
        out.mkdir()
        (out / "theirs.md").write_text("theirs")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["theirs.md"]
    with pytest.raises(OutputExistsError, match="another process"), atomic_file(tmp_path / "a.npy") as tmp:
        tmp.write_bytes(b"mine")
        (tmp_path / "a.npy").write_bytes(b"theirs")
    assert (tmp_path / "a.npy").read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "out"]


def test_rename_no_replace(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    with pytest.raises(FileExistsError):
        rename_no_replace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b").read_text() == "b"
    rename_no_replace(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c").read_text() == "a" and not (tmp_path / "a").exists()


def _racer(out: str, text: str, barrier, results) -> None:
    try:
        with atomic_dir(Path(out), "evaluation") as tmp:
            (tmp / "report.md").write_text(text)
            barrier.wait(timeout=30)  # every racer has passed the existence check
        results.put(("ok", text))
    except OutputExistsError as err:
        results.put(("exists", str(err)))


def test_of_concurrent_runs_one_wins_and_the_others_say_exists(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(str(tmp_path / "out"), f"run {i}", barrier, results)) for i in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    winners = [text for kind, text in outcomes if kind == "ok"]
    assert len(winners) == 1, outcomes
    assert all("exists" in text or "another process" in text for kind, text in outcomes if kind == "exists")
    assert (tmp_path / "out" / "report.md").read_text() == winners[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the losers left no temporary behind


def test_a_growing_folder_is_replaced_only_when_vagan_made_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    prepare_growing_dir(run, "run", ["config.yaml", "logs/metrics.csv"], overwrite=False)
    (run / "config.yaml").write_text("a: 1")
    (run / "logs").mkdir()
    (run / "logs" / "metrics.csv").write_text("x")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        prepare_growing_dir(run, "run", ["config.yaml", "logs/metrics.csv"], overwrite=False)
    (run / "paper.tex").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"vagan did not write.*: paper\.tex"):
        prepare_growing_dir(run, "run", ["config.yaml", "logs/metrics.csv"], overwrite=True)
    (run / "paper.tex").unlink()
    prepare_growing_dir(run, "run", ["config.yaml", "logs/metrics.csv"], overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == [MARKER]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out", "evaluation") as tmp:
            (tmp / "a.txt").write_text("a")
        with atomic_file(tmp_path / "b.png") as tmp:
            tmp.write_bytes(b"b")
    finally:
        os.umask(old)
    # tempfile makes 0700 folders and 0600 files; a user's output is readable by others as usual
    assert _mode(tmp_path / "out") == 0o755
    assert _mode(tmp_path / "b.png") == 0o644


def test_a_file_vagan_wrote_but_the_user_changed_blocks_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write(out, "old")
    (out / "report.md").write_text("my edits to the report")
    with pytest.raises(OutputExistsError, match=r"changed since.*report\.md"):
        _write(out, "new", overwrite=True)
    assert (out / "report.md").read_text() == "my edits to the report"


def test_user_files_deep_inside_a_growing_folder_block_overwrite(tmp_path: Path) -> None:
    """A run lists the paths it may create as patterns: a file elsewhere, however deep, is the user's."""
    run = tmp_path / "run"
    patterns = ["config.yaml", "checkpoints/*/*/model.safetensors", "logs/metrics.csv"]
    prepare_growing_dir(run, "run", patterns, overwrite=False)
    (run / "checkpoints/psnr/final").mkdir(parents=True)
    (run / "checkpoints/psnr/final/model.safetensors").write_bytes(b"w")
    for deep in ("checkpoints/notes.txt", "checkpoints/psnr/final/notes.txt", "logs/plots/a.png"):
        (run / deep).parent.mkdir(parents=True, exist_ok=True)
        (run / deep).write_text("mine")
        with pytest.raises(OutputExistsError, match=deep.replace(".", r"\.")):
            prepare_growing_dir(run, "run", patterns, overwrite=True)
        assert (run / deep).read_text() == "mine"
        (run / deep).unlink()
    (run / "logs/plots").rmdir()  # an empty folder the user made is theirs too
    prepare_growing_dir(run, "run", patterns, overwrite=True)


def test_a_vagan_output_nested_in_a_growing_folder_answers_for_itself(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    prepare_growing_dir(demo, "demo", ["simulation/*.png"], overwrite=False)
    _write(demo / "report", "r")
    (demo / "report" / "figures" / "mine.png").write_bytes(b"user")
    with pytest.raises(OutputExistsError, match=r"report/figures/mine\.png"):
        prepare_growing_dir(demo, "demo", ["simulation/*.png"], overwrite=True)
    (demo / "report" / "figures" / "mine.png").unlink()
    prepare_growing_dir(demo, "demo", ["simulation/*.png"], overwrite=True)
    assert not (demo / "report").exists()


def test_temporaries_of_a_killed_run_are_swept_and_failed_replacements_leave_none(tmp_path: Path) -> None:
    import socket

    dead = 2**22 + 12345  # above the default pid_max: no process has it
    host = socket.gethostname()
    stale = tmp_path / f".out.tmp-{host}-{dead}-abc"
    stale.mkdir()
    (stale / "IM000001.dcm").write_bytes(b"half")
    foreign = tmp_path / f".out.tmp-otherhost-{dead}-abc"  # another machine's process may still run
    foreign.mkdir()
    _write(tmp_path / "out", "new")
    assert not stale.exists() and foreign.exists()


def test_links_and_empty_folders_the_user_added_block_overwrite(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "p.txt").write_text("keep")
    out = tmp_path / "out"
    _write(out, "old")
    (out / "pdir").symlink_to(precious, target_is_directory=True)
    with pytest.raises(OutputExistsError, match="pdir"):
        _write(out, "new", overwrite=True)
    (out / "pdir").unlink()
    (out / "emptydir").mkdir()
    with pytest.raises(OutputExistsError, match="emptydir/"):
        _write(out, "new", overwrite=True)
    (out / "emptydir").rmdir()
    _write(out, "new", overwrite=True)
    assert (precious / "p.txt").read_text() == "keep"
