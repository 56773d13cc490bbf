import pytest
from typer.testing import CliRunner

from vagan import __version__
from vagan.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["simulate", "train", "denoise", "evaluate", "demo"])
def test_every_command_has_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_config_errors_are_one_line_with_exit_code_2(tmp_path):
    result = runner.invoke(app, ["train", "--config", "vagan", "--out", str(tmp_path / "r"), "--set", "model.widht=3"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["error: unknown config key 'model.widht'; did you mean 'generator'?"] or \
        (len(lines) == 1 and lines[0].startswith("error: unknown config key 'model.widht'"))
    assert "Traceback" not in result.output


def test_train_without_data_says_how_to_give_it(tmp_path):
    result = runner.invoke(app, ["train", "--config", "g_psnr", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "data.root" in result.output


def test_train_on_missing_dataset(tmp_path):
    result = runner.invoke(app, ["train", "--config", "g_psnr", "--out", str(tmp_path / "r"),
                                 "--data", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "does not exist" in result.output


@pytest.mark.parametrize("args", [["nosuch"], ["denoise"], ["denoise", "a", "b", "--model", "m", "--batch-size", "0"],
                                  ["train", "--bogus"], ["export", "x.onnx", "-m", "m", "--opset", "abc"]])
def test_command_line_mistakes_are_one_error_line(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], result.output
