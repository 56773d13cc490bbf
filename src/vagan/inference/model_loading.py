"""Turn a trained run or checkpoint folder into a ready generator for inference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vagan.errors import CheckpointError, ConfigError
from vagan.io.windowing import HURange
from vagan.models.vagan_generator import AttentiveGenerator
from vagan.training.build import build_generator
from vagan.training.checkpoint import load_checkpoint, load_module_state, read_meta
from vagan.training.config import ExperimentConfig, config_from_dict
from vagan.training.run_folder import FINAL, final_checkpoint, run_of_checkpoint


@dataclass
class TrainedModel:
    """A generator with what is needed to feed it: its HU range and where it came from."""

    generator: torch.nn.Module
    config: ExperimentConfig
    checkpoint: Path
    stage: str
    notice: str = ""  # e.g. a shipped model's "trained on simulated data; not for diagnostic use"
    steps: int | None = None  # optimiser steps its stage took (None: not recorded)
    pixel_mm: tuple[float, float] | None = None  # pixel sizes of its training patches (None: not recorded)

    @property
    def name(self) -> str:
        return f"{self.config.preset}/{self.stage}"

    @property
    def label(self) -> str:
        """The name a user knows the model by: the folder they gave (a shipped model's name, a run's or a
        checkpoint folder's name); a checkpoint of a run other than its final one is ``RUN/STAGE[/NAME]``."""
        checkpoint = Path(self.checkpoint).resolve()
        run = run_of_checkpoint(checkpoint)
        if run is None:
            return checkpoint.name
        try:
            if final_checkpoint(run).resolve() == checkpoint:
                return run.name
        except CheckpointError:
            pass
        stage = checkpoint.parent.name
        return f"{run.name}/{stage}" if checkpoint.name == FINAL else f"{run.name}/{stage}/{checkpoint.name}"

    @property
    def hu_range(self) -> HURange:
        return self.config.data.hu_range

    @property
    def has_attention(self) -> bool:
        """Whether the generator has an attentive block, so that its output carries the maps M_t."""
        return isinstance(self.generator, AttentiveGenerator) and self.generator.use_attention

    @property
    def device(self) -> torch.device:
        """Where the generator's weights are."""
        return next(self.generator.parameters()).device


def _stored_config(ckpt_path: Path, meta: dict) -> ExperimentConfig:
    try:
        return config_from_dict(meta["config"])
    except (KeyError, TypeError, ConfigError) as err:
        raise CheckpointError(f"{ckpt_path}: the stored config is missing or invalid ({err})") from None


def model_config(path: Path) -> ExperimentConfig:
    """The config of a checkpoint or run folder's model, read without its weights."""
    ckpt_path = final_checkpoint(path)
    return _stored_config(ckpt_path, read_meta(ckpt_path))


def load_trained_model(path: Path, device: torch.device | str = "cpu") -> TrainedModel:
    """Load the generator of a checkpoint or run folder, in eval mode on ``device``."""
    ckpt_path = final_checkpoint(path)
    ckpt = load_checkpoint(ckpt_path)
    config = _stored_config(ckpt_path, ckpt.meta)
    generator = build_generator(config.model)
    load_module_state(generator, ckpt, "generator")
    generator.to(device).eval()
    progress = ckpt.meta.get("progress")
    steps = progress.get("step") if isinstance(progress, dict) else None
    return TrainedModel(generator=generator, config=config, checkpoint=ckpt_path, stage=str(ckpt.meta.get("stage")),
                        notice=str(ckpt.meta.get("notice", "")),
                        steps=steps if isinstance(steps, int) and not isinstance(steps, bool) else None,
                        pixel_mm=_pixel_range(ckpt.meta))


def _pixel_range(meta: dict) -> tuple[float, float] | None:
    """The ``training_data.pixel_mm`` a checkpoint recorded, if it is a sane ``[lo, hi]``."""
    data = meta.get("training_data")
    value = data.get("pixel_mm") if isinstance(data, dict) else None
    if (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                            for v in value) and 0 < value[0] <= value[1] < 100):
        return float(value[0]), float(value[1])
    return None
