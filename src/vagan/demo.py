"""The README demo: simulate -> train g_psnr, ga_psnr, vagan briefly -> BM3D -> evaluate -> report.

Everything lands in one output folder::

    OUT/data/      the simulated paired phantom dataset (Mayo layout, with noise-free truth)
    OUT/runs/P/    one training run per preset (checkpoints, logs, config)
    OUT/report/    report.md / report.html with Table II, figures, the simulation check
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vagan.config_schema import (
    Section,
    build_section,
    did_you_mean,
)
from vagan.data.simulated import DatasetSpec
from vagan.errors import CheckpointError, ConfigError, MissingResourceError
from vagan.evaluation.eval_config import REFERENCE_METHODS, EvaluationConfig, MethodSpec
from vagan.io.atomic import prepare_growing_dir
from vagan.io.mayo import DataSplit
from vagan.io.windowing import BODY_THRESHOLD_HU

if TYPE_CHECKING:
    from vagan.training.config import ExperimentConfig

log = logging.getLogger(__name__)

DEMO_ENTRIES = ("simulation/*.png",)
"""What the demo writes into its folder besides data/, runs/* and report/, which carry markers of their own."""


@dataclass(frozen=True)
class DemoConfig(Section):
    """What the demo simulates, trains and evaluates (``configs/demo.yaml``).

    ``steps`` per stage: ``"psnr"`` for every preset's stage of that name, ``"vagan.gan"`` for one
    preset's (it wins). ``minutes``, keyed the same way, caps a stage's wall-clock time (the stage's
    ``max_minutes``): a slower CPU trains fewer steps, and the report says how many. ``evaluation`` lists the methods besides the trained presets (default LDCT
    and BM3D); its data, split, device and title are the demo's.
    """

    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    split: DataSplit = field(default_factory=DataSplit)
    presets: tuple[str, ...] = ("g_psnr", "ga_psnr", "vagan")
    steps: dict[str, int] = field(default_factory=lambda: {"psnr": 200, "gan": 50})
    minutes: dict[str, float] = field(default_factory=dict)
    train_overrides: tuple[str, ...] = ()
    evaluation: EvaluationConfig = field(default_factory=lambda: EvaluationConfig.from_dict(
        {"methods": REFERENCE_METHODS}))

    def check(self) -> None:
        """Every ``steps`` and ``minutes`` key names a stage (``psnr``) or a preset's stage (``vagan.gan``)."""
        from vagan.training.config import load_config

        stages = {preset: [s.name for s in load_config(preset).stages] for preset in self.presets}
        known = {s for names in stages.values() for s in names} | {f"{p}.{s}" for p, names in stages.items()
                                                                    for s in names}
        for section, mapping, kinds in (("steps", self.steps, (int,)), ("minutes", self.minutes, (int, float))):
            for key, value in mapping.items():
                if key not in known:
                    raise ConfigError(f"{section}.{key}: not a stage of the demo's presets"
                                      + did_you_mean(str(key), sorted(known)))
                if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
                    kind = "an integer >= 1" if section == "steps" else "a number of minutes > 0"
                    raise ConfigError(f"{section}.{key}: must be {kind}, got {value!r}")

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """``--set steps.vagan.gan=N`` nests ``{"vagan": {"gan": N}}``: flattened to ``"vagan.gan"``;
        ``evaluation.methods`` defaults to LDCT and BM3D."""
        for section in ("steps", "minutes"):
            mapping = data.get(section)
            if isinstance(mapping, dict):
                flat: dict[str, Any] = {}
                for key, value in mapping.items():
                    if isinstance(value, dict):
                        flat.update({f"{key}.{stage}": n for stage, n in value.items()})
                    else:
                        flat[key] = value
                data[section] = flat
        if isinstance(data.get("evaluation"), dict):
            data["evaluation"] = {"methods": REFERENCE_METHODS, **data["evaluation"]}
        return data


    @staticmethod
    def stage_value(mapping: dict[str, Any], preset: str, stage: str, default: Any) -> Any:
        """``mapping``'s value for one preset's stage: ``"preset.stage"`` first, then ``"stage"``."""
        return mapping.get(f"{preset}.{stage}", mapping.get(stage, default))


def load_demo_config(path: Path | None = None, overrides: list[str] | None = None) -> DemoConfig:
    path = Path(path) if path else Path(str(resources.files("vagan") / "configs" / "demo.yaml"))
    return build_section(DemoConfig, path=path, overrides=overrides or [])


def _perceptual() -> str:
    """Pretrained VGG19 when its weights are on this machine; otherwise an explicitly random one."""
    from vagan.models.vgg import load_vgg19_weights

    try:
        load_vgg19_weights(None)
        return "vgg19"
    except (MissingResourceError, CheckpointError) as err:  # absent or unusable: the demo runs anyway, and says why
        log.warning("VGG19 ImageNet weights unavailable (%s): the demo's L_Pcep uses a randomly initialised VGG19",
                    str(err).split(";")[0])
        return "vgg19_random"


def simulation_check(data_root: Path, out_dir: Path, dose: float):
    """Noise of NDCT and LDCT against the noise-free truth, per patient: the 1/sqrt(dose) law."""
    from vagan.evaluation.plots import noise_figure
    from vagan.evaluation.report import ReportFigure, ReportSection, ReportTable
    from vagan.io.dicom import read_dicom_series

    rows = []
    figure = None
    for patient in sorted(p for p in Path(data_root).iterdir() if p.is_dir()):
        truth_dirs = sorted(patient.glob("truth_*"))
        if not truth_dirs:
            continue
        label = truth_dirs[0].name.split("_", 1)[1]
        truth = read_dicom_series(truth_dirs[0]).hu
        ndct = read_dicom_series(patient / f"full_{label}").hu
        ldct = read_dicom_series(patient / f"quarter_{label}").hu
        body = truth > BODY_THRESHOLD_HU
        nd_err, ld_err = (ndct - truth)[body], (ldct - truth)[body]
        rows.append((patient.name, float(nd_err.std()), float(ld_err.std()), float(ld_err.std() / nd_err.std()),
                     float(nd_err.mean()), float(ld_err.mean())))
        if figure is None:
            z = truth.shape[0] // 2
            figure = noise_figure(ndct[z], ldct[z], out_dir / "simulation_noise.png", overwrite=True,
                                  label=f"LDCT ({100 * dose:g}% dose)")
    expected = 1.0 / np.sqrt(dose)
    table = ReportTable(
        title="Simulation check: noise against the noise-free phantom (inside the body)",
        columns=["patient", "NDCT noise [HU]", "LDCT noise [HU]", f"ratio (expected {expected:.2f})",
                 "NDCT bias [HU]", "LDCT bias [HU]"],
        rows=[[p, f"{a:.1f}", f"{b:.1f}", f"{r:.2f}", f"{m1:+.2f}", f"{m2:+.2f}"] for p, a, b, r, m1, m2 in rows],
        caption="Quantum noise scales as 1/sqrt(dose); the electronic noise adds a little more at low dose.")
    section = ReportSection("Simulated data", (
        f"Phantom patients scanned at full dose (NDCT) and at {100 * dose:g}% dose (LDCT) with the fan-beam simulator "
        "(Poisson + electronic noise, FBP); the LDCT noise is inserted into the NDCT projections as in the Mayo data."))
    figures = [ReportFigure(figure, "NDCT | LDCT | LDCT - NDCT with the noise std in the ROI")] if figure else []
    return [section], [table], figures


def training_budget_table(runs_dir: Path, configs: dict[str, ExperimentConfig]):
    """Per preset and stage: the steps trained against the step cap and the minutes cap, so the report
    says how far a slower CPU got in the demo's time."""
    from vagan.evaluation.report import ReportTable
    from vagan.training.checkpoint import read_meta
    from vagan.training.run_folder import final_dir

    rows = []
    for preset, cfg in configs.items():
        for stage in cfg.stages:
            trained = int(read_meta(final_dir(runs_dir / preset, stage.name))["progress"]["step"])
            ended = "step cap" if stage.max_steps is not None and trained >= stage.max_steps else "time cap"
            rows.append([preset, stage.name, str(trained), str(stage.max_steps),
                         f"{stage.max_minutes:g}" if stage.max_minutes else "–", ended])
    return ReportTable(
        title="Demo training: steps per stage",
        columns=["preset", "stage", "steps trained", "step cap", "minutes cap", "ended by"],
        rows=rows,
        caption=("Each stage stops at its step cap or its minutes, whichever comes first, so a CPU without native "
                 "bf16 trains fewer steps in the same time. Networks stopped far below their step cap are "
                 "undertrained: compare the methods on a real training budget (vagan train, vagan study)."))


def run_demo(out: Path, config: DemoConfig, overwrite: bool = False, device: str = "auto",
             inputs: Sequence[Path] = ()) -> Path:
    """Run the whole demo into ``out``; return the report's Markdown path.

    ``inputs`` (the demo's config file) may not lie in ``out``; an existing ``out`` is replaced only
    with ``overwrite`` and only when it is a demo folder vagan wrote.
    """
    from vagan.data.simulated import write_phantom_dataset
    from vagan.devices import resolve_device
    from vagan.evaluation.runner import evaluate
    from vagan.training.config import load_config, with_values
    from vagan.training.trainer import train

    out = Path(out)
    torch_device = resolve_device(device)
    prepare_growing_dir(out, "demo", DEMO_ENTRIES, overwrite=overwrite, inputs=inputs)
    spec = config.dataset
    data_root = out / "data"
    log.info("1/4 simulating %d phantom patients x %d slices at %g%% dose", spec.patients, spec.slices_per_patient,
             100 * spec.dose)
    write_phantom_dataset(data_root, spec, device=torch_device)
    checks = out / "simulation"
    checks.mkdir(parents=True, exist_ok=True)
    extra_sections, extra_tables, extra_figures = simulation_check(data_root, checks, spec.dose)

    perceptual = _perceptual()
    runs = {}
    runs_configs: dict[str, ExperimentConfig] = {}
    for i, preset in enumerate(config.presets, start=1):
        cfg = load_config(preset, list(config.train_overrides))
        values: dict[str, Any] = {"data.root": str(data_root), "data.split": config.split,
                                  "train.device": str(torch_device), "train.perceptual": perceptual}
        for j, stage in enumerate(cfg.stages):
            values[f"stages.{j}.max_steps"] = config.stage_value(config.steps, preset, stage.name, 100)
            values[f"stages.{j}.max_minutes"] = config.stage_value(config.minutes, preset, stage.name, None)
        cfg = with_values(cfg, values)
        log.info("2/4 training %s (%d/%d): %s", preset, i, len(config.presets), ", ".join(
            f"{s.name} {s.max_steps} steps" + (f" or {s.max_minutes:g} min" if s.max_minutes else "")
            for s in cfg.stages))
        runs[preset] = train(cfg, out / "runs" / preset)
        runs_configs[preset] = cfg
    extra_tables.append(training_budget_table(out / "runs", runs_configs))
    log.info("3/4 + 4/4 BM3D, evaluation and report")
    runs_specs = [MethodSpec(preset, str(out / "runs" / preset)) for preset in config.presets]
    methods = (*config.evaluation.methods, *runs_specs)
    eval_cfg = dataclasses.replace(config.evaluation, methods=methods, data_root=str(data_root), split=config.split,
                                   device=str(torch_device), title="vagan demo: phantom, quarter dose")
    result = evaluate(eval_cfg, out / "report", extra_sections=extra_sections, extra_tables=extra_tables,
                      extra_figures=extra_figures)
    return result.report.markdown
