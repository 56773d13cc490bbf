"""The run folder: replaced only when vagan wrote it, resumed only with an unchanged config, locked
while a process trains in it, and never created before the config, data and weights are checked."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
import torch
from support import tiny_config, tiny_data, write_tiny_dataset
from typer.testing import CliRunner

from vagan.cli import app
from vagan.errors import (
    CheckpointError,
    ConfigError,
    OutputError,
    OutputExistsError,
    VaganError,
)
from vagan.io.ownership import check_replaceable, read_marker
from vagan.training.run_folder import (
    RunLock,
    final_checkpoint,
    resume_mismatches,
    run_of_checkpoint,
)
from vagan.training.trainer import train

runner = CliRunner()


def _short(preset: str = "g_psnr", *extra: str):
    return tiny_config(preset, "stages.*.max_steps=2", *extra)


def test_a_new_run_carries_the_run_marker(tmp_path: Path) -> None:
    train(_short(), tmp_path / "run", data=tiny_data())
    record = read_marker(tmp_path / "run")
    assert record is not None and record["kind"] == "run"
    check_replaceable(tmp_path / "run", "run")  # the marker accounts for every file training wrote


def test_overwrite_refuses_a_folder_that_merely_holds_a_config_yaml(tmp_path: Path) -> None:
    user = tmp_path / "u"
    user.mkdir()
    (user / "config.yaml").write_text("my: settings\n")
    (user / "thesis.docx").write_text("years of work")
    with pytest.raises(OutputExistsError, match=r"not written by vagan.*thesis\.docx"):
        train(_short(), user, data=tiny_data(), overwrite=True)
    assert sorted(p.name for p in user.iterdir()) == ["config.yaml", "thesis.docx"]
    assert (user / "config.yaml").read_text() == "my: settings\n"


def test_overwrite_replaces_a_run_only_without_foreign_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_short(), run, data=tiny_data())
    (run / "notes.md").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"vagan did not write.*: notes\.md"):
        train(_short(), run, data=tiny_data(), overwrite=True)
    assert (run / "notes.md").read_text() == "mine" and (run / "checkpoints/psnr/final").is_dir()
    (run / "notes.md").unlink()
    train(_short(), run, data=tiny_data(), overwrite=True)
    assert (run / "checkpoints/psnr/final").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the old run is gone, no temporary left


def test_a_run_folder_may_not_hold_its_data_or_weights(tmp_path: Path) -> None:
    root = write_tiny_dataset(tmp_path / "study" / "data")
    with pytest.raises(OutputError, match="overlaps the input"):
        train(_short("g_psnr", f"data.root={root}"), tmp_path / "study", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["data"]


@pytest.mark.parametrize("change", ["train.perceptual=none", "train.vgg_layer=conv1_2", "stages.0.losses.mse=0.5",
                                    "data.patch_size=16", "train.seed=3"])
def test_resume_refuses_any_change_outside_the_allow_list_and_changes_nothing(tmp_path: Path, change: str) -> None:
    run = tmp_path / "run"
    train(_short("g_psnr"), run, data=tiny_data())
    saved = (run / "config.yaml").read_bytes()
    key = change.split("=")[0].replace("stages.0.", "stages.psnr.")
    with pytest.raises(ConfigError, match=rf"cannot resume .*differs in {key}"):
        train(_short("g_psnr", change), run, data=tiny_data(), resume=True)
    assert (run / "config.yaml").read_bytes() == saved


def test_resume_may_lengthen_a_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_short("g_psnr"), run, data=tiny_data())
    train(tiny_config("g_psnr", "stages.*.max_steps=3", "train.log_every=2", "train.num_workers=0"), run,
          data=tiny_data(), resume=True)
    assert "max_steps: 3" in (run / "config.yaml").read_text()


def test_resume_mismatches_known_answers() -> None:
    old = {"preset": "p", "model": {"a": 1}, "stages": [{"name": "psnr", "max_steps": 5, "lr": 1.0}],
           "train": {"seed": 0, "log_every": 10}}
    new = {"preset": "p", "model": {"a": 1}, "stages": [{"name": "psnr", "max_steps": 9, "lr": 1.0}],
           "train": {"seed": 0, "log_every": 1}}
    assert resume_mismatches(old, new) == []
    assert resume_mismatches(old, {**new, "model": {"a": 2}}) == ["model.a"]
    assert resume_mismatches(old, {**new, "stages": [{"name": "psnr", "max_steps": 5, "lr": 2.0}]}) == ["stages.psnr.lr"]
    assert "stages.gan" in resume_mismatches(old, {**new, "stages": [*new["stages"], {"name": "gan"}]})
    assert resume_mismatches(old, {**new, "train": {"seed": 0, "log_every": 1, "new_key": 1}}) == ["train.new_key"]


def test_init_weights_is_compared_as_a_path_or_as_a_shipped_name(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "base").mkdir()
    monkeypatch.chdir(tmp_path)
    old = {"train": {"init_weights": str(tmp_path / "base")}}
    assert resume_mismatches(old, {"train": {"init_weights": "base"}}) == []  # the same folder, relative
    assert resume_mismatches(old, {"train": {"init_weights": "other"}}) == ["train.init_weights"]
    named = {"train": {"init_weights": "g_psnr-phantom512"}}
    assert resume_mismatches(named, named) == []
    assert resume_mismatches(named, {"train": {"init_weights": "vagan-phantom512"}}) == ["train.init_weights"]


def test_resume_of_a_run_that_never_started_says_so(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        train(_short(), tmp_path / "fresh", data=tiny_data(), resume=True)
    assert "holds no run yet" in caplog.text
    assert (tmp_path / "fresh/checkpoints/psnr/final").is_dir()


def test_a_run_in_use_by_another_process_is_neither_resumed_nor_replaced(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(_short(), run, data=tiny_data())
    lock = RunLock.acquire(run)  # flock locks are per open file: this stands in for another process
    try:
        with pytest.raises(OutputError, match="in use by another vagan process"):
            train(_short(), run, data=tiny_data(), resume=True)
        with pytest.raises(OutputError, match="in use by another vagan process"):
            train(_short(), run, data=tiny_data(), overwrite=True)
    finally:
        lock.release()
    assert (run / "checkpoints/psnr/final").is_dir()


class _Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", ["pickle", "truncated", "wrong_shape"])
def test_bad_vgg_weights_fail_before_stage_one_in_one_line(tmp_path: Path, content: str, capsys) -> None:
    from vagan.models.vgg import _state_shapes

    weights = tmp_path / "vgg19.pth"
    if content == "pickle":
        weights.write_bytes(pickle.dumps({"features.0.weight": _Payload()}))
    elif content == "truncated":
        torch.save({k: torch.zeros(s) for k, s in _state_shapes().items()}, weights)
        weights.write_bytes(weights.read_bytes()[:5000])
    else:
        shapes = {k: torch.zeros(s) for k, s in _state_shapes().items()}
        shapes["features.0.weight"] = torch.zeros(64, 1, 3, 3)
        torch.save(shapes, weights)
    cfg = tiny_config("vagan", "train.perceptual=vgg19", f"train.vgg_weights={weights}")
    with pytest.raises(VaganError) as err:
        train(cfg, tmp_path / "run", data=tiny_data())
    message = str(err.value)
    assert str(weights) in message and "\n" not in message and "weights_only=False" not in message
    assert not (tmp_path / "run").exists()  # stage 1 never started
    assert "pickled code ran" not in capsys.readouterr().out


def test_misspelt_patient_in_the_split_is_an_error(tmp_path: Path) -> None:
    root = write_tiny_dataset(tmp_path / "data")
    cfg = _short("g_psnr", f"data.root={root}", "data.split={train: [T000, T001], val: [T02]}")
    with pytest.raises(ConfigError, match=r"unknown patient 'T02'; did you mean 'T002'"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["train.checkpoint_every=0", "model.generator_features=-1", "train.num_workers=-1"])
def test_bad_config_values_are_one_line_and_leave_no_run_folder(tmp_path: Path, value: str) -> None:
    result = runner.invoke(app, ["train", "-c", "g_psnr", "--out", str(tmp_path / "run"), "--set", value])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()



def test_a_new_run_of_a_later_stage_alone_is_refused_before_a_folder_exists(tmp_path: Path) -> None:
    with pytest.raises(VaganError, match="starts from stage psnr.*run stage psnr first"):
        train(_short("vagan"), tmp_path / "run", data=tiny_data(), stages=["gan"])
    assert not (tmp_path / "run").exists()


def test_resume_and_overwrite_together_are_refused(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "-c", "g_psnr", "--out", str(tmp_path / "run"), "--resume", "--overwrite"])
    assert result.exit_code == 2 and "give one of them" in result.output


def test_the_same_data_root_given_relative_or_absolute_resumes(tmp_path: Path, monkeypatch) -> None:
    root = write_tiny_dataset(tmp_path / "data")
    split = "data.split={train: [T000, T001], val: [T002]}"
    train(_short("g_psnr", f"data.root={root}", split), tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    train(_short("g_psnr", "data.root=data", split, "stages.*.max_steps=3"), tmp_path / "run", resume=True)


def test_nan_vgg_weights_are_refused_up_front(tmp_path: Path) -> None:
    from vagan.models.vgg import _state_shapes

    weights = tmp_path / "vgg19.pth"
    torch.save({k: torch.full(s, float("nan")) for k, s in _state_shapes().items()}, weights)
    cfg = tiny_config("vagan", "train.perceptual=vgg19", f"train.vgg_weights={weights}")
    with pytest.raises(VaganError, match="NaN or infinite"):
        train(cfg, tmp_path / "run", data=tiny_data())
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["7", "[1, 2]"])
def test_vgg_weights_with_a_non_tensor_value_are_one_error(tmp_path: Path, value: str) -> None:
    import yaml

    from vagan.models.vgg import _state_shapes

    state = {k: torch.zeros(s) for k, s in _state_shapes().items()}
    state["features.2.weight"] = yaml.safe_load(value)
    torch.save(state, tmp_path / "vgg19.pth")
    cfg = tiny_config("vagan", "train.perceptual=vgg19", f"train.vgg_weights={tmp_path / 'vgg19.pth'}")
    with pytest.raises(VaganError, match=r"features\.2\.weight holds a (int|list), expected a tensor"):
        train(cfg, tmp_path / "run", data=tiny_data())


def test_train_takes_a_data_folder_named_like_a_number_or_with_a_hash(tmp_path: Path) -> None:
    root = write_tiny_dataset(tmp_path / "my #1 scans" / "2016")
    result = runner.invoke(app, ["train", "-c", "g_psnr", "--data", str(root), "--out", str(tmp_path / "run"),
                                 "--set", "stages.*.max_steps=1", "--set", "model.generator_features=8",
                                 "--set", "data.patch_size=32", "--set", "stages.*.batch_size=4",
                                 "--set", "data.split={train: [T000, T001], val: [T002]}", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    import yaml

    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["root"] == str(root)


# --------------------------------------------------------------------------- reading a run


def _fake_run(root: Path, stages: list[str], finished: list[str]) -> Path:
    (root / "logs").mkdir(parents=True)
    (root / "checkpoints").mkdir()
    (root / "logs" / "metrics.csv").write_text("stage,epoch,step,name,value\n")
    (root / "config.yaml").write_text("stages:\n" + "".join(f"  - name: {s}\n" for s in stages))
    for stage in finished:
        (root / "checkpoints" / stage / "final").mkdir(parents=True)
        (root / "checkpoints" / stage / "final" / "meta.json").write_text("{}")
    return root


def test_a_run_folder_stands_for_the_final_checkpoint_of_its_last_finished_stage(tmp_path: Path) -> None:
    run = _fake_run(tmp_path / "run", ["psnr", "gan"], ["psnr", "gan"])
    assert final_checkpoint(run) == run / "checkpoints" / "gan" / "final"
    assert final_checkpoint(run / "checkpoints" / "psnr" / "final") == run / "checkpoints" / "psnr" / "final"
    assert run_of_checkpoint(final_checkpoint(run)) == run
    half = _fake_run(tmp_path / "half", ["psnr", "gan"], ["psnr"])
    assert final_checkpoint(half) == half / "checkpoints" / "psnr" / "final"
    assert run_of_checkpoint(tmp_path / "elsewhere" / "final") is None


def test_a_run_folder_that_cannot_be_read_is_one_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no finished stage"):
        final_checkpoint(_fake_run(tmp_path / "new", ["psnr"], []))
    broken = _fake_run(tmp_path / "broken", ["psnr"], [])
    (broken / "config.yaml").write_text("stages: [unclosed\n")
    with pytest.raises(CheckpointError, match="config.yaml is corrupt"):
        final_checkpoint(broken)
    (broken / "config.yaml").write_text("stages: 3\n")
    with pytest.raises(CheckpointError, match="should list the run's stages"):
        final_checkpoint(broken)
    with pytest.raises(CheckpointError, match="neither a vagan checkpoint folder"):
        final_checkpoint(tmp_path)


def test_a_resume_refused_for_a_damaged_state_changes_nothing(tmp_path: Path) -> None:
    """Issue 23 item 5: the refusal used to rewrite config.yaml and add a TensorBoard event file."""
    run = tmp_path / "run"
    train(tiny_config("g_psnr", "stages.*.max_steps=2", "train.log_every=1", "train.num_workers=0"), run,
          data=tiny_data())
    for state in run.rglob("state.pt"):
        state.write_bytes(b"not a checkpoint")
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.suffix != ".lock"}
    with pytest.raises(CheckpointError, match=r"state\.pt"):
        train(tiny_config("g_psnr", "stages.*.max_steps=4", "train.log_every=1", "train.num_workers=0"), run,
              data=tiny_data(), resume=True)
    after = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.suffix != ".lock"}
    assert after == before
