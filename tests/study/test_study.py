"""vagan study end to end on a tiny dataset: equal budgets, one evaluation, intervals, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import TINY, write_tiny_dataset
from typer.testing import CliRunner

from vagan.cli import app
from vagan.errors import ConfigError
from vagan.study.config import Budget, load_study_config, stage_patches
from vagan.study.runner import run_configs, run_study
from vagan.training.config import PRESETS, load_config

runner = CliRunner()


def _config_file(tmp_path: Path, root: Path, **changes) -> Path:
    data = {"title": "tiny study", "data_root": str(root), "split": {"train": ["T000"], "val": ["T001"], "test": ["T002"]},
            "presets": ["g_psnr", "ga_psnr"], "seeds": [0, 1], "budget": {"patches": 16, "min_generator_updates": 1},
            "train_overrides": [*TINY, "data.patches_per_slice=2", "data.val_slices=1"],
            "evaluation": {"fid_net": "none", "timing_slices": 0, "figure_slices": 1,
                           "patches": {"size": 32}},
            "statistics": {"resamples": 200}}
    data.update(changes)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    base = tmp_path_factory.mktemp("study")
    root = write_tiny_dataset(base / "data")
    config = load_study_config(_config_file(base, root))
    return base, root, config, run_study(config, base / "out", progress=False)


def test_every_preset_sees_the_same_budget() -> None:
    budget = Budget(patches=1000, gan_fraction=0.25)
    for preset, expected in (("g_psnr", [1000]), ("vagan", [750, 250]), ("wgan_vgg", [1000]), ("red_cnn", [1000])):
        assert stage_patches(load_config(preset).stages, budget) == expected


def test_study_trains_each_run_and_reports_intervals_and_orderings(study) -> None:
    base, _, config, result = study
    out = base / "out"
    runs = sorted(p.name for p in (out / "runs").iterdir())
    assert runs == ["g_psnr-seed0", "g_psnr-seed1", "ga_psnr-seed0", "ga_psnr-seed1"]
    trained = yaml.safe_load((out / "runs" / "g_psnr-seed1" / "config.yaml").read_text())
    assert trained["stages"][0]["max_steps"] == 4 and trained["train"]["seed"] == 1  # 16 patches / batch 4
    record = json.loads(result.study_json.read_text())
    table = record["table_ii"]
    assert set(table) == {"LDCT", "BM3D", "g_psnr", "ga_psnr"}
    for group in table.values():
        psnr = group["psnr_patch"]
        assert psnr["low"] <= psnr["estimate"] <= psnr["high"] and psnr["n"] == 1  # one test patient
    assert {o["claim"].split(" (")[0] for o in record["orderings"]} == {
        "GA_PSNR > G_PSNR in PSNR", "Every learned method beats LDCT in PSNR"}
    assert set(record["paired"]) == {"g_psnr", "BM3D"}
    md = result.report.markdown.read_text()
    assert "Table II with 95% intervals" in md and "Paired differences against BM3D" in md
    assert (out / "report" / "figures" / "validation_curves.png").is_file()


def test_a_second_call_resumes_without_training_again(study, caplog) -> None:
    base, _, config, _ = study
    before = {p: p.stat().st_mtime_ns for p in (base / "out" / "runs").rglob("weights.safetensors")}
    with caplog.at_level("INFO"):
        run_study(config, base / "out", progress=False)
    assert "finished earlier" in caplog.text and caplog.text.count("evaluated earlier") == 5  # references + 4 runs
    assert {p: p.stat().st_mtime_ns for p in (base / "out" / "runs").rglob("weights.safetensors")} == before


def test_a_run_whose_checkpoint_changed_is_evaluated_again_alone(study, caplog) -> None:
    """A checkpoint newer than its run's evaluation (e.g. a run trained further by hand) re-evaluates that run
    only; the other runs and the references are kept."""
    import os

    base, _, config, _ = study
    evaluations = base / "out" / "evaluations"
    kept = {p: p.stat().st_mtime_ns for p in evaluations.rglob("summary.json") if p.parent.name != "g_psnr-seed0"}
    later = (evaluations / "runs" / "g_psnr-seed0" / "summary.json").stat().st_mtime + 5
    for f in (base / "out" / "runs" / "g_psnr-seed0" / "checkpoints").rglob("final/*"):
        os.utime(f, (later, later))
    with caplog.at_level("INFO"):
        run_study(config, base / "out", progress=False)
    assert caplog.text.count("evaluated earlier") == 4 and "evaluation: g_psnr-seed0\n" in caplog.text + "\n"
    assert {p: p.stat().st_mtime_ns for p in kept} == kept


def test_a_study_saved_without_the_minimum_resumes(study) -> None:
    from vagan.study.runner import CONFIG_FILE, _open_folder

    base, _, config, _ = study
    saved = base / "out" / CONFIG_FILE
    data = yaml.safe_load(saved.read_text())
    del data["budget"]["min_generator_updates"]  # as written before the key existed
    saved.write_text(yaml.safe_dump(data))
    assert _open_folder(base / "out", config, overwrite=False, inputs=())
    assert yaml.safe_load(saved.read_text())["budget"]["min_generator_updates"] == 1


def test_a_changed_budget_is_refused_on_resume(study, tmp_path) -> None:
    base, root, _, _ = study
    changed = load_study_config(_config_file(tmp_path, root, budget={"patches": 32, "min_generator_updates": 1}))
    with pytest.raises(ConfigError, match="budget"):
        run_study(changed, base / "out", progress=False)


def test_bad_study_configs_are_refused_before_anything_runs(tmp_path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    for changes, message in (({"presets": ["vagn"]}, "did you mean 'vagan'"),
                             ({"budget": {"patches": 0}}, "budget.patches: must be >= 1"),
                             ({"seeds": []}, "seeds: empty"),
                             ({"budgets": [8, 8]}, "budgets: ['8'] given twice"),
                             ({"budgets": [0]}, "budgets"),
                             ({"budget": {"patches": 16}}, "would get 4 generator updates"),
                             ({"evaluation": {"methods": [str(root)]}}, "adds its own runs"),
                             ({"additional_runs": [{"presets": ["vagn"]}]}, "did you mean 'vagan'"),
                             ({"additional_runs": [{"presets": ["ga_psnr"], "seeds": [1]}]},
                              "['ga_psnr-seed1'] already in the study"),
                             ({"additional_runs": [{"presets": ["red_cnn"], "budgets": [8]}]}, "no budget axis")):
        result = runner.invoke(app, ["study", str(_config_file(tmp_path, root, **changes)), str(tmp_path / "out")])
        assert result.exit_code == 2 and message in result.output, (changes, result.output)
        assert not (tmp_path / "out").exists()


def test_additional_runs_join_the_grid_budget_by_budget(tmp_path) -> None:
    """additional_runs: e.g. the other presets at the middle budget with one seed, beside the grid."""
    path = _config_file(tmp_path, tmp_path / "data", presets=["g_psnr", "ga_psnr"], seeds=[0, 1], budgets=[16, 8],
                        additional_runs=[{"presets": ["red_cnn", "g_gan"], "seeds": [0], "budgets": [16]},
                                         {"presets": ["wgan_vgg"]}])
    config = load_study_config(path)
    assert config.budget_axis() == (8, 16)
    def grid(patches: int) -> list[tuple[str, int, int]]:
        return [(p, s, patches) for p in ("g_psnr", "ga_psnr") for s in (0, 1)]

    assert config.runs() == [*grid(8), ("wgan_vgg", 0, 8),
                             *grid(16), ("red_cnn", 0, 16), ("g_gan", 0, 16), ("wgan_vgg", 0, 16)]
    assert config.presets_at(8) == ("g_psnr", "ga_psnr", "wgan_vgg")
    assert config.presets_at(16) == ("g_psnr", "ga_psnr", "red_cnn", "g_gan", "wgan_vgg")


def _budget_config(tmp_path: Path, presets: list[str], **budget):
    return load_study_config(_config_file(tmp_path, tmp_path / "data", presets=presets, seeds=[0], budget=budget))


@pytest.mark.parametrize(("preset", "patches", "message"), [
    # TINY batches of 4; g_gan's GAN stage gets 20% of 800 patches: 40 steps, 40 updates
    ("g_gan", 800, "preset 'g_gan', stage 1 ('gan') would get 40 generator updates (40 steps of 4), fewer than "
                   "budget.min_generator_updates = 50"),
    # wgan_vgg: 796 patches are 199 steps of 4, one generator update per 4 critic steps: 49
    ("wgan_vgg", 796, "preset 'wgan_vgg', stage 0 ('wgan') would get 49 generator updates (199 steps of 4, one "
                      "generator update per 4 critic steps), fewer than budget.min_generator_updates = 50"),
])
def test_a_budget_too_small_for_the_generator_is_refused(tmp_path, preset, patches, message) -> None:
    with pytest.raises(ConfigError) as err:
        run_configs(_budget_config(tmp_path, [preset], patches=patches), "cpu")
    assert message in str(err.value)


def test_a_sufficient_budget_passes_the_minimum(tmp_path) -> None:
    configs = run_configs(_budget_config(tmp_path, ["g_gan", "wgan_vgg"], patches=1000), "cpu")
    assert [s.max_steps for s in configs["g_gan-seed0"][-1].stages] == [200, 50]
    assert [s.max_steps for s in configs["wgan_vgg-seed0"][-1].stages] == [250]  # 62 generator updates
    configs = run_configs(_budget_config(tmp_path, ["wgan_vgg"], patches=800), "cpu")  # exactly 50 updates
    assert configs["wgan_vgg-seed0"][-1].stages[0].max_steps == 200
    assert run_configs(_budget_config(tmp_path, ["g_gan"], patches=800, min_generator_updates=40), "cpu")


def test_the_default_budget_gives_every_preset_its_minimum(tmp_path) -> None:
    data = yaml.safe_load(_config_file(tmp_path, tmp_path / "data").read_text())
    data.update(presets=list(PRESETS), seeds=[0], train_overrides=[], budget={})
    (tmp_path / "default.yaml").write_text(yaml.safe_dump(data))
    assert len(run_configs(load_study_config(tmp_path / "default.yaml"), "cpu")) == len(PRESETS)


def test_the_cli_refuses_a_budget_too_small_before_anything_runs(tmp_path) -> None:
    path = _config_file(tmp_path, tmp_path / "data", presets=["wgan_vgg"], budget={"patches": 796})
    result = runner.invoke(app, ["study", str(path), str(tmp_path / "out")])
    assert result.exit_code == 2 and "error: budget: preset 'wgan_vgg', stage 0" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_budgets_are_an_axis_of_runs_and_tables_resumed_without_training_or_evaluating_again(tmp_path, caplog) -> None:
    root = write_tiny_dataset(tmp_path / "data")
    path = _config_file(tmp_path, root, presets=["g_psnr", "ga_psnr"], seeds=[0], budgets=[8, 16],
                        budget={"min_generator_updates": 1}, evaluation={"methods": ["ldct"], "fid_net": "none",
                                                                         "timing_slices": 0, "figure_slices": 0,
                                                                         "patches": {"size": 32}},
                        additional_runs=[{"presets": ["red_cnn"], "seeds": [1], "budgets": [16]}])
    config = load_study_config(path)
    result = run_study(config, tmp_path / "out", progress=False)
    runs = tmp_path / "out" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == [
        "g_psnr-seed0-16patches", "g_psnr-seed0-8patches", "ga_psnr-seed0-16patches", "ga_psnr-seed0-8patches",
        "red_cnn-seed1-16patches"]
    for name, steps in (("g_psnr-seed0-8patches", 2), ("ga_psnr-seed0-16patches", 4)):  # batches of 4
        assert yaml.safe_load((runs / name / "config.yaml").read_text())["stages"][0]["max_steps"] == steps
    record = json.loads(result.study_json.read_text())
    assert set(record["budgets"]) == {"8", "16"}
    for patches, per_budget in record["budgets"].items():
        extra = {"red_cnn": ["red_cnn-seed1-16patches"]} if patches == "16" else {}
        assert per_budget["runs"] == {**{p: [f"{p}-seed0-{patches}patches"] for p in ("g_psnr", "ga_psnr")}, **extra}
        assert set(per_budget["table_ii"]) == {"LDCT", "g_psnr", "ga_psnr", *extra}
        assert set(per_budget["paired"]["g_psnr"]) == {"ga_psnr", *extra}  # ga_psnr - g_psnr at this budget
        assert per_budget["orderings"][0]["claim"].startswith("GA_PSNR > G_PSNR")
        learned = per_budget["orderings"][-1]["evidence"]
        assert f"/{2 + len(extra)} with the interval above 0" in learned  # every preset trained at this budget
    # the attention's effect at each budget, and what each run cost
    assert [(e["budget"], e["with"], e["without"]) for e in record["attention"]] == [
        (8, "ga_psnr", "g_psnr"), (16, "ga_psnr", "g_psnr")]
    effect = record["attention"][0]
    ga, g = effect["seed_means"]["psnr_patch"]
    assert effect["difference"]["psnr_patch"]["estimate"] == pytest.approx(ga[0] - g[0])
    assert set(record["cost"]) == {p.name for p in runs.iterdir()}
    assert all(c["seconds"] > 0 and c["machines"] for c in record["cost"].values())
    md = result.report.markdown.read_text()
    for patches in (8, 16):
        assert f"Table II with 95% intervals, {patches} patches" in md
        assert "Paired differences against g_psnr" in md and f"{patches} patches:" in md
    assert "What the attention buys, per budget" in md and "What the runs cost" in md
    assert (result.report.markdown.parent / "figures" / "budgets.png").is_file()
    evaluations = tmp_path / "out" / "evaluations"
    before = {p: p.stat().st_mtime_ns for p in [*runs.rglob("weights.safetensors"), *evaluations.rglob("metrics.csv")]}
    assert len([p for p in before if p.name == "metrics.csv"]) == 6  # the references, and each of the 5 runs
    with caplog.at_level("INFO"):
        run_study(load_study_config(path), tmp_path / "out", progress=False)
    assert caplog.text.count("finished earlier") == 5 and caplog.text.count("evaluated earlier") == 6
    assert {p: p.stat().st_mtime_ns for p in before} == before
    caplog.clear()
    more = yaml.safe_load(path.read_text())
    more.update(budgets=[8, 16, 24], budget={"patches": 999, "min_generator_updates": 1})  # patches unused
    path.write_text(yaml.safe_dump(more))
    with caplog.at_level("INFO"):
        result = run_study(load_study_config(path), tmp_path / "out", progress=False)
    assert caplog.text.count("finished earlier") == 5 and caplog.text.count("evaluated earlier") == 6
    assert {p: p.stat().st_mtime_ns for p in before} == before  # only the two new runs were evaluated
    assert sorted(p.name for p in (evaluations / "runs").iterdir()) == sorted(p.name for p in runs.iterdir())
    assert set(json.loads(result.study_json.read_text())["budgets"]) == {"8", "16", "24"}


def test_runs_evaluated_on_other_test_slices_are_refused(tmp_path) -> None:
    """Each run is evaluated on its own; paired statistics over slices need the same slices in every evaluation."""
    from vagan.errors import InputDataError
    from vagan.study.results import TABLE_METRICS, read_per_slice

    def write(name: str, method: str, indices: list[int]) -> Path:
        path = tmp_path / name
        header = ["method", "image_index", "patient", *TABLE_METRICS]
        rows = [",".join([method, str(i), "P1", *["1.0"] * len(TABLE_METRICS)]) for i in indices]
        path.write_text("\n".join([",".join(header), *rows]) + "\n")
        return path

    same = read_per_slice([write("a.csv", "LDCT", [0, 1]), write("b.csv", "run", [0, 1])],
                          {"LDCT": ["LDCT"], "g": ["run"]})
    assert set(same) == {"LDCT", "g"}
    with pytest.raises(InputDataError, match="run was evaluated on other test slices than LDCT"):
        read_per_slice([write("a.csv", "LDCT", [0, 1]), write("c.csv", "run", [0, 2])], {"LDCT": ["LDCT"], "g": ["run"]})


@pytest.mark.parametrize("name", ["phantom512.yaml", "real-anatomy.yaml"])
def test_the_published_study_configs_are_valid_and_fair(name) -> None:
    """docs/studies/*.yaml load, and every run of them passes the budget's minimum generator updates."""
    config = load_study_config(str(Path(__file__).resolve().parents[2] / "docs" / "studies" / name))
    runs = run_configs(config, "cpu")
    extra = sum(len(g.presets) * len(g.seeds) * max(1, len(g.budgets or config.budgets)) for g in config.additional_runs)
    assert len(runs) == len(config.presets) * len(config.seeds) * max(1, len(config.budgets)) + extra


def test_the_task_based_section_runs_at_the_largest_budget_only(tmp_path, monkeypatch) -> None:
    """The quality phantom is costly: the study runs it for the references and the runs of its largest budget."""
    from vagan.study import runner as study_runner

    path = _config_file(tmp_path, tmp_path / "data", presets=["g_psnr"], seeds=[0], budgets=[8, 16],
                        budget={"min_generator_updates": 1},
                        evaluation={"methods": ["ldct"], "quality": {"enabled": True}},
                        additional_runs=[{"presets": ["red_cnn"], "budgets": [8, 24]}])
    config = load_study_config(path)
    seen = {}

    def fake_evaluate(cfg, folder, again, progress, fid=None):
        seen[folder.name] = cfg.quality.enabled
        return folder / "metrics.csv", folder / "summary.json"

    monkeypatch.setattr(study_runner, "_evaluate", fake_evaluate)
    configs = run_configs(config, "cpu")
    for name in configs:  # a run folder to evaluate (it is not opened: _evaluate is the fake)
        (tmp_path / "out" / "runs" / name).mkdir(parents=True)
    study_runner._evaluate_all(config, tmp_path / "out", configs, "cpu", False)
    # the grid's largest budget, not the additional runs' larger one
    assert seen == {"references": True, "g_psnr-seed0-8patches": False, "red_cnn-seed0-8patches": False,
                    "g_psnr-seed0-16patches": True, "red_cnn-seed0-24patches": False}


def test_an_evaluation_with_the_quality_section_stands_for_one_without(tmp_path, monkeypatch) -> None:
    """When a larger budget is added, the former largest budget's runs need no quality section any more:
    their evaluation with it is kept, not repeated. One without it does not stand for one with it."""
    import dataclasses

    from vagan.evaluation import runner as evaluation_runner
    from vagan.evaluation.eval_config import EvaluationConfig
    from vagan.study import runner as study_runner

    def refuse(*args, **kwargs):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(evaluation_runner, "evaluate", refuse)
    with_quality = EvaluationConfig.from_dict({"methods": ["ldct"], "quality": {"enabled": True}})
    without = dataclasses.replace(with_quality, quality=dataclasses.replace(with_quality.quality, enabled=False))
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.csv").write_text("method\n")
    (folder / "summary.json").write_text(json.dumps({"config": with_quality.to_dict()}))
    assert study_runner._evaluate(without, folder, again=False, progress=False)[0] == folder / "metrics.csv"
    (folder / "summary.json").write_text(json.dumps({"config": without.to_dict()}))
    with pytest.raises(AssertionError, match="evaluated again"):
        study_runner._evaluate(with_quality, folder, again=False, progress=False)
    other = dataclasses.replace(without, max_slices=3)  # any other setting still decides
    with pytest.raises(AssertionError, match="evaluated again"):
        study_runner._evaluate(other, folder, again=False, progress=False)


def test_an_evaluation_from_before_a_new_option_existed_is_kept_while_the_option_is_at_its_default(
        tmp_path, monkeypatch) -> None:
    """Upgrading vagan must not re-evaluate a whole study: settings recorded without an option added since
    (here ``fid_tile``) read as its default; setting the option evaluates again."""
    import dataclasses

    from vagan.evaluation import runner as evaluation_runner
    from vagan.evaluation.eval_config import EvaluationConfig
    from vagan.study import runner as study_runner

    def refuse(*args, **kwargs):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(evaluation_runner, "evaluate", refuse)
    cfg = EvaluationConfig.from_dict({"methods": ["ldct"]})
    recorded = {k: v for k, v in cfg.to_dict().items() if k != "fid_tile"}
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.csv").write_text("method\n")
    (folder / "summary.json").write_text(json.dumps({"config": recorded}))
    assert study_runner._evaluate(cfg, folder, again=False, progress=False)[0] == folder / "metrics.csv"
    with pytest.raises(AssertionError, match="evaluated again"):
        study_runner._evaluate(dataclasses.replace(cfg, fid_tile=32), folder, again=False, progress=False)
    (folder / "summary.json").write_text(json.dumps({"config": {**recorded, "fid_net": "no such net"}}))
    with pytest.raises(AssertionError, match="evaluated again"):  # settings that no longer read are not kept
        study_runner._evaluate(cfg, folder, again=False, progress=False)


def test_an_evaluation_whose_fid_came_from_other_weights_or_tiling_is_evaluated_again(tmp_path, monkeypatch) -> None:
    """The settings name the FID net, not its weights (the shipped ct-quality changes with vagan) nor what an
    older vagan meant by them: the label recorded with the FID decides too."""
    from vagan.evaluation import runner as evaluation_runner
    from vagan.evaluation.eval_config import EvaluationConfig
    from vagan.study import runner as study_runner

    def refuse(*args, **kwargs):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(evaluation_runner, "evaluate", refuse)
    cfg = EvaluationConfig.from_dict({"methods": ["ldct"]})
    label = study_runner._fid_label(cfg)
    assert label.startswith("ct-quality(") and label.endswith(")/tile64")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.csv").write_text("method\n")
    for recorded, kept in ((label, True), (None, True), ("ct-quality(00000000)/tile64", False),
                           (label.removesuffix("/tile64"), False)):
        (folder / "summary.json").write_text(json.dumps({"config": cfg.to_dict(), "fid_net": recorded}))
        if kept:
            assert study_runner._evaluate(cfg, folder, again=False, progress=False, fid=label)[0].name == "metrics.csv"
        else:
            with pytest.raises(AssertionError, match="evaluated again"):
                study_runner._evaluate(cfg, folder, again=False, progress=False, fid=label)


def test_fids_of_different_feature_nets_are_never_averaged(tmp_path) -> None:
    from vagan.errors import InputDataError
    from vagan.study.results import fid_by_group

    files = []
    for name, net in (("a-seed0", "ct-quality(11111111)/tile64"), ("a-seed1", "ct-quality(22222222)/tile64")):
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps({"methods": {name: {"fid": {"value": 1.0, "feature_net": net}}}}))
    with pytest.raises(InputDataError, match="several feature nets"):
        fid_by_group(files, {"a": ["a-seed0", "a-seed1"]})
    assert fid_by_group(files[:1], {"a": ["a-seed0"]}) == {"a": 1.0}


def test_task_table_averages_seeds_and_reports_the_worst_soft_tissue_bias() -> None:
    from vagan.study.task_based import task_table

    def record(noise: float, f50: float | None, bias: dict[str, float], d_primes: list[float]) -> dict:
        return {"noise_std_hu": noise, "nps": {"mean_frequency": 0.25},
                "ttf": {"rod +100 HU": None if f50 is None else {"f50": f50}},
                "ct_bias_hu": {t: {"estimate": b} for t, b in bias.items()},
                "detectability": {f"lesion {i}": {"cho": {"d_prime": {"estimate": d}}} for i, d in enumerate(d_primes)}}

    records = {"LDCT": record(24.0, 0.5, {"fat": 0.5, "muscle": -0.2, "bone": 9.0}, [1.0, 3.0]),
               "a-seed0": record(10.0, 0.3, {"fat": -2.0, "liver": 1.0}, [2.0, 2.0]),
               "a-seed1": record(12.0, None, {"fat": 1.0, "liver": 0.5}, [1.0, 3.0])}
    table = task_table(records, {"LDCT": ["LDCT"], "a": ["a-seed0", "a-seed1"], "b": ["b-seed0"]}, 28000)
    assert table.title.endswith(", 28000 patches") and [r[0] for r in table.rows] == ["LDCT", "a"]  # b: no record
    ldct, a = table.rows
    # noise, NPS f_av, TTF f50, worst soft-tissue |bias| (bone is not soft tissue), mean d'
    assert ldct[2:] == ["24.0", "0.250", "0.50", "0.5", "2.00"]
    assert a[1:] == ["2", "11.0", "0.250", "–", "1.5", "2.00"]  # one seed's TTF never fell to 50%
    assert task_table({}, {"a": ["a-seed0"]}, None) is None


def test_an_evaluation_that_cannot_run_is_refused_before_any_training(tmp_path) -> None:
    """A quality phantom that does not fit its field of view used to fail only after every run had trained."""
    root = write_tiny_dataset(tmp_path / "data")
    path = _config_file(tmp_path, root, evaluation={
        "methods": ["ldct"], "fid_net": "none", "patches": {"size": 32},
        "quality": {"enabled": True, "dose": 0.25, "pixel_mm": 0.5, "size": 128}})
    result = runner.invoke(app, ["study", str(path), str(tmp_path / "out")])
    assert result.exit_code == 2 and "error: quality:" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_the_attention_table_marks_a_preset_with_one_seed() -> None:
    """A preset with one seed has no measured seed spread: its row says so (its interval is too narrow)."""
    from vagan.study.results import AttentionEffect, attention_table
    from vagan.study.stats import Interval

    def effect(seeds_with: int, seeds_without: int) -> AttentionEffect:
        diff = {"psnr_patch": Interval(0.5, 0.1, 0.9, 5), "rmse_hu": Interval(-1.0, -2.0, 0.0, 5)}
        means = {m: ([30.0] * seeds_with, [29.5] * seeds_without) for m in diff}
        return AttentionEffect(7000, "vagan", "g_gan", diff, means)

    rows = attention_table([effect(2, 2), effect(2, 1)], 0.95).rows
    assert [r[2] for r in rows] == ["2/2", "2/1 †"]
    assert rows[0][3] == "0.500 [0.100, 0.900]" and rows[0][5] == "30.00, 30.00; 29.50, 29.50"
