"""Engine choice: PyTorch or onnxruntime, the faster measured on this CPU, with a checked cache.

The probe's timings are replaced by known values where the test is about the decision, so the
tests hold on every CPU; the real probe runs once (the cached-verdict test).
"""

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from support import tiny_config, tiny_data
from typer.testing import CliRunner

from vagan.cli import app
from vagan.errors import ConfigError
from vagan.inference import engine as engine_module
from vagan.inference.denoise import NetworkDenoiser
from vagan.inference.engine import cache_dir, cached_onnx, model_key, network_denoiser
from vagan.inference.model_loading import load_trained_model
from vagan.precision import Precision
from vagan.training.trainer import train

runner = CliRunner()
TOLERANCE_HU = 1.0


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("run") / "g_psnr"
    train(tiny_config("g_psnr", "stages.*.max_steps=2"), folder, data=tiny_data())
    return folder


@pytest.fixture(autouse=True)
def _auto_may_choose(monkeypatch):
    """tests/conftest.py pins auto to PyTorch for the rest of the suite; here auto chooses (the module's
    fixtures skip it where onnx or onnxruntime is missing)."""
    monkeypatch.setattr(engine_module, "onnxruntime_available", lambda: True)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VAGAN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _probe_times(monkeypatch, torch_s: float, onnx_s: float) -> list[str]:
    """Replace the probe: PyTorch (a NetworkDenoiser) takes ``torch_s``, onnxruntime ``onnx_s``."""
    calls: list[str] = []

    def fake(denoiser, hu):
        calls.append("torch" if isinstance(denoiser, NetworkDenoiser) else "onnxruntime")
        return torch_s if calls[-1] == "torch" else onnx_s

    monkeypatch.setattr(engine_module, "_probe_seconds", fake)
    return calls


def _slices() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(40.0, 30.0, (3, 40, 44))).astype(np.float32)


@pytest.mark.parametrize(("torch_s", "onnx_s", "chosen"), [(1.0, 0.5, "onnxruntime"), (1.0, 0.99, "torch"),
                                                            (0.5, 1.0, "torch")])
def test_auto_takes_the_engine_the_probe_measured_faster(run, cache, monkeypatch, torch_s, onnx_s, chosen):
    _probe_times(monkeypatch, torch_s, onnx_s)
    model = load_trained_model(run)
    denoiser = network_denoiser(model, engine="auto", precision=Precision("fp32", "cpu", requested="auto"))
    assert denoiser.engine == chosen
    hu = _slices()
    reference = NetworkDenoiser(load_trained_model(run))(hu).hu
    assert np.abs(denoiser(hu).hu - reference).max() <= TOLERANCE_HU
    if chosen == "onnxruntime":
        assert "onnxruntime" in denoiser.precision.describe() and denoiser.model is model


def test_second_run_reuses_the_graph_and_the_verdict(run, cache, monkeypatch):
    model = load_trained_model(run)
    first = network_denoiser(model)  # the real probe, on this CPU
    graph = cache / "onnx" / f"{model_key(model)}.onnx"
    assert graph.is_file() and graph.with_suffix(".json").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr("vagan.inference.export.export_onnx", fail)
    monkeypatch.setattr(engine_module, "_probe_seconds", fail)
    again = network_denoiser(load_trained_model(run))
    assert again.engine == first.engine


def test_a_damaged_cached_graph_is_exported_again(run, cache, monkeypatch):
    model = load_trained_model(run)
    graph = cached_onnx(model)
    good = graph.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF  # one flipped byte in the weights
    graph.write_bytes(bytes(damaged))
    _probe_times(monkeypatch, 1.0, 0.5)
    denoiser = network_denoiser(model)
    assert denoiser.engine == "onnxruntime" and graph.read_bytes() == good


def test_a_changed_model_never_meets_the_old_graph(run, cache, tmp_path):
    model = load_trained_model(run)
    before = model_key(model)
    copy = tmp_path / "copy"
    copy.mkdir()
    for item in model.checkpoint.iterdir():
        data = item.read_bytes()
        if item.suffix == ".json":
            data = data.replace(b'"stage"', b'"stage" ', 1)  # same meaning, other bytes: another key
        (copy / item.name).write_bytes(data)
    assert model_key(load_trained_model(copy)) != before


def test_without_onnxruntime_auto_is_pytorch_and_nothing_is_cached(run, cache, monkeypatch):
    calls = _probe_times(monkeypatch, 1.0, 0.1)
    monkeypatch.setattr(engine_module, "onnxruntime_available", lambda: False)
    assert network_denoiser(load_trained_model(run)).engine == "torch"
    assert calls == [] and not cache.exists()


