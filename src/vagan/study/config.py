"""What ``vagan study`` trains and how it compares (a YAML file, validated once; docs/study.md).

Every preset gets the same budget: the number of training patches it sees, all stages together.
A preset with a PSNR-oriented and an adversarial stage spends ``gan_fraction`` of it in the
adversarial stage; a preset with one stage (g_psnr, ga_psnr, red_cnn, wgan_vgg) spends all of it
there. ``budgets`` makes the budget an axis: every preset and seed is trained at each.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from vagan.config_schema import (
    Section,
    bounded,
    build_section,
    did_you_mean,
)
from vagan.errors import ConfigError
from vagan.evaluation.eval_config import REFERENCE_METHODS, EvaluationConfig
from vagan.io.mayo import DEFAULT_THICKNESS, DataSplit
from vagan.training.config import PRESETS, ExperimentConfig, StageConfig


@dataclass(frozen=True)
class Budget(Section):
    """Training patches per preset, every stage together, and the adversarial stage's share."""

    patches: int = bounded(64_000, ge=1)
    gan_fraction: float = bounded(0.2, gt=0, lt=1)
    # every stage of every preset must give its generator at least this many updates under the
    # budget, or the study is refused before anything trains (see generator_updates)
    min_generator_updates: int = bounded(50, ge=1)


@dataclass(frozen=True)
class Statistics(Section):
    """Bootstrap intervals: how many resamples, what confidence, which seed."""

    resamples: int = bounded(2000, ge=100)
    confidence: float = bounded(0.95, gt=0, lt=1)
    seed: int = bounded(0, ge=0)  # numpy seeds are non-negative


@dataclass(frozen=True)
class RunGroup(Section):
    """Runs beside the study's grid, e.g. the other presets at one budget with one seed:
    ``presets`` x ``seeds`` x ``budgets`` (empty ``budgets``: the grid's, the study's ``budgets``)."""

    presets: tuple[str, ...] = ()
    seeds: tuple[int, ...] = bounded((0,), ge=0)
    budgets: tuple[int, ...] = bounded((), ge=1)

    def check(self) -> None:
        _check_presets(self.presets)
        _check_unique({"presets": self.presets, "seeds": self.seeds, "budgets": self.budgets})
        if not self.seeds:
            raise ConfigError("seeds: empty; give at least one seed")


def _check_presets(presets: tuple[str, ...]) -> None:
    if not presets:
        raise ConfigError("presets: empty; give at least one of " + ", ".join(PRESETS))
    for name in presets:
        if name not in PRESETS:
            raise ConfigError(f"presets: unknown preset {name!r}" + did_you_mean(name, list(PRESETS)))


def _check_unique(lists: dict[str, tuple[Any, ...]]) -> None:
    for key, values in lists.items():
        twice = sorted({str(v) for v in values if values.count(v) > 1})
        if twice:
            raise ConfigError(f"{key}: {twice} given twice")


@dataclass(frozen=True)
class StudyConfig(Section):
    """Presets x seeds on one dataset (``data_root`` in the Mayo layout, split by patient)."""

    title: str = "vagan study"
    data_root: str = ""
    split: DataSplit = field(default_factory=DataSplit)
    split_seed: int = bounded(0, ge=0)  # numpy seeds are non-negative
    thickness: str = DEFAULT_THICKNESS
    presets: tuple[str, ...] = PRESETS
    seeds: tuple[int, ...] = bounded((0,), ge=0)
    budget: Budget = field(default_factory=Budget)
    # a budget axis (training patches): presets x seeds x budgets are run, budget.patches is unused
    # and budget.gan_fraction and budget.min_generator_updates apply to each; empty: budget.patches alone
    budgets: tuple[int, ...] = bounded((), ge=1)
    # more runs beside presets x seeds x budgets, e.g. [{presets: [red_cnn, wgan_vgg], seeds: [0], budgets: [28000]}]
    additional_runs: tuple[RunGroup, ...] = ()
    train_overrides: tuple[str, ...] = ()  # `--set` text for every preset, e.g. model.generator_features=32
    evaluation: EvaluationConfig = field(default_factory=lambda: EvaluationConfig.from_dict(
        {"methods": REFERENCE_METHODS}))
    statistics: Statistics = field(default_factory=Statistics)

    def check(self) -> None:
        if not self.data_root:
            raise ConfigError("data_root: not set; give the dataset folder (Mayo layout, e.g. from `vagan simulate`)")
        _check_presets(self.presets)
        _check_unique({"presets": self.presets, "seeds": self.seeds, "budgets": self.budgets})
        if not self.seeds:
            raise ConfigError("seeds: empty; give at least one seed")
        for i, group in enumerate(self.additional_runs):
            if group.budgets and not self.budgets:
                raise ConfigError(f"additional_runs.{i}.budgets: the study has no budget axis (budgets); leave it out "
                                  "to train at budget.patches, or give the study budgets")
        grid = self.runs()
        twice = sorted({self.run_name(*r) for r in grid if grid.count(r) > 1})
        if twice:
            raise ConfigError(f"additional_runs: {twice} already in the study; give each run once")
        models = [m for m in self.evaluation.methods if m.kind == "model"]
        if models:
            raise ConfigError(f"evaluation.methods: the study adds its own runs; list only references "
                              f"(ldct, ndct, bm3d, bm3d:SIGMA_HU), not {models[0].spec!r}")

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """``evaluation.methods`` defaults to the references LDCT and BM3D."""
        if isinstance(data.get("evaluation"), dict):
            data["evaluation"] = {"methods": REFERENCE_METHODS, **data["evaluation"]}
        return data

    def budget_axis(self) -> tuple[int | None, ...]:
        """The budgets in patches, smallest first, of the grid and of ``additional_runs``, or ``(None,)`` for
        the single ``budget.patches``."""
        every = set(self.budgets) | {b for g in self.additional_runs for b in g.budgets}
        return tuple(sorted(every)) or (None,)

    def runs(self) -> list[tuple[str, int, int | None]]:
        """(preset, seed, budget) of every run, budget by budget (smallest first): the grid's presets x seeds,
        then the ``additional_runs`` at that budget."""
        groups = [(self.presets, self.seeds, self.budgets), *((g.presets, g.seeds, g.budgets or self.budgets)
                                                            for g in self.additional_runs)]
        return [(preset, seed, patches) for patches in self.budget_axis() for presets, seeds, budgets in groups
                if patches is None or patches in budgets for preset in presets for seed in seeds]

    def quality_budget(self) -> int | None:
        """The budget whose runs get the task-based section (the quality phantom is costly): the largest of
        the grid's own ``budgets``, so that runs added beside the grid never take it from the grid's presets."""
        return max(self.budgets) if self.budgets else self.budget_axis()[-1]

    def presets_at(self, patches: int | None) -> tuple[str, ...]:
        """The presets trained at ``patches`` (a budget of :meth:`budget_axis`), in the study's order."""
        return tuple(dict.fromkeys(preset for preset, _, at in self.runs() if at == patches))

    def budget_for(self, patches: int | None) -> Budget:
        """``budget`` with ``patches`` from the budget axis (``None``: ``budget`` itself)."""
        return self.budget if patches is None else dataclasses.replace(self.budget, patches=patches)

    def run_name(self, preset: str, seed: int, patches: int | None = None) -> str:
        """The run folder (and method name) of one preset, seed and budget of the axis: ``<preset>-seed<k>``
        for the single budget (as before budgets existed), ``<preset>-seed<k>-<N>patches`` on the axis."""
        return f"{preset}-seed{seed}" + ("" if patches is None else f"-{patches}patches")


