"""`vagan export`: a trained generator to ONNX, run in onnxruntime, against PyTorch fp32.

The round trips need the optional packages (``pip install "vagan[onnx]"``) and are skipped without
them; the missing-package messages are tested either way.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from support import tiny_config, tiny_data
from typer.testing import CliRunner

from vagan.cli import app
from vagan.errors import ConfigError, OutputExistsError, VaganError
from vagan.inference import export as export_module
from vagan.inference.denoise import NetworkDenoiser
from vagan.inference.export import OnnxDenoiser, default_check_slice, export_onnx
from vagan.inference.model_loading import TrainedModel, load_trained_model
from vagan.training.build import build_generator
from vagan.training.trainer import train

runner = CliRunner()
TOLERANCE_HU = 1.0


@pytest.fixture(scope="module")
def onnx_packages():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


def _trained(tmp_path_factory, preset: str) -> Path:
    run = tmp_path_factory.mktemp("run") / preset
    train(tiny_config(preset, "stages.*.max_steps=2"), run, data=tiny_data())
    return run


@pytest.fixture(scope="module")
def attentive(onnx_packages, tmp_path_factory):
    """A tiny trained ga_psnr run, exported: (run folder, report)."""
    run = _trained(tmp_path_factory, "ga_psnr")
    report = export_onnx(load_trained_model(run), tmp_path_factory.mktemp("onnx") / "ga_psnr.onnx")
    return run, report


@pytest.fixture(scope="module")
def plain(onnx_packages, tmp_path_factory):
    """A tiny trained g_psnr run (no attentive block), exported: (run folder, report)."""
    run = _trained(tmp_path_factory, "g_psnr")
    report = export_onnx(load_trained_model(run), tmp_path_factory.mktemp("onnx") / "g_psnr.onnx")
    return run, report


def _reference(run: Path, hu: np.ndarray, keep_attention: bool = False):
    return NetworkDenoiser(load_trained_model(run), batch_size=2)(hu, keep_attention=keep_attention)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max())


def _lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


def test_attentive_round_trip_matches_pytorch(attentive):
    run, report = attentive
    assert report.path.is_file() and report.opset == 17
    assert report.input_names == ("hu",) and report.output_names == ("denoised", "attention")
    assert report.check_shape == (1, 256, 256) and report.max_abs_diff_hu <= TOLERANCE_HU
    assert 0 <= report.rms_diff_hu <= report.max_abs_diff_hu
    # the file alone, checked independently of the report
    hu = default_check_slice()
    got = OnnxDenoiser(report.path)(hu, keep_attention=True)
    want = _reference(run, hu, keep_attention=True)
    assert got.hu.dtype == np.float32 and got.hu.shape == (1, 256, 256)
    assert _max_diff(got.hu, want.hu) <= TOLERANCE_HU
    assert _max_diff(got.hu, hu[None]) > 1.0  # the network did change the image
    assert got.attention.shape == (1, 256, 256) and _max_diff(got.attention, want.attention) <= 1e-3
    assert 0.0 <= got.attention.min() and got.attention.max() <= 1.0


def test_file_is_self_contained_with_dynamic_axes(attentive):
    import onnx

    _, report = attentive
    assert sorted(p.name for p in report.path.parent.iterdir()) == ["ga_psnr.onnx"]  # no temp, no external data
    proto = onnx.load(str(report.path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert proto.opset_import[0].version == 17

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert [(i.name, dims(i)) for i in proto.graph.input] == [("hu", ["batch", 1, "height", "width"])]
    assert [o.name for o in proto.graph.output] == ["denoised", "attention"]
    assert all(dims(o) == ["batch", 1, "height", "width"] for o in proto.graph.output)
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in proto.graph.output)


@pytest.mark.parametrize("which", ["attentive", "plain"])
def test_other_size_through_the_same_file(which, request):
    run, report = request.getfixturevalue(which)
    hu = default_check_slice(128, seed=3)
    slices = np.stack([hu[:90, :125], hu[30:120, :125], hu[-90:, -125:]])  # 3 slices of 90x125, batches of 2 + 1
    denoiser = OnnxDenoiser(report.path, batch_size=2)
    got = denoiser(slices, keep_attention=True)
    want = _reference(run, slices, keep_attention=True)
    assert got.hu.shape == (3, 90, 125)
    assert _max_diff(got.hu, want.hu) <= TOLERANCE_HU
    assert (got.attention is None) == (which == "plain") == (not denoiser.has_attention)
    assert report.second_max_abs_diff_hu <= TOLERANCE_HU and report.second_shape == (2, 201, 234)


def test_plain_model_has_one_output_and_its_name(plain):
    run, report = plain
    assert report.output_names == ("denoised",) and report.max_abs_diff_attention is None
    denoiser = OnnxDenoiser(report.path)
    assert denoiser.name == "g_psnr/psnr"
    assert OnnxDenoiser(report.path, name="mine").name == "mine"
    hu = default_check_slice(96, seed=5)
    assert _max_diff(denoiser(hu).hu, _reference(run, hu).hu) <= TOLERANCE_HU


def test_out_of_range_pixels_pass_through_unchanged(attentive):
    run, report = attentive
    hu = default_check_slice(64, seed=2)
    hu[10, 10], hu[20, 30], hu[40, 5] = -3000.0, 4000.0, -1025.0
    got = OnnxDenoiser(report.path)(hu).hu[0]
    assert got[10, 10] == -3000.0 and got[20, 30] == 4000.0 and got[40, 5] == -1025.0
    assert _max_diff(got, _reference(run, hu).hu[0]) <= TOLERANCE_HU
    inside = np.ones_like(hu, dtype=bool)
    inside[10, 10] = inside[20, 30] = inside[40, 5] = False
    assert np.abs(got - hu)[inside].max() > 1.0  # only those pixels pass through


def test_cli_writes_verifies_and_refuses_an_existing_output(attentive, tmp_path):
    run, _ = attentive
    out = tmp_path / "model.onnx"
    result = runner.invoke(app, ["export", "--model", str(run), str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output and "HU" in result.output and "RMS" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    before = out.read_bytes()

    again = runner.invoke(app, ["export", "--model", str(run), str(out)])
    assert again.exit_code == 2
    assert len(_lines(again.output)) == 1 and _lines(again.output)[0].startswith("error:")
    assert "--overwrite" in again.output and "Traceback" not in again.output
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]

    # --overwrite with a check slice from a file (first slice of a non-square .npy)
    check = tmp_path / "check" / "scan.npy"
    check.parent.mkdir()
    np.save(check, np.stack([default_check_slice(96, seed=7)[:70, :90]] * 2))
    replaced = runner.invoke(app, ["export", "-m", str(run), str(out), "--overwrite", "--check", str(check),
                                   "--opset", "18"])
    assert replaced.exit_code == 0, replaced.output
    assert "70x90" in replaced.output
    assert out.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check", "model.onnx"]


def test_cli_model_folder_that_is_not_a_run(tmp_path):
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    result = runner.invoke(app, ["export", "--model", str(folder), str(tmp_path / "m.onnx")])
    if result.exit_code == 2 and "optional package" in result.output:
        pytest.skip("onnx/onnxruntime not installed")
    assert result.exit_code == 2
    lines = _lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error:") and "neither a vagan checkpoint folder" in lines[0]
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(("args", "message"), [(["m.txt"], ".onnx file"), (["m.onnx", "--opset", "9"], "opset 9")])
def test_cli_bad_output_or_opset(args, message, tmp_path):
    result = runner.invoke(app, ["export", "--model", str(tmp_path / "run"), *[str(tmp_path / args[0]), *args[1:]]])
    assert result.exit_code == 2
    lines = _lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert list(tmp_path.iterdir()) == []


def _untrained(preset: str = "g_psnr") -> TrainedModel:
    config = tiny_config(preset)
    return TrainedModel(generator=build_generator(config.model).eval(), config=config, checkpoint=Path("none"),
                        stage="none")


def test_missing_onnxruntime_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    with pytest.raises(VaganError, match=r'pip install "vagan\[onnx\]"') as err:
        OnnxDenoiser(tmp_path / "model.onnx")
    assert "\n" not in str(err.value) and "onnxruntime" in str(err.value)
    with pytest.raises(VaganError, match=r'pip install "vagan\[onnx\]"'):
        export_onnx(_untrained(), tmp_path / "model.onnx")
    result = runner.invoke(app, ["export", "--model", str(tmp_path / "run"), str(tmp_path / "model.onnx")])
    assert result.exit_code == 2
    lines = _lines(result.output)
    assert len(lines) == 1 and lines[0].startswith("error:") and 'pip install "vagan[onnx]"' in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_api_refusals(tmp_path):
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        export_onnx(_untrained(), existing)
    with pytest.raises(ConfigError, match=r"\.onnx"):
        export_onnx(_untrained(), tmp_path / "model.pt")
    assert existing.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_failed_verification_keeps_the_existing_file(onnx_packages, monkeypatch, tmp_path):
    class Shifted(NetworkDenoiser):  # a reference 5 HU off: the verification must refuse the file
        def __call__(self, hu, progress=None, keep_attention=False):
            result = super().__call__(hu, progress, keep_attention)
            result.hu += 5.0
            return result

    monkeypatch.setattr(export_module, "NetworkDenoiser", Shifted)
    existing = tmp_path / "model.onnx"
    existing.write_bytes(b"precious")
    with pytest.raises(VaganError, match=r"differs from PyTorch fp32 by up to 5(\.0+)? HU"):
        export_onnx(_untrained("wgan_vgg"), existing, overwrite=True)
    assert existing.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_cli_exports_a_shipped_model_by_its_name(onnx_packages, tmp_path):
    """A shipped name works wherever a run folder does (issue 23 item 11), `vagan export` included."""
    from vagan.inference.pretrained import shipped_models

    name = sorted(shipped_models())[0]
    check = tmp_path / "check.npy"
    np.save(check, default_check_slice(96, seed=3)[None])
    out = tmp_path / "shipped.onnx"
    result = runner.invoke(app, ["export", "--model", name, str(out), "--check", str(check)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "96x96" in result.output
