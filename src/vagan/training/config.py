"""Training configuration: frozen dataclasses loaded from YAML, validated once.

A config file names a preset's model, data, and one or two stages (PSNR-oriented, then GAN).
Unknown keys and wrong types raise :class:`vagan.errors.ConfigError` naming the key, with a
"did you mean" hint. ``--set key.sub=value`` overrides are applied before validation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from vagan.config_schema import Section, bounded, parse_overrides, read_yaml_mapping
from vagan.config_schema import build_dataclass as _build
from vagan.config_schema import did_you_mean as _did_you_mean
from vagan.config_schema import merge as _merge
from vagan.data.attention_target import AttentionMode
from vagan.errors import ConfigError
from vagan.io.mayo import DEFAULT_THICKNESS, DataSplit
from vagan.io.windowing import HU_MAX, HU_MIN, HURange
from vagan.losses.adversarial import PAPER_GAMMA, GanMode
from vagan.losses.multiscale import PAPER_MULTISCALE_WEIGHTS
from vagan.models.registry import DiscriminatorKind, GeneratorKind
from vagan.precision import PrecisionName, upgrade_amp

PRESETS: tuple[str, ...] = ("g_psnr", "ga_psnr", "g_gan", "ga_gan", "vagan", "red_cnn", "wgan_vgg")


@dataclass(frozen=True)
class ModelConfig(Section):
    """Which networks a preset trains, and their widths."""

    generator: GeneratorKind = "vagan"
    generator_features: int = bounded(64, ge=1)
    attention_features: int = bounded(32, ge=1)
    attention_steps: int = bounded(4, ge=1)  # T of the attentive block
    discriminator: DiscriminatorKind | Literal["none"] = "attentive"
    discriminator_features: int = bounded(64, ge=1)


@dataclass(frozen=True)
class MixSource(Section):
    """A further training source mixed into ``data.root``'s training patients, e.g. phantom pairs
    beside real ones (docs/design.md, "Mixed training sets"). Validation and test stay on ``data.root``."""

    root: str = ""
    share: float = bounded(0.25, gt=0, lt=1)  # fraction of each epoch's training patches drawn from here
    thickness: str = "any"
    patients: tuple[str, ...] | None = None  # None: every patient of ``root``
    # fresh noise at these doses from the source's noise pools, as data.train_doses; None: its stored LDCT
    train_doses: tuple[float, ...] | None = bounded(None, gt=0, le=1)

    def check(self) -> None:
        if not self.root:
            raise ConfigError("root: the folder of a paired dataset to mix in")
        if self.patients is not None and not self.patients:
            raise ConfigError("patients: give at least one patient, or null for all of them")


@dataclass(frozen=True)
class DataConfig(Section):
    """Paired LDCT/NDCT data in the Mayo 2016 layout and how patches are drawn from it."""

    root: str | None = None
    thickness: str = DEFAULT_THICKNESS
    split: DataSplit = field(default_factory=DataSplit)
    split_seed: int = bounded(0, ge=0)  # numpy seeds are non-negative
    patch_size: int = bounded(64, ge=16)  # and a multiple of 4 (checked with the other rules)
    patches_per_slice: int = bounded(35, ge=1)  # the paper: 140,000 patches from 4,000 slices
    augment: bool = True
    attention_mode: AttentionMode = "signed"
    hu_min: float = HU_MIN  # the HU mapped to 0 and 1 of the network's units
    hu_max: float = HU_MAX
    val_slices: int = bounded(16, ge=0)  # 0: no validation
    max_train_slices: int | None = bounded(None, ge=1)
    # fresh noise every epoch at these dose fractions, mixed from each training series' noise pool
    # (vagan.data.noise_pool; `vagan simulate --from ... --set noise_pool=true`); None: the stored LDCT
    train_doses: tuple[float, ...] | None = bounded(None, gt=0, le=1)
    # augmentation: each patch resampled to a pixel size drawn log-uniformly from [smallest, largest]
    # mm (e.g. [0.6, 1.1], clinical abdominal series), for scanners and fields of view the data lack;
    # None: the data's own pixel size
    resample_mm: tuple[float, float] | None = bounded(None, gt=0, le=5)
    mix: tuple[MixSource, ...] = ()  # further training sources and their shares of the patches

    @property
    def hu_range(self) -> HURange:
        """The map between HU and the network's [0, 1] units."""
        return HURange(self.hu_min, self.hu_max)

    def check(self) -> None:
        if self.patch_size % 4:
            raise ConfigError(f"patch_size: must be a multiple of 4, got {self.patch_size}")
        if self.hu_max <= self.hu_min:
            raise ConfigError(f"hu_max: must exceed hu_min ({self.hu_min:g}), got {self.hu_max:g}")
        if self.resample_mm is not None and self.resample_mm[0] > self.resample_mm[1]:
            raise ConfigError(f"resample_mm: expected [smallest, largest] pixel size in mm, got {list(self.resample_mm)}")
        if self.train_doses is not None and not self.train_doses:
            raise ConfigError("train_doses: give at least one dose fraction, e.g. [0.1, 0.25, 0.5], or null for the "
                              "stored LDCT")
        if sum(m.share for m in self.mix) >= 1:
            raise ConfigError(f"mix: the shares add up to {sum(m.share for m in self.mix):g}; data.root needs the rest "
                              "(the shares must add up to less than 1)")


