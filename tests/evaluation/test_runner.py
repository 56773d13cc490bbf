"""End to end: trained tiny models + a Mayo-layout test set -> Table II, figures and report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from support import tiny_config, write_tiny_dataset

from vagan.errors import CheckpointError, ConfigError, InputDataError, OutputExistsError
from vagan.evaluation import runner
from vagan.evaluation.eval_config import EvaluationConfig, MethodSpec
from vagan.evaluation.metrics import PatchSpec
from vagan.evaluation.report_figures import auto_zoom, figure_indices
from vagan.evaluation.runner import evaluate
from vagan.training.trainer import train

SPLIT = "data.split={train: [T000], val: [T001], test: [T002]}"
PATCHES = PatchSpec(size=32)  # the tiny slices are 48 px
NAMES = ["LDCT", "NDCT (oracle)", "BM3D", "ga_psnr/psnr", "g_psnr/psnr"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 3-patient dataset (T002 is the test patient) and two tiny runs: attentive and plain."""
    base = tmp_path_factory.mktemp("eval")
    root = write_tiny_dataset(base / "data")
    common = [SPLIT, f"data.root={root}", "data.patches_per_slice=2", "data.val_slices=1"]
    train(tiny_config("ga_psnr", "stages.*.max_steps=1", *common), base / "ga")
    train(tiny_config("g_psnr", "stages.*.max_steps=1", *common), base / "g")
    return base, root


@pytest.fixture(scope="module")
def evaluated(runs):
    base, _ = runs
    cfg = EvaluationConfig.from_dict(dict(methods=["ldct", "ndct", "bm3d", str(base / "ga"), str(base / "g")],
                                          patches=PATCHES, timing_slices=1, timing_size=64, fid_tile=16))
    return evaluate(cfg, base / "out", progress=False)


def _cheap(root: Path, **kw) -> EvaluationConfig:
    """LDCT only, no FID, no timing: the fast path for error tests."""
    args = {"methods": ["ldct"], "data_root": str(root), "split": {"train": ["T000"], "test": ["T002"]},
            "patches": PATCHES, "fid_net": "none", "timing_slices": 0, "figure_slices": 1}
    args.update(kw)
    return EvaluationConfig.from_dict(args)


