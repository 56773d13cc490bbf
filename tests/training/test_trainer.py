import json
import subprocess
import sys

import pytest
import torch
from support import tiny_config, tiny_data, write_tiny_dataset

from vagan import precision as precision_policy
from vagan.errors import ConfigError, InputDataError, TrainingDivergedError, VaganError
from vagan.training import steps
from vagan.training.checkpoint import load_checkpoint
from vagan.training.trainer import train


def _weights(path):
    return load_checkpoint(path).weights


def _assert_same(a, b, atol=0.0):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol, rtol=0), key


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, monkeypatch, precision):
    # reduced-precision autocast runs (slowly) on any CPU; fp16 also resumes its GradScaler's state
    monkeypatch.setattr(precision_policy, "cpu_bf16_native", lambda: True)
    monkeypatch.setattr(precision_policy, "cpu_fp16_native", lambda: True)
    # a loss scale that changes every step, so a resume that lost the scaler's state would differ
    monkeypatch.setattr(precision_policy.Precision, "grad_scaler", lambda self: torch.amp.GradScaler(
        self.device_type, growth_interval=1, growth_factor=64.0, enabled=self.needs_grad_scaler))
    data = tiny_data()  # 32 patches, 8 batches of 4 per epoch: step 2 is mid-epoch
    chosen = f"train.precision={precision}"
    straight = tiny_config("vagan", "stages.*.max_steps=4", chosen)
    train(straight, tmp_path / "a", data=data)
    # interrupted: the GAN stage stops after 2 steps ...
    train(tiny_config("vagan", "stages.0.max_steps=4", "stages.1.max_steps=2", chosen), tmp_path / "b", data=data)
    # ... and is resumed to 4
    train(straight, tmp_path / "b", data=data, resume=True)
    for stage in ("psnr", "gan"):
        _assert_same(_weights(tmp_path / "a/checkpoints" / stage / "final"),
                     _weights(tmp_path / "b/checkpoints" / stage / "final"), atol=1e-6)
    assert load_checkpoint(tmp_path / "b/checkpoints/gan/final").meta["progress"]["step"] == 4
    # and reduced precision really trained differently from fp32 (autocast was on)
    if precision != "fp32":
        train(tiny_config("vagan", "stages.*.max_steps=4", "train.precision=fp32"), tmp_path / "c", data=data)
        a, c = _weights(tmp_path / "a/checkpoints/gan/final"), _weights(tmp_path / "c/checkpoints/gan/final")
        assert any(not torch.equal(a[k], c[k]) for k in a)


def test_resume_keeps_the_precision_of_the_checkpoint(tmp_path, monkeypatch):
    """Started in bf16, resumed with `auto` where auto would now pick fp32: the stage stays in bf16."""
    monkeypatch.setattr(precision_policy, "cpu_bf16_native", lambda: True)
    data = tiny_data()
    straight = tiny_config("g_psnr", "stages.*.max_steps=6", "train.precision=bf16")
    train(straight, tmp_path / "a", data=data)
    train(tiny_config("g_psnr", "stages.*.max_steps=3", "train.precision=bf16"), tmp_path / "b", data=data)
    monkeypatch.setattr(precision_policy, "cpu_bf16_speedup", lambda: 1.0)  # auto -> fp32 on this "machine"
    train(tiny_config("g_psnr", "stages.*.max_steps=6", "train.precision=auto"), tmp_path / "b", data=data,
          resume=True)
    final = load_checkpoint(tmp_path / "b/checkpoints/psnr/final")
    assert final.meta["precision"] == "bf16"
    _assert_same(_weights(tmp_path / "a/checkpoints/psnr/final"), final.weights)


def test_dataloader_workers_give_the_same_run(tmp_path):
    """The default prefetching worker draws exactly the batches of the in-process loader."""
    data = tiny_data()
    train(tiny_config("g_psnr", "stages.*.max_steps=10", "train.num_workers=0"), tmp_path / "a", data=data)
    train(tiny_config("g_psnr", "stages.*.max_steps=10", "train.num_workers=1"), tmp_path / "b", data=data)
    _assert_same(_weights(tmp_path / "a/checkpoints/psnr/final"), _weights(tmp_path / "b/checkpoints/psnr/final"))


def test_stage_two_starts_from_stage_one(tmp_path):
    cfg = tiny_config("g_gan", "stages.*.max_steps=2")
    train(cfg, tmp_path / "run", data=tiny_data(), stages=["psnr"])
    stage1 = _weights(tmp_path / "run/checkpoints/psnr/final")
    with pytest.raises(VaganError, match="not empty"):
        train(cfg, tmp_path / "run", data=tiny_data(), stages=["gan"])
    from vagan.training import trainer

    runner_init = {}
    original = trainer._Stage.initialise_from

    def spy(self, ckpt):
        original(self, ckpt)
        runner_init.update({k: v.clone() for k, v in self.modules["generator"].state_dict().items()})

    trainer._Stage.initialise_from = spy
    try:
        train(cfg, tmp_path / "run", data=tiny_data(), stages=["gan"], resume=True)
    finally:
        trainer._Stage.initialise_from = original
    assert runner_init, "stage gan was not initialised from stage psnr"
    for key, value in runner_init.items():
        assert torch.equal(value, stage1["generator." + key])


