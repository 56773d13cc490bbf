"""``vagan study``: train presets x seeds with equal budgets on one dataset, evaluate them together
and write the study report. Everything lands in one folder that an interrupted study resumes::

    OUT/study.yaml            the study's config as validated
    OUT/runs/<preset>-seed<k>/ one ordinary run folder per preset and seed
                              (<preset>-seed<k>-<N>patches/ per budget with ``budgets``)
    OUT/evaluations/references/  vagan evaluate of the reference methods (LDCT, BM3D, ...)
    OUT/evaluations/runs/<run>/  vagan evaluate of each run on its own: evaluated once, kept while
                              the run and the evaluation settings stay as they were
    OUT/report/               the study report: Table II with intervals, paired differences,
                              the paper's orderings, validation curves, study.json
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vagan.config_schema import load_yaml
from vagan.errors import ConfigError
from vagan.evaluation.eval_config import EvaluationConfig, MethodSpec
from vagan.evaluation.report import (
    ReportFigure,
    ReportPaths,
    ReportSection,
    report_metadata,
    write_report,
)
from vagan.io.atomic import atomic_dir, atomic_file, prepare_growing_dir
from vagan.io.ownership import read_marker
from vagan.study import results
from vagan.study.config import StudyConfig, budgeted, check_generator_updates
from vagan.study.cost import RunCost, cost_table, run_cost
from vagan.study.stats import Interval, PairedDifference
from vagan.study.task_based import quality_records, task_table
from vagan.training.config import ExperimentConfig, load_config, with_values
from vagan.training.run_folder import METRICS_CSV, final_dir

log = logging.getLogger(__name__)

CONFIG_FILE = "study.yaml"
STUDY_ENTRIES = (CONFIG_FILE,)
"""What the study writes into its folder besides runs/*, evaluations/*/ and report/, which carry markers of their own."""
MUST_MATCH = ("data_root", "split", "split_seed", "thickness", "budget", "train_overrides")
"""Keys a resumed study may not change (they decide what its finished runs were trained on)."""
NOT_DECIDING = ("min_generator_updates",)
"""``budget`` keys that a resumed study may change: they only check the budget."""


@dataclass(frozen=True)
class StudyResult:
    out_dir: Path
    report: ReportPaths
    study_json: Path
    orderings: tuple[results.Ordering, ...]


Run = tuple[str, int, int | None, ExperimentConfig]
"""preset, seed, budget of the axis in patches (``None``: the single ``budget.patches``), training config"""


def run_configs(config: StudyConfig, device: str) -> dict[str, Run]:
    """Every run's training config, built and validated before anything trains: run name -> :data:`Run`,
    budget by budget."""
    out = {}
    bases = {preset: load_config(preset, list(config.train_overrides))
             for preset in dict.fromkeys(p for p, *_ in config.runs())}
    for preset, seed, patches in config.runs():
        base, budget = bases[preset], config.budget_for(patches)
        steps = budgeted(base, budget)
        check_generator_updates(preset, with_values(base, steps), budget)
        values: dict[str, Any] = {"data.root": config.data_root, "data.split": config.split,
                                  "data.split_seed": config.split_seed, "data.thickness": config.thickness,
                                  "train.seed": seed, "train.device": device, **steps}
        out[config.run_name(preset, seed, patches)] = (preset, seed, patches, with_values(base, values))
    return out


def _check_weights(configs: dict[str, Run]) -> None:
    """A missing VGG19 file fails now, not after the first runs have trained for hours."""
    from vagan.training.build import check_feature_net, needs_feature_net

    checked = set()
    for *_, cfg in configs.values():
        if any(needs_feature_net(s) for s in cfg.stages) and cfg.train not in checked:
            check_feature_net(cfg.train)
            checked.add(cfg.train)


def _open_folder(out: Path, config: StudyConfig, overwrite: bool, inputs: tuple[Path, ...]) -> bool:
    """Create ``out`` (or replace it with ``overwrite``), or resume the study in it; True when resuming."""
    saved = out / CONFIG_FILE
    marker = read_marker(out) if out.is_dir() else None
    if not overwrite and marker is not None and marker.get("kind") == "study" and saved.is_file():
        previous = load_yaml(saved.read_text(encoding="utf-8"), str(saved)) or {}
        previous, current = _deciding(previous), _deciding(_plain(config))
        if previous.get("budgets") and current.get("budgets"):  # budget.patches is unused by both: runs are
            previous, current = _without_patches(previous), _without_patches(current)  # named by their budget
        changed = [k for k in MUST_MATCH if previous.get(k) != current.get(k)
                   and not (k == "data_root" and _same_path(previous.get(k), current.get(k)))]
        if changed:
            raise ConfigError(f"{out} holds a study trained with other {', '.join(changed)}; give another folder or "
                              "--overwrite to start again")
        log.info("resuming the study in %s", out)
        _write_config(out, config)
        return True
    prepare_growing_dir(out, "study", STUDY_ENTRIES, overwrite=overwrite, inputs=(Path(config.data_root), *inputs))
    _write_config(out, config)
    return False


def _deciding(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the budget keys that only check it (a study saved before they existed resumes)."""
    if isinstance(data.get("budget"), dict):
        data = {**data, "budget": {k: v for k, v in data["budget"].items() if k not in NOT_DECIDING}}
    return data