@pytest.mark.parametrize("request_", [{"compile": True}, {"engine": "torch"},
                                      {"precision": Precision("bf16", "cpu", requested="bf16")},
                                      {"precision": Precision("fp16", "cpu", requested="fp16")}])
def test_compile_an_explicit_reduced_precision_or_torch_keep_pytorch_without_a_probe(run, cache, monkeypatch,
                                                                                   request_):
    calls = _probe_times(monkeypatch, 1.0, 0.1)
    assert network_denoiser(load_trained_model(run), **request_).engine == "torch"
    assert calls == [] and not cache.exists()


def test_auto_bf16_still_lets_onnxruntime_run_when_asked(run, cache, monkeypatch):
    """On a bf16 CPU `auto` precision resolves to bf16; --engine onnxruntime then runs the fp32 graph."""
    auto_bf16 = Precision("bf16", "cpu", "native bf16", requested="auto")
    assert network_denoiser(load_trained_model(run), engine="onnxruntime", precision=auto_bf16).engine == "onnxruntime"
    with pytest.raises(ConfigError, match="--precision bf16"):
        network_denoiser(load_trained_model(run), engine="onnxruntime",
                         precision=Precision("bf16", "cpu", requested="bf16"))


def test_explicit_onnxruntime_without_the_package_is_one_clear_error(run, cache, monkeypatch):
    from vagan.errors import MissingResourceError

    monkeypatch.setattr(engine_module, "onnxruntime_available", lambda: False)
    with pytest.raises(MissingResourceError, match=r'vagan\[onnx\]'):
        network_denoiser(load_trained_model(run), engine="onnxruntime")
    assert not cache.exists()


def test_an_unwritable_cache_costs_the_speedup_not_the_run(run, tmp_path, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    monkeypatch.setenv("VAGAN_CACHE_DIR", str(locked / "cache"))
    try:
        assert network_denoiser(load_trained_model(run)).engine == "torch"
    finally:
        locked.chmod(stat.S_IRWXU)


def test_a_cache_path_that_is_a_file_costs_the_speedup_not_the_run(run, tmp_path, monkeypatch):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    monkeypatch.setenv("VAGAN_CACHE_DIR", str(blocker))
    assert network_denoiser(load_trained_model(run)).engine == "torch"
    assert blocker.read_text() == "not a folder"


def test_explicit_onnxruntime_refuses_what_it_cannot_run(run, cache):
    model = load_trained_model(run)
    with pytest.raises(ConfigError, match="--compile"):
        network_denoiser(model, engine="onnxruntime", compile=True)
    with pytest.raises(ConfigError, match="expected one of"):
        network_denoiser(model, engine="tensorrt")
    assert network_denoiser(model, engine="onnxruntime").engine == "onnxruntime"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VAGAN_CACHE_DIR", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("VAGAN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "vagan"


def test_cli_denoise_with_each_engine_and_a_bad_one(run, cache, monkeypatch, tmp_path):
    _probe_times(monkeypatch, 1.0, 0.5)
    source = tmp_path / "in.npy"
    np.save(source, _slices())
    outputs = {}
    for engine in ("auto", "torch", "onnxruntime"):
        out = tmp_path / f"{engine}.npy"
        result = runner.invoke(app, ["denoise", str(source), str(out), "--model", str(run), "--engine", engine])
        assert result.exit_code == 0, result.output
        outputs[engine] = np.load(out)
    assert np.abs(outputs["auto"] - outputs["torch"]).max() <= TOLERANCE_HU
    assert np.array_equal(outputs["auto"], outputs["onnxruntime"])
    bad = runner.invoke(app, ["denoise", str(source), str(tmp_path / "bad.npy"), "--model", str(run),
                              "--engine", "tensorrt"])
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert bad.exit_code != 0 and lines[-1].startswith("error:") and "tensorrt" in lines[-1]
    assert not (tmp_path / "bad.npy").exists()
    bm3d = runner.invoke(app, ["denoise", str(source), str(tmp_path / "bm3d.npy"), "--model", "bm3d",
                               "--engine", "tensorrt"])
    assert bm3d.exit_code != 0 and "tensorrt" in bm3d.output and not (tmp_path / "bm3d.npy").exists()


def test_cli_evaluate_refuses_a_bad_engine_before_any_work(tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", "ldct", "--out", str(out), "--data", str(tmp_path), "--engine", "x"])
    assert result.exit_code != 0 and "engine" in result.output and not out.exists()