def load_study_config(path: str, overrides: list[str] | None = None) -> StudyConfig:
    """A study YAML plus ``--set`` overrides, validated before anything runs."""
    return build_section(StudyConfig, path=path, overrides=overrides or [])


def stage_patches(stages: tuple[StageConfig, ...], budget: Budget) -> list[int]:
    """Patches per stage under ``budget``: adversarial stages share ``gan_fraction`` of it and the
    others the rest, when a preset has both; a preset of one kind of stage spends all of it."""
    adversarial = [s.adversarial != "none" for s in stages]
    if all(adversarial) or not any(adversarial):
        shares = [1.0 / len(stages)] * len(stages)
    else:
        n_adv = sum(adversarial)
        shares = [budget.gan_fraction / n_adv if a else (1 - budget.gan_fraction) / (len(stages) - n_adv)
                  for a in adversarial]
    return [max(1, round(budget.patches * share)) for share in shares]


def generator_updates(stage: StageConfig, steps: int) -> int:
    """Generator updates of a stage that runs ``steps`` steps.

    The trainer counts one step per batch. A PSNR-oriented or ``gan`` stage updates the generator
    on every step; a ``wgan_gp`` stage (WGAN-VGG) runs a critic update on every step and a
    generator update only on steps where ``(step + 1) % critic_steps == 0``
    (vagan.training.trainer, ``_step``), i.e. ``floor(steps / critic_steps)`` of them.
    """
    return steps // stage.critic_steps if stage.adversarial == "wgan_gp" else steps


def check_generator_updates(preset: str, cfg: ExperimentConfig, budget: Budget) -> None:
    """Refuse a budget under which a stage of ``preset`` gives its generator fewer than
    ``budget.min_generator_updates`` updates (``cfg`` already :func:`budgeted`)."""
    for i, stage in enumerate(cfg.stages):
        updates = generator_updates(stage, stage.max_steps or 0)
        if updates < budget.min_generator_updates:
            how = f"{stage.max_steps} steps of {stage.batch_size}"
            if stage.adversarial == "wgan_gp" and stage.critic_steps > 1:
                how += f", one generator update per {stage.critic_steps} critic steps"
            raise ConfigError(
                f"budget: preset {preset!r}, stage {i} ({stage.name!r}) would get {updates} generator updates "
                f"({how}), fewer than budget.min_generator_updates = {budget.min_generator_updates}; raise "
                "budget.patches" + (" or budget.gan_fraction" if len(cfg.stages) > 1 else "")
                + ", or lower budget.min_generator_updates")


def budgeted(cfg: ExperimentConfig, budget: Budget) -> dict[str, int]:
    """``stages.i.max_steps`` and ``stages.i.epochs`` that make ``cfg`` see the budget's patches:
    steps = ceil(patches / batch size); epochs high enough never to end a stage first."""
    values = {}
    for i, (stage, patches) in enumerate(zip(cfg.stages, stage_patches(cfg.stages, budget))):
        steps = math.ceil(patches / stage.batch_size)
        values[f"stages.{i}.max_steps"] = steps
        values[f"stages.{i}.epochs"] = steps  # every epoch has at least one batch
    return values
