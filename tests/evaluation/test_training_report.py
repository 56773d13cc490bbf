import csv

from support import tiny_config, tiny_data
from typer.testing import CliRunner

from vagan.cli import app
from vagan.training.trainer import train

runner = CliRunner()


def test_report_lists_the_last_validation_of_each_stage(tmp_path):
    run = tmp_path / "vagan"
    train(tiny_config("vagan", "stages.*.max_steps=2"), run, data=tiny_data())
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((run / "logs" / "metrics.csv").open()))
    last = {r["stage"]: float(r["value"]) for r in rows if r["name"] == "val_psnr"}
    text = (tmp_path / "rep" / "report.md").read_text()
    for stage, value in last.items():
        assert f"| vagan | {stage} | 2 | {value:.4g} |" in text
    assert (tmp_path / "rep" / "figures" / "curves_vagan.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "report.html").exists()


def test_not_a_run_folder(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 2 and "not a vagan run folder" in result.output
    assert not (tmp_path / "rep").exists()


def test_runs_of_the_same_folder_name_get_distinct_labels_and_a_run_twice_is_refused(tmp_path):
    for group in ("a", "b"):
        train(tiny_config("g_psnr", "stages.*.max_steps=2"), tmp_path / group / "run", data=tiny_data())
    result = runner.invoke(app, ["report", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run"),
                                 "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "rep" / "figures").iterdir())
    assert names == ["curves_a-run.png", "curves_b-run.png"]
    twice = runner.invoke(app, ["report", str(tmp_path / "a" / "run"), str(tmp_path / "a" / "run"),
                                "--out", str(tmp_path / "rep2")])
    assert twice.exit_code == 2 and "given twice" in twice.output and not (tmp_path / "rep2").exists()


def test_overwrite_never_replaces_a_folder_vagan_did_not_write(tmp_path):
    run = tmp_path / "run"
    train(tiny_config("g_psnr", "stages.*.max_steps=2"), run, data=tiny_data())
    user = tmp_path / "u"
    user.mkdir()
    (user / "thesis.docx").write_text("years of work")
    result = runner.invoke(app, ["report", str(run), "--out", str(user), "--overwrite"])
    assert result.exit_code == 2 and "not written by vagan" in result.output
    assert sorted(p.name for p in user.iterdir()) == ["thesis.docx"]