def test_time_budget_ends_a_stage_early_and_saves_it(tmp_path, monkeypatch):
    """stages.*.max_minutes: with a clock that moves 10 s per reading, a 1-minute budget ends the stage
    after a few steps, validated and saved as final; the next stage still runs."""
    from types import SimpleNamespace

    from vagan.training import trainer

    clock = {"t": 0.0}

    def tick() -> float:
        clock["t"] += 10.0
        return clock["t"]

    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=tick))
    cfg = tiny_config("vagan", "stages.*.max_steps=40", "stages.0.max_minutes=1", "train.num_workers=0")
    train(cfg, tmp_path / "run", data=tiny_data())
    psnr = load_checkpoint(tmp_path / "run/checkpoints/psnr/final")
    assert 1 <= psnr.meta["progress"]["step"] <= 6  # 60 s of a clock that reads 20 s per step
    assert psnr.meta["complete"] and "val_psnr" in psnr.meta["metrics"]
    assert load_checkpoint(tmp_path / "run/checkpoints/gan/final").meta["progress"]["step"] == 40


def test_wall_time_is_recorded_and_carried_over_a_resume(tmp_path, monkeypatch):
    """progress.seconds: the wall time a stage ran, kept in its checkpoints and added up over resumes
    (the study's cost table reads it). A clock of 10 s per reading, then one that stands still: the
    resumed stage reports exactly the seconds of the checkpoint it resumed from."""
    from types import SimpleNamespace

    from vagan.training import trainer

    clock = {"t": 0.0, "step": 10.0}

    def tick() -> float:
        clock["t"] += clock["step"]
        return clock["t"]

    monkeypatch.setattr(trainer, "time", SimpleNamespace(perf_counter=tick))
    data = tiny_data()
    train(tiny_config("g_psnr", "stages.0.max_steps=2", "train.num_workers=0"), tmp_path / "run", data=data)
    first = load_checkpoint(tmp_path / "run/checkpoints/psnr/last").meta["progress"]["seconds"]  # resumed from
    assert first >= 20.0  # at least a step's two readings
    clock["step"] = 0.0
    train(tiny_config("g_psnr", "stages.0.max_steps=4", "train.num_workers=0"), tmp_path / "run", data=data,
          resume=True)
    resumed = load_checkpoint(tmp_path / "run/checkpoints/psnr/final").meta["progress"]
    assert resumed["step"] == 4 and resumed["seconds"] == pytest.approx(first)
    clock["step"] = 10.0  # and a resumed process's time is added to it
    train(tiny_config("g_psnr", "stages.0.max_steps=6", "train.num_workers=0"), tmp_path / "run", data=data,
          resume=True)
    assert load_checkpoint(tmp_path / "run/checkpoints/psnr/final").meta["progress"]["seconds"] >= first + 20.0
    # a checkpoint from before the time was recorded: the total is unknown, not the resumed process's alone
    meta_path = tmp_path / "run/checkpoints/psnr/last/meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["progress"]["seconds"]
    meta_path.write_text(json.dumps(meta))
    train(tiny_config("g_psnr", "stages.0.max_steps=8", "train.num_workers=0"), tmp_path / "run", data=data,
          resume=True)
    assert load_checkpoint(tmp_path / "run/checkpoints/psnr/final").meta["progress"]["seconds"] is None