def _read_pairs_by_hand(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """LDCT/NDCT HU slices of one patient straight from pydicom, paired by slice position."""
    import pydicom

    def series(sub: str) -> dict[float, np.ndarray]:
        out = {}
        for f in sorted((folder / sub).glob("*.dcm")):
            ds = pydicom.dcmread(f)
            hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            out[round(float(ds.ImagePositionPatient[2]), 3)] = hu
        return out

    low, full = series("quarter_1mm"), series("full_1mm")
    assert low.keys() == full.keys() and len(low) == 4
    return [(low[z], full[z]) for z in sorted(low)]


# --------------------------------------------------------------------------- Table II


def test_table_has_one_row_per_method_in_order(evaluated):
    assert [row[0] for row in evaluated.table.rows] == NAMES
    assert set(evaluated.summary) == set(NAMES)
    assert any(c.startswith("FID [ct-quality(") for c in evaluated.table.columns)
    assert "ms / 64² slice" in evaluated.table.columns


def test_ldct_row_equals_psnr_computed_by_hand(evaluated, runs):
    _, root = runs
    field, window, err = [], [], []
    for ldct, ndct in _read_pairs_by_hand(root / "T002"):
        unit_x, unit_y = (np.clip((hu + 1024.0) / 4096.0, 0.0, 1.0) for hu in (ldct, ndct))  # field: [0, 1]
        field.append(10 * math.log10(1.0 / np.mean((unit_x - unit_y) ** 2)))
        win_x, win_y = (np.clip(hu, -160.0, 240.0) for hu in (ldct, ndct))  # display window, range 400
        window.append(10 * math.log10(400.0**2 / np.mean((win_x - win_y) ** 2)))
        err.append(math.sqrt(np.mean((ldct - ndct) ** 2)))
    ldct = evaluated.summary["LDCT"]
    assert ldct["psnr_slice"].n == 4
    assert ldct["psnr_slice"].mean == pytest.approx(np.mean(field), abs=1e-9)
    assert ldct["psnr_window"].mean == pytest.approx(np.mean(window), abs=1e-9)
    assert ldct["rmse_hu"].mean == pytest.approx(np.mean(err), abs=1e-6)
    assert 50.0 < np.mean(err) < 70.0  # tiny_pairs adds 60 HU noise
    row = dict(zip(evaluated.table.columns, evaluated.table.rows[0]))
    assert row["PSNR slice (window) [dB]"] == f"{np.mean(window):.2f} ± {np.std(window, ddof=1):.2f}"
    assert row["ms / 64² slice"] == "–"  # the input costs nothing
    report = evaluated.report.markdown.read_text()
    assert f"| LDCT | {ldct['psnr_patch'].mean:.2f} ± " in report
    assert f"{np.mean(field):.2f} ± {np.std(field, ddof=1):.2f}" in report  # whole-slice field table


def test_oracle_method_scores_perfectly(evaluated):
    s = evaluated.summary["NDCT (oracle)"]
    for metric in ("psnr_patch", "psnr_slice", "psnr_window"):
        assert s[metric].mean == math.inf
    for metric in ("ssim_patch", "ssim_slice", "ssim_window"):
        assert s[metric].mean == pytest.approx(1.0, abs=1e-12)
    assert s["rmse_hu"].mean == 0.0
    assert evaluated.fid["NDCT (oracle)"].value == pytest.approx(0.0, abs=1e-9)
    assert evaluated.fid["LDCT"].value > 1e-6


def test_bm3d_denoises_and_estimates_the_noise_level(evaluated):
    s = evaluated.summary
    assert s["BM3D"]["psnr_slice"].mean > s["LDCT"]["psnr_slice"].mean + 3.0
    assert s["BM3D"]["rmse_hu"].mean < s["LDCT"]["rmse_hu"].mean
    summary = json.loads(evaluated.summary_json.read_text())
    calibration = summary["methods"]["BM3D"]["bm3d_calibration"]
    assert 45.0 < calibration["diff_std_hu"] < 75.0  # the data carry 60 HU of white noise
    assert 40.0 < calibration["sigma_hu"] < 80.0 and len(calibration["grid"]) >= 3  # the walk from 1x diff_std
    assert "T002" not in calibration["patients"]  # calibrated on non-test patients only
    assert min(e for _, e in calibration["grid"]) == dict(map(tuple, calibration["grid"]))[calibration["sigma_hu"]]
    assert summary["methods"]["BM3D"]["bm3d_sigma_hu"]["mean"] == calibration["sigma_hu"]
    assert "calibrated on" in evaluated.report.markdown.read_text().split("## Methods")[1].split("##")[0]


def test_bm3d_without_pairs_outside_the_test_set_falls_back_to_the_estimator_and_says_so(tmp_path, runs):
    _, root = runs
    result = evaluate(_cheap(root, methods=["bm3d"], subset="all", split=None, max_slices=2), tmp_path / "out",
                      progress=False)
    assert any("no LDCT/NDCT pairs outside the test set" in n for n in result.notes)
    summary = json.loads(result.summary_json.read_text())
    assert "bm3d_calibration" not in summary["methods"]["BM3D"]
    assert 40.0 < summary["methods"]["BM3D"]["bm3d_sigma_hu"]["mean"] < 80.0  # estimated per slice


def test_timing_for_every_computing_method(evaluated):
    assert set(evaluated.timing_ms) == {"BM3D", "ga_psnr/psnr", "g_psnr/psnr"}
    assert all(t.mean > 0 and t.n == 1 for t in evaluated.timing_ms.values())


# --------------------------------------------------------------------------- files


def test_report_files_exist_and_are_complete(evaluated, runs):
    base, _ = runs
    out = base / "out"
    assert evaluated.out_dir == out
    for name in ("report.md", "report.html", "metrics.csv", "summary.json"):
        assert (out / name).is_file(), name
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert evaluated.figures and all(p.parent == out / "figures" for p in evaluated.figures)
    for png in evaluated.figures:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"figures/{png.name}" in md and f"figures/{png.name}" in html
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(p.name for p in evaluated.figures)
    assert not [p for p in base.iterdir() if p.name.startswith(".out")]  # no temporary folder left
    for text in ("T002", "[-1024, 3072]", "[-160, 240]", "ct-quality", "2048", "torch"):
        assert text in md, text
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("method,image_index,patient,slice,psnr_patch")
    assert len(rows) == 1 + len(NAMES) * 4
    summary = json.loads((out / "summary.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert summary["data"]["patients"] == ["T002"] and summary["data"]["slices"] == 4
    assert summary["methods"]["NDCT (oracle)"]["metrics"]["psnr_slice"]["mean"] == "inf"
    assert EvaluationConfig.from_dict(summary["config"]) == EvaluationConfig.from_dict(dict(
        methods=[m["spec"] for m in summary["config"]["methods"]], patches=PATCHES, timing_slices=1, timing_size=64,
        fid_tile=16))


def test_attention_figure_only_for_the_attentive_model(evaluated):
    names = sorted(p.name for p in evaluated.figures)
    assert [n for n in names if n.startswith("attention_")] == ["attention_ga_psnr-psnr.png"]
    assert [n for n in names if n.startswith("comparison_")] == ["comparison_1.png", "comparison_2.png"]
    assert [n for n in names if n.startswith("curves_")] == ["curves_g_psnr-psnr.png", "curves_ga_psnr-psnr.png"]
    summary = json.loads(evaluated.summary_json.read_text())
    assert set(summary["methods"]["ga_psnr/psnr"]["attention_mse"]) == {"signed", "abs"}
    assert "attention_mse" not in summary["methods"]["g_psnr/psnr"]


def test_existing_out_dir_is_refused_untouched_and_replaced_only_when_vagan_wrote_it(tmp_path, runs):
    _, root = runs
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="overwrite"):
        evaluate(_cheap(root), out, progress=False)
    with pytest.raises(OutputExistsError, match=r"not written by vagan.*mine\.txt"):
        evaluate(_cheap(root), out, overwrite=True, progress=False)
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "keep me"
    (out / "mine.txt").unlink()
    evaluate(_cheap(root), out, progress=False)
    result = evaluate(_cheap(root, subset="all", split=None), out, overwrite=True, progress=False)
    assert (out / "report.md").is_file()
    assert result.summary["LDCT"]["psnr_slice"].n == 12  # subset 'all': every patient of the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failure_while_writing_leaves_nothing(tmp_path, runs, monkeypatch):
    _, root = runs

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(runner, "write_report", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        evaluate(_cheap(root), tmp_path / "out", progress=False)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- errors


def test_unknown_method_spec_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'bm3d'"):
        EvaluationConfig.from_dict({"methods": ["bm4d"]})
    with pytest.raises(ConfigError, match="bm3d:SIGMA_HU"):
        EvaluationConfig.from_dict({"methods": ["bm3d:abc"]})
    with pytest.raises(ConfigError, match="reserved"):
        EvaluationConfig.from_dict({"methods": [("LDCT", "bm3d")]})
    with pytest.raises(ConfigError, match="did you mean 'methods'"):
        EvaluationConfig.from_dict({"method": ["ldct"]})
    with pytest.raises(ConfigError, match="patches"):
        EvaluationConfig.from_dict({"methods": ["ldct"], "patches": {"size": 5}})
    cfg = EvaluationConfig.from_dict({"methods": {"noisy": "ldct", "B": "bm3d:25"}}, ["timing_slices=0"])
    assert cfg.methods == (MethodSpec("noisy", "ldct"), MethodSpec("B", "bm3d:25")) and cfg.timing_slices == 0
    assert cfg.methods[1].kind == "bm3d" and cfg.methods[1].sigma_hu == 25.0


def test_a_folder_that_is_not_a_checkpoint_is_a_checkpoint_error(tmp_path, runs):
    _, root = runs
    bogus = tmp_path / "not_a_model"
    bogus.mkdir()
    (bogus / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(CheckpointError, match="not_a_model"):
        evaluate(_cheap(root, methods=["ldct", str(bogus)]), tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_empty_test_subset_is_an_input_error_with_a_hint(tmp_path, runs):
    _, root = runs
    cfg = _cheap(root, split={"train": ["T000", "T001", "T002"]})
    with pytest.raises(InputDataError, match="no patients.*subset='all'"):
        evaluate(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_evaluating_on_training_patients_is_flagged(tmp_path, runs):
    base, _ = runs
    cfg = EvaluationConfig.from_dict(dict(methods=[str(base / "g")], subset="train", max_slices=2, patches=PATCHES,
                                          fid_net="none", timing_slices=0, figure_slices=1))
    result = evaluate(cfg, tmp_path / "out", progress=False)
    assert any("WARNING" in n and "T000" in n for n in result.notes)
    assert "trained or validated on test patients" in result.report.markdown.read_text()


# --------------------------------------------------------------------------- helpers


def test_figure_slices_and_zoom_box():
    assert figure_indices(4, 2) == [1, 3] and figure_indices(1, 2) == [0] and figure_indices(0, 2) == []
    assert len(set(figure_indices(3, 3))) == 3
    image = np.full((64, 80), -1000.0)
    image[40:60, 50:70] = 40.0  # the body sits in the lower right
    assert auto_zoom(image) == (50 - 8, 60 - 10, 16, 20)
    assert auto_zoom(np.full((64, 80), 40.0)) == (24, 30, 16, 20)


def test_patches_larger_than_the_test_slices_are_refused_before_any_model_loads(tmp_path, runs, monkeypatch):
    base, root = runs
    import vagan.evaluation.runner as runner_module

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the patch size was checked")

    monkeypatch.setattr(runner_module, "load_methods", must_not_load)
    cfg = _cheap(root, methods=["ldct", str(base / "g")], patches=PatchSpec(size=64))
    with pytest.raises(ConfigError, match=r"patches.size: 64 is larger than the test slices \(\[\(48, 48\)\]\)"):
        evaluate(cfg, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_typed_evaluate_options_win_over_set_as_in_train(tmp_path, runs):
    from typer.testing import CliRunner

    from vagan.cli import app

    _, root = runs
    result = CliRunner().invoke(app, [
        "evaluate", "ldct", "--out", str(tmp_path / "out"), "--data", str(root), "--fid-net", "none",
        "--set", f"data_root={tmp_path / 'nowhere'}", "--set", "fid_net=vgg19", "--set", "timing_slices=0",
        "--set", "figure_slices=1", "--set", "patches.size=32", "--set", "split={train: [T000], test: [T002]}"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["data"]["root"] == str(root) and summary["fid_net"] is None


def test_bm3d_psd_is_calibrated_on_non_test_pairs_and_its_spectrum_written_for_denoise(tmp_path, runs):
    from vagan.inference.noise_psd import load_autocorrelation

    _, root = runs
    result = evaluate(_cheap(root, methods=["ldct", "bm3d-psd"], max_slices=2), tmp_path / "out", progress=False)
    summary = json.loads(result.summary_json.read_text())
    calibration = summary["methods"]["BM3D-PSD"]["bm3d_calibration"]
    assert calibration["kind"] == "psd" and "T002" not in calibration["patients"]
    # the tiny data carry 60 HU of white noise: the chosen spectrum's std lies near it
    assert 40.0 < calibration["sigma_hu"] < 130.0
    assert result.summary["BM3D-PSD"]["rmse_hu"].mean < result.summary["LDCT"]["rmse_hu"].mean
    saved = load_autocorrelation(tmp_path / "out" / "bm3d_psd_autocorrelation.npy")
    assert float(np.sqrt(saved[saved.shape[0] // 2, saved.shape[1] // 2])) == pytest.approx(calibration["sigma_hu"])