def _without_patches(data: dict[str, Any]) -> dict[str, Any]:
    budget = data.get("budget")
    return {**data, "budget": {k: v for k, v in budget.items() if k != "patches"}} if isinstance(budget, dict) else data


def _same_path(a: object, b: object) -> bool:
    return isinstance(a, str) and isinstance(b, str) and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _plain(config: StudyConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    data["split"] = config.split.to_dict()
    data["evaluation"] = config.evaluation.to_dict()
    return yaml.safe_load(yaml.safe_dump(data))  # tuples -> lists, as read back


def _write_config(out: Path, config: StudyConfig) -> None:
    with atomic_file(out / CONFIG_FILE, overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump(_plain(config), sort_keys=False), encoding="utf-8")


def _train_all(out: Path, configs: dict[str, Run]) -> None:
    """Train the runs not finished earlier."""
    from vagan.training.trainer import train

    for i, (name, (*_, cfg)) in enumerate(configs.items(), start=1):
        run_dir = out / "runs" / name
        if final_dir(run_dir, cfg.stages[-1].name).is_dir():
            log.info("run %d/%d %s: finished earlier", i, len(configs), name)
            continue
        resume = run_dir.is_dir() and any(run_dir.iterdir())
        log.info("run %d/%d %s: %s", i, len(configs), name, "resuming" if resume else
                 ", ".join(f"{s.name} {s.max_steps} steps of {s.batch_size}" for s in cfg.stages))
        train(cfg, run_dir, resume=resume)


def _curves(out: Path, configs: dict[str, Run]) -> dict[str, dict[int, list[tuple[float, float]]]]:
    """Validation PSNR per preset (and budget of the axis) and seed against the training patches seen, stages
    joined."""
    from vagan.evaluation.plots import read_curves_csv

    curves: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for name, (preset, seed, patches, cfg) in configs.items():
        series = read_curves_csv(out / "runs" / name / METRICS_CSV)
        points, offset = [], 0.0
        for stage in cfg.stages:
            points += [(offset + step * stage.batch_size, v) for step, v in series.get(f"{stage.name}/val_psnr", [])]
            offset += (stage.max_steps or 0) * stage.batch_size
        curves.setdefault(preset if patches is None else f"{preset}, {patches} patches", {})[seed] = points
    return curves


def run_study(config: StudyConfig, out: Path, overwrite: bool = False, device: str = "auto",
              progress: bool = True, inputs: tuple[Path, ...] = ()) -> StudyResult:
    """Train, evaluate and report the study of ``config`` in ``out`` (resumed when it holds this study).

    ``inputs`` (the study's config file) may not lie in ``out``. The runs' configs, the VGG19
    weights they need and the dataset's split are all checked before the folder is created.
    """
    from vagan.data.paired import patient_split
    from vagan.devices import resolve_device
    from vagan.evaluation.runner import prepare_evaluation

    out = Path(out)
    torch_device = str(resolve_device(device))
    configs = run_configs(config, torch_device)  # every config is valid before anything runs
    _check_weights(configs)
    subsets = patient_split(Path(config.data_root), config.split, config.split_seed, config.thickness)
    empty = [s for s in ("train", "test") if not subsets.get(s)]
    if empty:
        raise ConfigError(f"split: the {' and '.join(empty)} subset of {config.data_root} is empty ({subsets}); "
                          "a study trains on train patients and reports on test patients")
    prepare_evaluation(_evaluation_base(config, torch_device))  # its test set and quality phantom, before training
    _open_folder(out, config, overwrite, inputs)
    _train_all(out, configs)

    metrics, summaries = _evaluate_all(config, out, configs, torch_device, progress)
    references = {m.name or m.default_name(): [m.name or m.default_name()] for m in config.evaluation.methods}
    stats = config.statistics
    by_budget: dict[int | None, dict[str, list[str]]] = {patches: {} for patches in config.budget_axis()}
    for name, (preset, _, at, _) in configs.items():
        by_budget[at].setdefault(preset, []).append(name)
    per_run = results.read_per_slice(metrics, {**references, **{name: [name] for name in configs}})
    outcomes = {}
    for patches, groups in by_budget.items():
        everything = {**references, **groups}
        per_slice = results.combine(per_run, everything)
        fid = results.fid_by_group(summaries, everything)
        presets = config.presets_at(patches)
        outcomes[patches] = _Outcome(
            groups, results.intervals(per_slice, stats), fid, results.paired_with_references(per_slice, presets, stats),
            results.orderings(per_slice, fid, presets, stats))
    largest = config.quality_budget()
    quality = quality_records(summaries)
    extras = _Extras(
        results.attention_effects(per_run, by_budget, stats),
        results.budget_points(per_run, by_budget),
        {ref: {m: results.patient_mean(per_run[ref].values[m], per_run[ref].patients)
               for m in (results.PAIRED_METRIC, "rmse_hu")} for ref in references},
        {name: run_cost(out / "runs" / name, cfg) for name, (*_, cfg) in configs.items()},
        task_table(quality, {**{n: [n] for n in quality if n not in configs}, **by_budget[largest]}, largest))
    return _write(out, config, configs, outcomes, extras, _curves(out, configs))


def _evaluate_all(config: StudyConfig, out: Path, configs: dict[str, Run], device: str,
                  progress: bool) -> tuple[list[Path], list[Path]]:
    """``metrics.csv`` and ``summary.json`` of the references (one evaluation) and of every run (one
    evaluation each, in ``OUT/evaluations/``). Each is kept while its settings are the same and its
    run's final checkpoint is older than it (a run trained in this call has a newer one): adding a run or
    a budget evaluates only what is new, a resumed study never evaluates a run twice, and a run
    evaluated after it finished (e.g. ahead of the study, in parallel) is not evaluated again."""
    base = _evaluation_base(config, device)
    folder = out / "evaluations"
    units: list[tuple[Path, tuple[MethodSpec, ...], Path | None, bool]] = []
    if config.evaluation.methods:
        units.append((folder / "references", config.evaluation.methods, None, True))
    largest = config.quality_budget()
    for name, (_, _, patches, cfg) in configs.items():
        run = out / "runs" / name
        units.append((folder / "runs" / name, (MethodSpec(name, str(run)),), final_dir(run, cfg.stages[-1].name),
                      patches == largest))
    metrics, summaries = [], []
    fid = _fid_label(base)
    for where, methods, checkpoint, with_quality in units:
        cfg = dataclasses.replace(base, methods=methods, title=f"{config.title}: {where.name}")
        if not with_quality:
            cfg = dataclasses.replace(cfg, quality=dataclasses.replace(cfg.quality, enabled=False))
        again = checkpoint is not None and _newer(checkpoint, where / "summary.json")
        metrics_csv, summary_json = _evaluate(cfg, where, again=again, progress=progress, fid=fid)
        metrics.append(metrics_csv)
        summaries.append(summary_json)
    return metrics, summaries


def _evaluation_base(config: StudyConfig, device: str) -> EvaluationConfig:
    """The study's evaluation settings on its own dataset and split (each evaluation adds its methods)."""
    return dataclasses.replace(config.evaluation, data_root=config.data_root, split=config.split,
                               split_seed=config.split_seed, thickness=config.thickness, device=device)


def _newer(checkpoint: Path, summary: Path) -> bool:
    """Whether a file of ``checkpoint`` changed after ``summary`` was written (or there is no summary)."""
    if not summary.is_file():
        return True
    written = summary.stat().st_mtime_ns
    return any(p.stat().st_mtime_ns > written for p in checkpoint.iterdir() if p.is_file())


def _evaluate(cfg: EvaluationConfig, folder: Path, again: bool, progress: bool,
              fid: str | None = None) -> tuple[Path, Path]:
    """``metrics.csv`` and ``summary.json`` of ``vagan evaluate`` of ``cfg`` in ``folder``: kept from an
    earlier call when its config (methods, their run folders, settings) is this one, its FID came from
    the feature net ``fid`` (:func:`_fid_label`: the weights and tiling, which the settings do not pin)
    and ``again`` is false; otherwise evaluated (again)."""
    from vagan.evaluation.runner import evaluate

    metrics_csv, summary_json = folder / "metrics.csv", folder / "summary.json"
    if not again and metrics_csv.is_file() and summary_json.is_file():
        earlier, earlier_fid = _read_back(summary_json)
        wanted = json.loads(json.dumps(cfg.to_dict()))
        same = earlier == wanted or (not cfg.quality.enabled and isinstance(earlier, dict)
                                     and _without_quality(earlier) == _without_quality(wanted))
        # an evaluation with the quality section answers one without it (the runs of a budget that was the
        # largest before a larger one was added keep theirs); one without FID (too few tiles) answers any
        if same and earlier_fid in (None, fid):
            log.info("evaluation: %s evaluated earlier (%s)", folder.name, folder)
            return metrics_csv, summary_json
    log.info("evaluation: %s", folder.name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    result = evaluate(cfg, folder, overwrite=folder.exists(), progress=progress)
    return result.metrics_csv, result.summary_json


def _fid_label(cfg: EvaluationConfig) -> str | None:
    """The FID label an evaluation of ``cfg`` records (``summary.json``'s ``fid_net``): the feature net's name,
    with its weights' checksum for a trained one, and the tiling; ``None`` without FID."""
    from vagan.evaluation.feature_nets import fid_label
    from vagan.evaluation.inputs import build_fid_net

    net = build_fid_net(cfg)
    return None if net is None else fid_label(net.name, cfg.fid_tile)


def _read_back(summary_json: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The evaluation settings and FID label recorded in ``summary_json``; the settings through today's
    schema, so that an option added since then reads as its default and a new option left at its
    default keeps earlier evaluations (``None`` when they no longer read)."""
    try:
        recorded = json.loads(summary_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    if not isinstance(recorded, dict):
        return None, None
    try:
        settings = json.loads(json.dumps(EvaluationConfig.from_dict(recorded.get("config")).to_dict()))
    except (ValueError, TypeError, AttributeError, ConfigError):
        settings = None
    fid = recorded.get("fid_net")
    return settings, fid if isinstance(fid, str) else None


def _without_quality(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "quality"}


@dataclass(frozen=True)
class _Outcome:
    """One budget's results: groups (preset -> run names), Table II intervals, FID, paired differences, orderings."""

    groups: dict[str, list[str]]
    ints: dict[str, dict[str, Interval]]
    fid: dict[str, float]
    vs: dict[str, dict[str, PairedDifference]]
    ordered: list[results.Ordering]


def _record(o: _Outcome) -> dict[str, Any]:
    return {"runs": o.groups, "orderings": [dataclasses.asdict(x) for x in o.ordered],
            "table_ii": {g: {k: dataclasses.asdict(v) for k, v in m.items()} for g, m in o.ints.items()},
            "fid": o.fid, "paired": {ref: {g: {"difference": dataclasses.asdict(d.difference), "p_value": d.p_value,
                                               "wins": d.wins, "losses": d.losses, "verdict": d.verdict}
                                           for g, d in diffs.items()} for ref, diffs in o.vs.items()}}


@dataclass(frozen=True)
class _Extras:
    """Across budgets: the attention's effect, the budget curves' points, the references' means, each run's
    cost, and the task-based table at the largest budget."""

    effects: list[results.AttentionEffect]
    points: dict[str, dict[int, dict[str, list[float]]]]
    reference_means: dict[str, dict[str, float]]
    costs: dict[str, RunCost]
    task: ReportTable | None


def _describe_runs(config: StudyConfig) -> str:
    budget = config.budget
    if config.budgets:
        grid = (f"{', '.join(config.presets)} x seeds {list(config.seeds)} at each budget of "
                f"{', '.join(map(str, config.budgets))} training patches (a table per budget)")
    else:
        grid = f"{', '.join(config.presets)} x seeds {list(config.seeds)} at {budget.patches} training patches"
    more = "".join(f"; {', '.join(g.presets)} x seeds {list(g.seeds)} at "
                   + (", ".join(map(str, g.budgets or config.budgets)) or str(budget.patches)) + " patches"
                   for g in config.additional_runs)
    return (f"{grid}{more}, on {config.data_root} (split {config.split.to_dict()}, seed {config.split_seed}). "
            f"Presets with an adversarial stage spent {budget.gan_fraction:.0%} of their patches there.")


def _write(out: Path, config: StudyConfig, configs: dict[str, Run], outcomes: dict[int | None, _Outcome],
           extras: _Extras, curves: dict[str, dict[int, list[tuple[float, float]]]]) -> StudyResult:
    stats = config.statistics
    tables, verdicts = [], []
    for patches, o in outcomes.items():
        at = "" if patches is None else f", {patches} patches"
        runs = {label: len(names) for label, names in o.groups.items()}
        for table in (results.table_ii(o.ints, o.fid, runs, stats.confidence),
                      *[results.paired_table(diffs, ref, stats.confidence) for ref, diffs in o.vs.items()]):
            tables.append(dataclasses.replace(table, title=table.title + at))
        lines = "\n".join(f"- **{x.verdict}**: {x.claim}. {x.evidence}." for x in o.ordered) or "- none testable"
        verdicts.append(lines if patches is None else f"{patches} patches:\n\n{lines}")
    if extras.effects:
        tables.append(results.attention_table(extras.effects, stats.confidence))
    if extras.task is not None:
        tables.append(extras.task)
    tables.append(cost_table(extras.costs, {name: (preset, at) for name, (preset, _, at, _) in configs.items()}))
    sections = [
        ReportSection("Study", (
            f"{len(configs)} runs: {_describe_runs(config)} "
            f"Per-run Table II and figures: {out / 'evaluations' / 'runs'}/<run>/report.md; the references and "
            f"the BM3D calibration: {out / 'evaluations' / 'references' / 'report.md'}.")),
        ReportSection("The paper's orderings", "\n\n".join(verdicts) + (
            "\n\nheld: the interval lies on the paper's side; reversed: on the other side; not resolved: it "
            "contains 0.")),
    ]
    record: dict[str, Any] = {"config": _plain(config)}
    if config.budgets:
        record["budgets"] = {str(patches): _record(o) for patches, o in outcomes.items()}
    else:
        record.update(_record(outcomes[None]))
    record["attention"] = [{"budget": e.budget, "with": e.with_attention, "without": e.without,
                            "difference": {m: dataclasses.asdict(i) for m, i in e.differences.items()},
                            "seed_means": e.seed_means} for e in extras.effects]
    record["cost"] = {name: dataclasses.asdict(c) for name, c in extras.costs.items()}
    with atomic_dir(out / "report", "study-report", overwrite=(out / "report").exists()) as tmp:
        figure = results.curves_figure(curves, tmp / "figures" / "validation_curves.png")
        figures = [ReportFigure(figure, "Validation PSNR (whole slices, network units) against the training patches "
                                "seen; one line per seed", title="Training curves")] if figure else []
        if figure is None:
            sections.append(ReportSection("Training curves", "No validation values were logged (the split has no "
                                          "validation patients, or data.val_slices is 0)."))
        by_budget = results.budget_figure(extras.points, extras.reference_means, tmp / "figures" / "budgets.png")
        if by_budget is not None:
            figures.append(ReportFigure(by_budget, "Test PSNR (patches) and body RMSE against the training budget: "
                                        "a line through each preset's seed means, a dot per seed, the references "
                                        "dashed", title="Budgets"))
        paths = write_report(tmp, config.title, sections, tables, figures, report_metadata(None, config.data_root))
        (tmp / "study.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    report = ReportPaths(out / "report" / paths.markdown.name, out / "report" / paths.html.name,
                         tuple(out / "report" / "figures" / p.name for p in paths.figures))
    ordered = tuple(x if patches is None else dataclasses.replace(x, claim=f"{patches} patches: {x.claim}")
                    for patches, o in outcomes.items() for x in o.ordered)
    return StudyResult(out, report, out / "report" / "study.json", ordered)