def test_cosine_schedule_lowers_both_rates_by_step_and_resumes_by_step(tmp_path, monkeypatch):
    """stages.*.lr_schedule=cosine: the generator's and the discriminator's rates follow the half cosine
    from lr to 1% of it, step by step; being a function of the step, a resumed stage picks the schedule
    up where its step count stands."""
    from vagan.training import trainer

    seen: list[tuple[float, float]] = []
    real_gan_step = steps.gan_step

    def spy(nets, opt_g, opt_d, *args, **kwargs):
        seen.append((opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]))
        return real_gan_step(nets, opt_g, opt_d, *args, **kwargs)

    monkeypatch.setattr(trainer, "gan_step", spy)
    data = tiny_data()
    cosine = ("stages.*.lr_schedule=cosine", "stages.1.lr=1e-3", "stages.1.d_lr=4e-3")
    straight = tiny_config("vagan", "stages.*.max_steps=4", *cosine)
    train(straight, tmp_path / "a", data=data)
    expected = [trainer.lr_scale("cosine", k, 4) for k in range(4)]
    assert [g for g, _ in seen] == pytest.approx([1e-3 * f for f in expected])
    assert [d for _, d in seen] == pytest.approx([4e-3 * f for f in expected])
    assert expected[0] == 1.0 and expected[-1] < 0.2 and trainer.lr_scale("cosine", 4, 4) == pytest.approx(0.01)
    seen.clear()
    train(tiny_config("vagan", "stages.0.max_steps=4", "stages.1.max_steps=2", *cosine), tmp_path / "b", data=data)
    # the interrupted stage planned 2 steps; resumed with max_steps=4, it follows the 4-step schedule
    train(straight, tmp_path / "b", data=data, resume=True)
    assert [g for g, _ in seen[-2:]] == pytest.approx([1e-3 * f for f in expected[2:]])
    assert load_checkpoint(tmp_path / "b/checkpoints/gan/final").meta["progress"]["step"] == 4


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = steps.multiscale_loss

    def flaky(*args, **kwargs):
        calls["n"] += 1
        value = real(*args, **kwargs)
        return value * float("nan") if calls["n"] == 5 else value

    monkeypatch.setattr(steps, "multiscale_loss", flaky)
    cfg = tiny_config("g_psnr", "stages.*.max_steps=10", "train.checkpoint_every=2")
    with pytest.raises(TrainingDivergedError, match=r"NaN|nan") as err:
        train(cfg, tmp_path / "run", data=tiny_data())
    assert "last good checkpoint" in str(err.value)
    last = load_checkpoint(tmp_path / "run/checkpoints/psnr/last")
    assert last.meta["progress"]["step"] == 4
    assert all(torch.isfinite(v).all() for v in last.weights.values())
    assert not (tmp_path / "run/checkpoints/psnr/final").exists()


def test_two_process_ddp_equals_one_process(tmp_path):
    data_root = write_tiny_dataset(tmp_path / "data")
    common = ["--config", "g_psnr", "--data", str(data_root), "--set", "stages.*.max_steps=3",
              "--set", "data.patches_per_slice=4", "--set", "data.split={train: [T000, T001], val: [T002], test: []}"]
    from support import TINY

    for item in TINY:
        common += ["--set", item]
    single = subprocess.run([sys.executable, "-m", "vagan", "train", "--out", str(tmp_path / "one"), *common],
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "vagan", "train", "--out", str(tmp_path / "two"), *common],
                         capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    _assert_same(_weights(tmp_path / "one/checkpoints/psnr/final"), _weights(tmp_path / "two/checkpoints/psnr/final"),
                 atol=1e-5)


def test_missing_vgg_weights_fail_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    cfg = tiny_config("vagan", "train.perceptual=vgg19", "stages.*.max_steps=2")
    with pytest.raises(VaganError, match="--vgg-weights"):
        train(cfg, tmp_path / "run", data=tiny_data())
    assert not (tmp_path / "run").exists()  # stage 1 did not run first
    # a stage without L_Pcep does not need the file
    train(cfg, tmp_path / "run", data=tiny_data(), stages=["psnr"])
    assert (tmp_path / "run/checkpoints/psnr/final").is_dir()


def test_init_weights_starts_the_generator_from_another_run_and_refuses_another_architecture(tmp_path):
    """Fine-tuning: train.init_weights gives the first stage the generator of a finished run; its
    discriminator starts fresh; a generator of another width is one ConfigError before any work."""
    data = tiny_data()
    train(tiny_config("g_psnr", "stages.*.max_steps=2"), tmp_path / "base", data=data)
    base = _weights(tmp_path / "base/checkpoints/psnr/final")
    # one Adam step at a vanishing learning rate moves each weight by about 1e-12: the source's weights
    train(tiny_config("g_psnr", "stages.*.max_steps=1", "stages.*.lr=1e-12", f"train.init_weights={tmp_path / 'base'}"),
          tmp_path / "tuned", data=data)
    _assert_same(base, _weights(tmp_path / "tuned/checkpoints/psnr/final"), atol=1e-9)
    fresh = tiny_config("g_psnr", "stages.*.max_steps=1", "stages.*.lr=1e-12")
    train(fresh, tmp_path / "fresh", data=data)
    assert any(not torch.equal(base[k], v) for k, v in _weights(tmp_path / "fresh/checkpoints/psnr/final").items())
    wider = tiny_config("g_psnr", "model.generator_features=12", f"train.init_weights={tmp_path / 'base'}")
    with pytest.raises(ConfigError, match="model.generator_features 8"):
        train(wider, tmp_path / "wider", data=data)
    assert not (tmp_path / "wider").exists()
    with pytest.raises(ConfigError, match="model.generator_features 64"):  # a shipped model, by its name
        train(tiny_config("g_psnr", "train.init_weights=g_psnr-phantom512"), tmp_path / "shipped", data=data)
    with pytest.raises(InputDataError, match="neither a shipped model"):
        train(tiny_config("g_psnr", "train.init_weights=no-such-model"), tmp_path / "none", data=data)
