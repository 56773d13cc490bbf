"""Shipped models: packed from a run, listed, used by name, refused when a file fails its checksum."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pydicom
import pytest
from support import tiny_config, tiny_data
from typer.testing import CliRunner

from vagan.cli import app
from vagan.errors import CheckpointError, ConfigError, OutputExistsError
from vagan.evaluation.eval_config import MethodSpec
from vagan.inference import pretrained
from vagan.inference.denoise import NetworkDenoiser
from vagan.inference.model_loading import load_trained_model
from vagan.training.trainer import train

runner = CliRunner()


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    base = tmp_path_factory.mktemp("shipped")
    run = base / "run"
    train(tiny_config("ga_psnr", "stages.*.max_steps=2"), run, data=tiny_data())
    root = base / "pretrained"
    entry = pretrained.pack_model(run, "tiny-ga", training_data="tiny phantom", dose=0.25, budget="8 patches",
                                  test_metrics={"psnr_patch": 40.0}, root=root)
    return run, root, entry


@pytest.fixture
def package_models(shipped, monkeypatch, tmp_path):
    """A copy of the packed registry standing in for the package's own folder."""
    _, root, _ = shipped
    copy = tmp_path / "pretrained"
    shutil.copytree(root, copy)
    monkeypatch.setattr(pretrained, "pretrained_dir", lambda: copy)
    return copy


def test_a_packed_model_gives_the_run_s_outputs_within_the_fp16_tolerance(shipped) -> None:
    run, root, entry = shipped
    assert entry.storage in ("fp16", "fp32") and entry.preset == "ga_psnr"
    registry = json.loads((root / "registry.json").read_text())
    assert registry["tiny-ga"]["sha256"]["model.safetensors"] == entry.sha256["model.safetensors"]
    hu = pretrained._check_slice()
    original = NetworkDenoiser(load_trained_model(run))(hu).hu
    packed = NetworkDenoiser(load_trained_model(pretrained.resolve_model("tiny-ga", root)))(hu).hu
    assert np.sqrt(np.mean((packed - original) ** 2)) <= pretrained.MAX_FP16_RMS_HU
    assert load_trained_model(pretrained.resolve_model("tiny-ga", root)).notice == pretrained.NOTICE


def test_a_damaged_shipped_file_is_an_error_never_a_download(package_models) -> None:
    weights = package_models / "tiny-ga" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="fails its SHA-256 checksum.*reinstall"):
        pretrained.resolve_model("tiny-ga")


def test_models_are_listed_and_usable_by_name(package_models, tmp_path) -> None:
    listed = runner.invoke(app, ["models"])
    assert listed.exit_code == 0 and "tiny-ga | ga_psnr | tiny phantom | 0.25 | 8 patches" in listed.output
    assert MethodSpec(spec="tiny-ga").path == package_models / "tiny-ga"
    series = tmp_path / "ct"
    series.mkdir()
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), series / "CT_small.dcm")
    result = runner.invoke(app, ["denoise", "--model", "tiny-ga", str(series), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = pydicom.dcmread(next((tmp_path / "out").glob("*.dcm")))
    assert "not for diagnostic use" in written.DerivationDescription


def test_the_listing_gives_each_model_its_own_notice(shipped, package_models) -> None:
    """Models with different notices (phantom-trained, real-CT-trained) are each listed with theirs."""
    run, _, _ = shipped
    pretrained.pack_model(run, "tiny-real", training_data="real CT", dose=0.25, budget="8 patches",
                          test_metrics={"psnr_patch": 40.0}, root=package_models,
                          notice="trained on real CT with simulated low dose; not for diagnostic use")
    last = runner.invoke(app, ["models"]).output.strip().splitlines()[-1]
    assert f"tiny-ga: {pretrained.NOTICE}" in last
    assert "tiny-real: trained on real CT with simulated low dose; not for diagnostic use" in last


def test_an_unknown_name_lists_the_shipped_ones(package_models) -> None:
    with pytest.raises(ConfigError, match=r"no shipped model \(tiny-ga; see `vagan models`\)"):
        MethodSpec(spec="tiny-gb")


def test_packing_never_replaces_a_folder_the_registry_does_not_list(shipped, tmp_path) -> None:
    run, _, _ = shipped
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="not replacing"):
        pretrained.pack_model(run, "mine", training_data="x", dose=0.25, budget="x", test_metrics={}, root=tmp_path)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_a_model_packed_with_its_own_notice_carries_it(shipped, tmp_path) -> None:
    run, _, _ = shipped
    notice = "trained on real CT with simulated low dose; not for diagnostic use"
    entry = pretrained.pack_model(run, "tiny-real", training_data="x", dose=0.25, budget="x", test_metrics={},
                                  root=tmp_path, notice=notice)
    assert entry.notice == notice and pretrained.shipped_models(tmp_path)["tiny-real"].notice == notice
    assert load_trained_model(pretrained.resolve_model("tiny-real", tmp_path)).notice == notice