@dataclass(frozen=True)
class LossWeights(Section):
    """Weights of the terms of eqs. (6)-(11); zero switches a term off."""

    mse: float = bounded(0.0, ge=0)  # plain pixel MSE (RED-CNN, WGAN-VGG)
    ms: float = bounded(0.0, ge=0)  # L_MS, eq. (8)
    ab: float = bounded(0.0, ge=0)  # L_AB, eq. (6)
    gan: float = bounded(0.0, ge=0)  # L_GAN, eqs. (4) and (7)
    pcep: float = bounded(0.0, ge=0)  # L_Pcep, eq. (9)
    d_attention: float = bounded(PAPER_GAMMA, ge=0)  # gamma of eq. (10), weight of L_A (eq. 11)
    gradient_penalty: float = bounded(10.0, ge=0)  # WGAN-GP lambda
    ms_scales: tuple[float, float, float] = bounded(PAPER_MULTISCALE_WEIGHTS, ge=0)  # lambda_i of eq. (8), scales 1/4, 1/2, 1
    ab_steps: tuple[float, ...] | None = bounded(None, ge=0)  # theta_t of eq. (6); None: 0.5^(T-t) = (0.125, 0.25, 0.5, 1) for T=4


@dataclass(frozen=True)
class StageConfig(Section):
    """One training stage: PSNR-oriented (no discriminator) or adversarial."""

    name: str = "psnr"
    adversarial: Literal["none", "gan", "wgan_gp"] = "none"
    epochs: int = bounded(20, ge=1)
    max_steps: int | None = bounded(None, ge=1)
    # wall-clock budget of the stage in this process: it ends (validated and saved as `final`) after the
    # step that reaches it, or at epochs/max_steps if those come first
    max_minutes: float | None = bounded(None, gt=0)
    lr: float = bounded(2e-4, gt=0)
    d_lr: float | None = bounded(None, gt=0)
    # "cosine": the learning rates fall from lr (d_lr) to 1% of it along a half cosine over the stage's
    # planned steps (epochs or max_steps), a function of the step alone, so a resumed run repeats it;
    # "constant": the paper's
    lr_schedule: Literal["constant", "cosine"] = "constant"
    betas: tuple[float, float] = bounded((0.9, 0.999), ge=0, lt=1)  # Adam's
    batch_size: int = bounded(32, ge=1)
    init_from: str | None = None
    gan_mode: GanMode = "paper"
    critic_steps: int = bounded(1, ge=1)
    losses: LossWeights = field(default_factory=LossWeights)


@dataclass(frozen=True)
class TrainConfig(Section):
    """Everything outside the model and data: seeds, devices, logging, checkpoints."""

    seed: int = bounded(0, ge=0)  # numpy seeds are non-negative
    device: str = "auto"
    precision: PrecisionName = "auto"  # see vagan.precision
    num_workers: int = bounded(1, ge=0)  # 0: load batches in the training process
    log_every: int = bounded(10, ge=1)  # steps
    checkpoint_every: int = bounded(200, ge=1)  # steps
    perceptual: Literal["vgg19", "vgg19_random", "none"] = "vgg19"
    vgg_layer: str = "conv5_4"
    vgg_weights: str | None = None
    progress: bool = True
    # fine-tuning: the generator's starting weights from a checkpoint or run folder, or a shipped model's
    # name, for every stage without init_from (not on resume: a resumed stage has its own); None: fresh
    init_weights: str | None = None


