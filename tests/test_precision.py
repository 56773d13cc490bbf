"""The precision policy: resolution per device, clear errors, float32 images, and the bf16 accuracy guard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import tiny_config, tiny_data
from typer.testing import CliRunner

from vagan import precision as policy
from vagan.cli import app
from vagan.errors import ConfigError
from vagan.inference.denoise import NetworkDenoiser
from vagan.inference.model_loading import TrainedModel, load_trained_model
from vagan.models import build_generator
from vagan.physics.phantom import make_phantom_slice
from vagan.precision import Precision, resolve_precision
from vagan.training.trainer import train

CPU = torch.device("cpu")


@pytest.fixture
def native_bf16(monkeypatch):
    def set_native(native: bool, speedup: float = 3.0) -> None:
        monkeypatch.setattr(policy, "cpu_bf16_native", lambda: native)
        monkeypatch.setattr(policy, "cpu_bf16_speedup", lambda: speedup)
    return set_native


def test_fp32_is_always_fp32():
    p = resolve_precision("fp32", CPU)
    assert p.name == "fp32" and p.dtype == torch.float32 and not p.reduced and not p.needs_grad_scaler


@pytest.mark.parametrize(("native", "speedup", "expected"), [
    (True, 3.0, "bf16"),     # AMX / AVX512-BF16 and measured faster
    (True, 1.05, "fp32"),    # native but not measurably faster: auto stays fp32
    (False, 9.9, "fp32"),    # emulated bf16 (AVX2 only): never picked
])
def test_auto_on_cpu_follows_hardware_and_measurement(native_bf16, native, speedup, expected):
    native_bf16(native, speedup)
    chosen = resolve_precision("auto", CPU)
    assert chosen.name == expected and chosen.reason


def test_explicit_reduced_precision_without_hardware_is_a_config_error(native_bf16, monkeypatch):
    native_bf16(False)
    monkeypatch.setattr(policy, "cpu_fp16_native", lambda: False)
    with pytest.raises(ConfigError, match="no native bfloat16"):
        resolve_precision("bf16", CPU)
    with pytest.raises(ConfigError, match="no native float16"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ConfigError, match="not one of"):
        resolve_precision("half", CPU)


def test_cuda_choices_without_touching_a_gpu(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(policy, "_cuda_bf16", lambda device: False)
    assert resolve_precision("auto", cuda).name == "fp32"
    with pytest.raises(ConfigError, match="Ampere"):
        resolve_precision("bf16", cuda)
    fp16 = resolve_precision("fp16", cuda)
    assert fp16.name == "fp16" and fp16.needs_grad_scaler
    monkeypatch.setattr(policy, "_cuda_bf16", lambda device: True)
    assert resolve_precision("auto", cuda).name == "bf16"


def test_measured_speedup_is_a_positive_ratio():
    policy.cpu_bf16_speedup.cache_clear()
    assert policy.cpu_bf16_speedup() > 0


def test_cli_bf16_without_hardware_is_one_error_line(native_bf16, tmp_path):
    native_bf16(False)
    np.save(tmp_path / "in.npy", np.zeros((1, 32, 32), np.float32))
    run = tmp_path / "run"
    train(tiny_config("g_psnr", "stages.*.max_steps=1"), run, data=tiny_data())
    result = CliRunner().invoke(app, ["denoise", "--model", str(run), "--precision", "bf16", str(tmp_path / "in.npy"),
                                      str(tmp_path / "out.npy")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: --precision bf16")
    assert not (tmp_path / "out.npy").exists()
    old_flag = CliRunner().invoke(app, ["denoise", "--model", str(run), "--amp", str(tmp_path / "in.npy"),
                                        str(tmp_path / "out.npy")])
    assert old_flag.exit_code == 0 and "warning: --amp is replaced by --precision" in old_flag.output
    assert (tmp_path / "out.npy").exists()
    with pytest.raises(ConfigError, match="not one of"):  # and a bad train.precision fails before training
        train(tiny_config("g_psnr", "train.precision=fp8"), tmp_path / "run2", data=tiny_data())
    assert not (tmp_path / "run2").exists()


@pytest.mark.parametrize("kind", ["vagan", "red", "red_cnn", "wgan_vgg"])
def test_images_stay_float32_under_bf16_autocast(kind):
    net = build_generator(kind, features=8, attention_features=4).eval()
    x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.image.dtype == torch.float32
    assert all(m.dtype == torch.float32 for m in (*out.multiscale, *out.attention))


@pytest.mark.parametrize(("kind", "layers"), [
    ("vagan", ("attention.encoder.0", "generator.enc1", "generator.head_quarter", "generator.head_half",
               "generator.head_full", "attention.head")),
    ("red", ("generator.enc1", "generator.head_full")), ("red_cnn", ("encoder.0", "decoder.4")),
    ("wgan_vgg", ("body.0", "body.14")),
])
def test_image_layers_compute_in_float32_under_bf16(kind, layers):
    """The layers that read the image or produce an image, a residual or a map run in float32."""
    net = build_generator(kind, features=8, attention_features=4).eval()
    seen: dict[str, tuple[torch.dtype, torch.dtype]] = {}
    modules = dict(net.named_modules())
    for name in layers:
        modules[name].register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, (args[0].dtype, out.dtype)))
    inner = next(m for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d) and n not in layers)
    inner.register_forward_hook(lambda m, args, out: seen.__setitem__("inner", (args[0].dtype, out.dtype)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        net(torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert seen["inner"][1] == torch.bfloat16  # autocast really was on
    for name in layers:
        assert seen[name] == (torch.float32, torch.float32), name


@pytest.mark.parametrize("kind", ["red", "vagan", "red_cnn"])
def test_bf16_never_quantises_the_image(kind):
    """With the residual head zeroed the output is the input exactly, also under bf16: the global
    residual add is float32 (a bf16 add would round 0.2345 to 0.2344 and so on)."""
    net = build_generator(kind, features=8, attention_features=4).eval()
    last = net.decoder[-1] if kind == "red_cnn" else net.generator.head_full
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(2, 1, 40, 40, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.2
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        image = net(x).image
    assert torch.equal(image, x)


def test_network_denoiser_runs_channels_last():
    cfg = tiny_config("ga_psnr")
    denoiser = NetworkDenoiser(TrainedModel(build_generator("vagan", features=8, attention_features=4), cfg,
                                            Path("."), "psnr"))
    convs = [m for m in denoiser.module.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


def test_compiled_series_pads_its_last_batch(monkeypatch):
    """--compile: every call of the compiled module sees the full batch (no recompilation), and the
    padding never reaches the output."""
    model = TrainedModel(build_generator("red", features=8), tiny_config("g_psnr"), Path("."), "psnr")
    hu = np.random.default_rng(0).normal(0, 50, (5, 32, 32)).astype(np.float32)
    eager = NetworkDenoiser(model, batch_size=2)(hu).hu
    shapes = []

    def fake_compile(module, **kwargs):
        def run(x):
            shapes.append(tuple(x.shape))
            return module(x)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    out = NetworkDenoiser(model, batch_size=2, compile=True)(hu).hu
    assert shapes == [(2, 1, 32, 32)] * 3
    np.testing.assert_allclose(out, eager, atol=1e-3)  # HU: float32 rounding of another batch size


def test_compile_does_not_hide_input_errors(monkeypatch):
    model = TrainedModel(build_generator("red", features=8), tiny_config("g_psnr"), Path("."), "psnr")

    def fake_compile(module, **kwargs):
        def run(x):
            raise ValueError("slice too small")
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    denoiser = NetworkDenoiser(model, compile=True)
    with pytest.raises(ValueError, match="too small"):
        denoiser(np.zeros((1, 8, 8), np.float32))
    assert denoiser.compile


def test_compile_failure_falls_back_to_eager(monkeypatch, caplog):
    model = TrainedModel(build_generator("red", features=8), tiny_config("g_psnr"), Path("."), "psnr")
    hu = np.random.default_rng(0).normal(0, 50, (3, 32, 32)).astype(np.float32)
    eager = NetworkDenoiser(model)(hu).hu

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    denoiser = NetworkDenoiser(model, compile=True)
    with caplog.at_level("WARNING"):
        out = denoiser(hu).hu
    assert "torch.compile is unavailable" in caplog.text and not denoiser.compile
    np.testing.assert_array_equal(out, eager)


@pytest.fixture(scope="module", params=["ga_psnr", "g_psnr"])
def trained_small(request, tmp_path_factory):
    """A preset at small widths trained briefly on the tiny pairs: weights that denoise, not random ones."""
    run = tmp_path_factory.mktemp("acc") / request.param
    cfg = tiny_config(request.param, "model.generator_features=16", "stages.*.max_steps=40", "stages.0.lr=1e-3")
    train(cfg, run, data=tiny_data(patches_per_slice=40))
    return load_trained_model(run)


def test_accuracy_guard_bf16_against_fp32(trained_small):
    """bf16 autocast vs fp32 on a noisy phantom slice: <= 1 HU RMS and <= 10 HU max (issue 9)."""
    rng = np.random.default_rng(3)
    hu = make_phantom_slice(128, 2.5, rng)
    hu = (hu + rng.normal(0, 40, hu.shape)).astype(np.float32)[None]
    fp32 = NetworkDenoiser(trained_small, precision=Precision("fp32"))(hu).hu
    bf16 = NetworkDenoiser(trained_small, precision=Precision("bf16"))(hu).hu
    diff = bf16 - fp32
    assert np.abs(fp32 - hu).mean() > 1.0  # the model changes the image: the guard is not vacuous
    assert 0 < np.sqrt(np.mean(diff**2)) <= 1.0
    assert np.abs(diff).max() <= 10.0


def test_auto_denoises_with_red_cnn_in_fp32_unless_bf16_is_asked_for(native_bf16):
    """RED-CNN's bf16 output is more than 1 HU RMS from fp32: `auto` keeps it in fp32, `bf16` is obeyed."""
    native_bf16(True, 3.0)
    cfg = tiny_config("red_cnn")
    red_cnn = TrainedModel(build_generator("red_cnn", features=8), cfg, Path("."), "psnr")
    vagan = TrainedModel(build_generator("vagan", features=8, attention_features=4), tiny_config("ga_psnr"),
                         Path("."), "psnr")
    auto = resolve_precision("auto", CPU)
    assert auto.name == "bf16"
    assert NetworkDenoiser(red_cnn, precision=auto).precision.name == "fp32"
    assert NetworkDenoiser(vagan, precision=auto).precision.name == "bf16"
    assert NetworkDenoiser(red_cnn, precision=resolve_precision("bf16", CPU)).precision.name == "bf16"


def test_configs_written_with_amp_are_upgraded():
    from vagan.evaluation.eval_config import EvaluationConfig
    from vagan.training.config import config_from_dict

    base = tiny_config("g_psnr").to_dict()
    for amp, expected in ((False, "fp32"), (True, "auto")):
        old = {**base, "train": {**{k: v for k, v in base["train"].items() if k != "precision"}, "amp": amp}}
        assert config_from_dict(old).train.precision == expected
        assert EvaluationConfig.from_dict({"methods": ["ldct"], "amp": amp}).precision == expected


def test_malloc_setting_is_applied_once_on_glibc():
    import platform

    from vagan.runtime import reuse_freed_memory

    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert reuse_freed_memory() is expected
    assert reuse_freed_memory() is expected  # idempotent
