"""What an evaluation runs on: the methods of a config loaded, the test slices, leakage notes, the FID net."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vagan.data.patches import SlicePair
from vagan.errors import ConfigError, InputDataError
from vagan.evaluation.eval_config import EvaluationConfig, MethodSpec
from vagan.io.mayo import DEFAULT_THICKNESS, DataSplit
from vagan.precision import Precision
from vagan.training.config import DataConfig

if TYPE_CHECKING:
    from vagan.evaluation.bm3d_calibration import BM3DCalibration
    from vagan.evaluation.feature_nets import FeatureNet
    from vagan.inference.denoise import Denoiser
    from vagan.inference.model_loading import TrainedModel

log = logging.getLogger(__name__)


@dataclass
class Method:
    """A method ready to run: its name, spec and denoiser (``None`` for ``ldct``/``ndct``)."""

    name: str
    spec: MethodSpec
    denoiser: Denoiser | None = None
    model: TrainedModel | None = None  # networks only
    precision: Precision | None = None  # the precision a network runs in
    run_dir: Path | None = None  # the run folder of a model, when it has one
    calibration: BM3DCalibration | None = None  # how a plain ``bm3d`` got its sigma

    @property
    def has_attention(self) -> bool:
        return self.model is not None and self.model.has_attention


@dataclass(frozen=True)
class EvaluationData:
    """The test slices and where they came from."""

    pairs: list[SlicePair]
    root: Path
    subset: str
    patients: tuple[str, ...]
    split: DataSplit | None
    split_seed: int
    thickness: str
    split_source: str

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return sorted({p.ndct.shape for p in self.pairs})

    def label(self, index: int) -> str:
        pair = self.pairs[index]
        return f"{pair.patient} slice {pair.index + 1}"


def load_methods(cfg: EvaluationConfig, device: torch.device, precision: Precision) -> list[Method]:
    """Load every model (a :class:`~vagan.errors.CheckpointError` for a folder that is not one) and name all methods."""
    from vagan.inference.bm3d_denoiser import BM3DDenoiser
    from vagan.inference.engine import network_denoiser
    from vagan.inference.model_loading import load_trained_model
    from vagan.training.run_folder import run_of_checkpoint

    methods = []
    for spec in cfg.methods:
        if spec.kind == "model":
            model = load_trained_model(spec.path, device)
            name = spec.name or model.name
            denoiser = network_denoiser(model, engine=cfg.engine, precision=precision, batch_size=cfg.batch_size,
                                        compile=cfg.compile, name=name)
            methods.append(Method(name, spec, denoiser, model, precision=denoiser.precision,
                                  run_dir=run_of_checkpoint(model.checkpoint)))
        elif spec.kind == "bm3d":
            methods.append(Method(spec.name or spec.default_name(), spec, bm3d_denoiser(spec)))
        else:
            methods.append(Method(spec.name or spec.default_name(), spec))
    seen: dict[str, int] = {}
    for m in methods:  # automatic names may clash (two runs of one preset): add the folder name
        seen[m.name] = seen.get(m.name, 0) + 1
    for m in methods:
        if seen[m.name] > 1 and not m.spec.name:
            m.name = f"{m.name} ({m.spec.path.name if m.spec.path else m.spec.spec})"
    names = [m.name for m in methods]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"methods: several methods are named {dup}; give them names (name=spec)")
    return methods


def bm3d_denoiser(spec: MethodSpec) -> Denoiser:
    """The BM3D of a ``bm3d*`` spec before any calibration: a fixed sigma, a noise autocorrelation
    file, or (plain ``bm3d``/``bm3d-psd``, until calibrated) sigma estimated per slice."""
    from vagan.inference.bm3d_denoiser import BM3DDenoiser
    from vagan.inference.noise_psd import load_autocorrelation

    if spec.psd_file is not None:
        return BM3DDenoiser(autocorrelation=load_autocorrelation(spec.psd_file))
    return BM3DDenoiser(spec.sigma_hu)


def load_test_set(cfg: EvaluationConfig) -> EvaluationData:
    """The test slice pairs: ``cfg``'s dataset and split, or the first model's (read without its weights)."""
    from vagan.data.paired import load_slice_pairs, patient_split
    from vagan.inference.model_loading import model_config
    from vagan.io.mayo import list_mayo_patients

    first_spec = next((m for m in cfg.methods if m.kind == "model"), None)
    first = model_config(first_spec.path).data if first_spec is not None else None
    source = f"model {first_spec.name or first_spec.spec} ({first_spec.path})" if first_spec is not None else "defaults"
    root = cfg.data_root or (first.root if first else None)
    if root is None:
        raise ConfigError("data_root is not set and no model names its dataset; give data_root (a dataset in the "
                          "Mayo layout, e.g. written by `vagan simulate`)")
    thickness = cfg.thickness or (first.thickness if first else DEFAULT_THICKNESS)
    split = cfg.split if cfg.split is not None else (first.split if first else DataConfig().split)
    seed = cfg.split_seed if cfg.split_seed is not None else (first.split_seed if first else 0)
    if cfg.split is not None:
        source = "the evaluation config"
    root = Path(root).expanduser()
    if cfg.subset == "all":
        patients = list_mayo_patients(root, thickness) if root.is_dir() else []
        split_used: DataSplit | None = None
        if not root.is_dir():
            raise InputDataError(f"dataset folder {root} does not exist; give data_root")
    else:
        subsets = patient_split(root, split, seed, thickness)
        if cfg.subset not in subsets:
            raise ConfigError(f"subset {cfg.subset!r} is not in the split; use one of {sorted(subsets)} or 'all'")
        patients = subsets[cfg.subset]
        split_used = split
    if not patients:
        raise InputDataError(
            f"{root}: the {cfg.subset!r} subset has no patients (split {split}, seed {seed}, source: {source}); "
            "give a split with test patients (e.g. split={train: [...], test: [P1]}), subset='all' for a folder of "
            "test patients only, or another data_root")
    pairs = load_slice_pairs(root, list(patients), thickness, cfg.max_slices)
    if not pairs:
        raise InputDataError(f"{root}: patients {patients} hold no slice pairs of thickness {thickness}")
    log.info("test set: %d slices of %d patient(s) from %s", len(pairs), len(patients), root)
    return EvaluationData(pairs, root, cfg.subset, tuple(patients), split_used, seed, thickness, source)


CALIBRATION_SLICES_PER_PATIENT = 2  # slices of each non-test patient that calibrate BM3D


def calibration_pairs(test: EvaluationData, count: int) -> list[SlicePair]:
    """``count`` LDCT/NDCT slices of patients outside the test subset (validation first, then training,
    :data:`CALIBRATION_SLICES_PER_PATIENT` of each), for
    :func:`~vagan.evaluation.bm3d_calibration.calibrate_bm3d`; empty when the split has none."""
    from vagan.data.paired import load_slice_pairs, patient_split
    from vagan.evaluation.bm3d_calibration import spread_slices

    if test.split is None:
        return []
    subsets = patient_split(test.root, test.split, test.split_seed, test.thickness)
    others = [p for p in (*subsets.get("val", []), *subsets.get("train", [])) if p not in test.patients]
    chosen: list[SlicePair] = []
    for patient in others[:math.ceil(count / CALIBRATION_SLICES_PER_PATIENT)]:  # one series in memory at a time
        pairs = spread_slices(load_slice_pairs(test.root, [patient], test.thickness), CALIBRATION_SLICES_PER_PATIENT)
        chosen.extend(SlicePair(p.ldct.copy(), p.ndct.copy(), p.patient, p.index, p.pixel_mm) for p in pairs)
    return chosen[:count]


def calibrate_bm3d_methods(methods: Sequence[Method], test: EvaluationData, count: int) -> list[str]:
    """Give every plain ``bm3d`` a sigma, and every plain ``bm3d-psd`` a noise autocorrelation,
    calibrated on ``count`` non-test pairs; notes for the report."""
    from vagan.evaluation.bm3d_calibration import calibrate_bm3d, calibrate_bm3d_psd
    from vagan.inference.bm3d_denoiser import BM3DDenoiser

    plain = [m for m in methods if m.spec.kind == "bm3d" and m.spec.sigma_hu is None and m.spec.psd_file is None]
    if not plain:
        return []
    pairs = calibration_pairs(test, count)
    if not pairs:
        note = ("BM3D: no LDCT/NDCT pairs outside the test set to calibrate its noise on, so sigma is estimated per "
                "slice by a white-noise wavelet estimator, which reads CT noise too low (BM3D is then too weak); "
                "give a split with training or validation patients, bm3d:SIGMA_HU or bm3d-psd:FILE.")
        log.warning("%s", note)
        return [note]
    for psd in (False, True):
        chosen = [m for m in plain if m.spec.psd == psd]
        if not chosen:
            continue
        calibration = calibrate_bm3d_psd(pairs) if psd else calibrate_bm3d(pairs)
        log.info("%s: %s", "BM3D-PSD" if psd else "BM3D", calibration.describe())
        for method in chosen:
            method.denoiser = BM3DDenoiser(sigma_hu=None if psd else calibration.sigma_hu,
                                           autocorrelation=calibration.autocorrelation)
            method.calibration = calibration
    return []


BM3D_PSD_FILE = "bm3d_psd_autocorrelation.npy"


def save_bm3d_psd(folder: Path, methods: Sequence[Method]) -> None:
    """Write the calibrated BM3D-PSD noise autocorrelation (HU^2) for ``vagan denoise --model bm3d-psd:FILE``."""
    from vagan.inference.noise_psd import save_autocorrelation

    for method in methods:
        if method.calibration is not None and method.calibration.autocorrelation is not None:
            save_autocorrelation(folder / BM3D_PSD_FILE, method.calibration.autocorrelation)
            return


def leakage_notes(test: EvaluationData, models: Sequence[TrainedModel]) -> list[str]:
    """Warnings for models whose training/validation patients are among the test patients."""
    from vagan.data.paired import patient_split

    notes = []
    for model in models:
        d = model.config.data
        if d.root is None or Path(d.root).expanduser().resolve() != test.root.resolve():
            notes.append(f"{model.name} was trained on another dataset folder ({d.root}); patient overlap with "
                         f"the test set was not checked.")
            continue
        try:
            subsets = patient_split(test.root, d.split, d.split_seed, d.thickness)
        except (InputDataError, ConfigError) as err:
            notes.append(f"{model.name}: its training split cannot be rebuilt ({err}); overlap not checked.")
            continue
        seen = sorted(set(test.patients) & (set(subsets.get("train", [])) | set(subsets.get("val", []))))
        if seen:
            notes.append(f"WARNING: {model.name} was trained or validated on test patients {seen}; its scores are "
                         "optimistic.")
    for note in notes:
        log.warning("%s", note)
    return notes


def build_fid_net(cfg: EvaluationConfig) -> FeatureNet | None:
    """The FID :class:`~vagan.evaluation.feature_nets.FeatureNet`, or ``None`` for ``fid_net='none'``."""
    from vagan.evaluation.feature_nets import build_feature_net

    if cfg.fid_net == "none":
        return None
    if cfg.fid_net == "vgg19":
        from vagan.models.vgg import VGG19Features

        module = VGG19Features.from_pretrained(cfg.fid_weights, layer=cfg.fid_vgg_layer)
        return build_feature_net("vgg19", module=module, name=f"vgg19-imagenet({cfg.fid_vgg_layer})")
    weights = Path(cfg.fid_weights) if cfg.fid_weights else None
    return build_feature_net(cfg.fid_net, weights_path=weights, seed=cfg.fid_seed)