@dataclass(frozen=True)
class ExperimentConfig(Section):
    """A whole preset: model, data, stages, training options."""

    preset: str = "vagan"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    stages: tuple[StageConfig, ...] = (StageConfig(),)
    train: TrainConfig = field(default_factory=TrainConfig)

    def stage(self, name: str) -> StageConfig:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise ConfigError(f"no stage {name!r} in preset {self.preset!r}; stages: {[s.name for s in self.stages]}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check(self) -> None:
        if not self.stages:
            raise ConfigError("stages: at least one stage is needed")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stages: names must be unique, got {names}")
        for i, stage in enumerate(self.stages):
            where = f"stages[{i}] ({stage.name})"
            if stage.init_from is not None and stage.init_from not in names[:i]:
                raise ConfigError(f"{where}.init_from: {stage.init_from!r} is not an earlier stage ({names[:i]})")
            if stage.adversarial != "none" and self.model.discriminator == "none":
                raise ConfigError(f"{where}: adversarial stage needs model.discriminator (it is 'none')")
            if stage.losses.ab_steps is not None and len(stage.losses.ab_steps) != self.model.attention_steps:
                raise ConfigError(f"{where}.losses.ab_steps: {len(stage.losses.ab_steps)} weights for "
                                  f"model.attention_steps = {self.model.attention_steps}")
            if stage.losses.ab > 0 and self.model.generator != "vagan":
                raise ConfigError(f"{where}.losses.ab: L_AB needs the attentive generator (model.generator: vagan)")

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """Configs written before the precision policy had ``train.amp`` (bf16 autocast on a GPU):
        ``amp: false`` becomes ``precision: fp32``, ``amp: true`` ``precision: auto``."""
        if isinstance(data.get("train"), dict):
            data = {**data, "train": upgrade_amp(data["train"])}
        return data


def _apply_stage_wildcard(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``stages.*.max_steps=5`` applies to every stage."""
    stages = overrides.get("stages")
    if isinstance(stages, dict) and "*" in stages:
        if not isinstance(data.get("stages"), list):
            raise ConfigError(f"stages.*: the config has no list of stages to apply it to (stages is "
                              f"{data.get('stages')!r})")
        star = stages.pop("*")
        for i in range(len(data["stages"])):
            specific = stages.pop(i, None) or stages.pop(str(i), None) or {}
            stages[i] = _merge(star, specific)  # a value for one stage wins over the one for every stage
    return overrides


def preset_path(name: str) -> Path:
    """Path of a preset shipped with vagan (``src/vagan/configs/<name>.yaml``)."""
    path = Path(str(resources.files("vagan") / "configs" / f"{name}.yaml"))
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}" + _did_you_mean(name, list(PRESETS)))
    return path


def load_config(source: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a config file (or a preset name) and apply ``key=value`` overrides."""
    path = Path(source)
    if not path.is_file():
        if str(source) in PRESETS or not path.suffix:
            path = preset_path(str(source))
        else:
            raise ConfigError(f"config file {source} not found; give a YAML file or a preset name ({', '.join(PRESETS)})")
    data = read_yaml_mapping(path)
    return config_from_dict(data, overrides)


def with_values(cfg: ExperimentConfig, values: dict[str, Any]) -> ExperimentConfig:
    """``cfg`` with dotted keys (``data.root``, ``stages.0.max_steps``) set to typed values and
    validated again. Values from typed command-line options go here, never through ``--set`` text:
    a path holding `` #`` or a folder named ``2016`` stays the string it is."""
    data = cfg.to_dict()
    data["stages"] = list(data["stages"])
    for key, value in values.items():
        node: Any = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any], overrides: list[str] | None = None) -> ExperimentConfig:
    """Build and validate an :class:`ExperimentConfig` from plain data (plus overrides)."""
    over = _apply_stage_wildcard(data, parse_overrides(overrides or []))
    merged = _merge(data, over)
    return _build(ExperimentConfig, merged, "")
