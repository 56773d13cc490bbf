"""Denoise a CT file or series on disk: DICOM in -> DICOM out (a new derived series), NIfTI, NumPy.

Inputs are never touched; the output (and the optional attention maps) are written atomically
and an existing output is only replaced with ``overwrite``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from vagan.errors import ConfigError, InputDataError, OutputError, VaganError
from vagan.inference.denoise import Denoised, Denoiser
from vagan.io.arrays import write_npy
from vagan.io.atomic import atomic_dir, check_free_space, check_output, check_outputs_apart
from vagan.io.ownership import enclosing_container
from vagan.io.readers import detect_kind, read_volume, write_volume
from vagan.io.volume import CTVolume

log = logging.getLogger(__name__)


@dataclass
class DenoiseReport:
    """What :func:`denoise_path` wrote."""

    output: Path
    slices: int
    shape: tuple[int, int]
    attention_dir: Path | None = None
    skipped: tuple[tuple[Path, str], ...] = ()  # input files that are not slices of the series, with the reason


def _check_kinds(input_path: Path, output_path: Path) -> str:
    in_kind = detect_kind(input_path)
    try:
        out_kind = detect_kind(output_path) if output_path.exists() or output_path.suffix else "dicom"
    except VaganError:
        out_kind = "unknown"
    if in_kind != out_kind:
        raise OutputError(f"input {input_path} is {in_kind} but output {output_path} would be {out_kind}; "
                         "write the same kind (a folder for DICOM, .nii/.nii.gz, .npy)")
    return in_kind


def write_attention_maps(maps: np.ndarray, folder: Path, overwrite: bool = False) -> Path:
    """M_T maps ``(Z, H, W)`` in [0, 1] as ``attention.npy`` plus one PNG per slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with atomic_dir(folder, "attention-maps", overwrite=overwrite) as tmp:
        write_npy(tmp / "attention.npy", maps.astype(np.float32))  # through Python's file: a full disk names its cause
        for z, image in enumerate(maps):
            plt.imsave(tmp / f"attention_{z + 1:04d}.png", image, cmap="magma", vmin=0.0, vmax=1.0)
    return folder


@dataclass(frozen=True)
class DenoiseJob:
    """What to read and where to write, checked once before any work (:meth:`checked`)."""

    input_path: Path
    output_path: Path
    attention_dir: Path | None = None
    overwrite: bool = False
    inputs: tuple[Path, ...] = ()  # further paths the command reads (the model), which no output may overlap
    notice: str = ""  # written into the output's DerivationDescription (a shipped model's "not for diagnostic use")

    @classmethod
    def checked(cls, input_path: Path, output_path: Path, attention_dir: Path | None = None, overwrite: bool = False,
                inputs: Sequence[Path] = ()) -> DenoiseJob:
        """Every check of the outputs before any work: kinds, overlap with the inputs (``input_path`` and
        e.g. the model folder) and with each other, existence, ownership and permission."""
        job = cls(Path(input_path), Path(output_path), Path(attention_dir) if attention_dir is not None else None,
                  overwrite, tuple(Path(p) for p in inputs))
        if not job.input_path.exists():
            raise InputDataError(f"{input_path}: does not exist; expected a DICOM series folder, .nii/.nii.gz or .npy")
        kind = _check_kinds(job.input_path, job.output_path)
        every_input = (job.input_path, *job.inputs)
        if job.attention_dir is not None:
            check_outputs_apart([job.output_path, job.attention_dir])
        check_output(job.output_path, overwrite, every_input, kind="dicom-series" if kind == "dicom" else None)
        if job.attention_dir is not None:
            check_output(job.attention_dir, overwrite, every_input, kind="attention-maps")
        for output in (job.output_path, job.attention_dir):
            inside = enclosing_container(output) if output is not None else None
            if inside is not None:
                raise OutputError(f"{output} lies inside the vagan {inside[1]} {inside[0]}; writing there would change "
                                  "what its command made; write the output outside it")
        check_free_space(job.output_path, _input_bytes(job.input_path))  # the same kind: about the same size
        if job.attention_dir is not None:
            check_free_space(job.attention_dir, 2 * _input_bytes(job.input_path))
        return job


def _input_bytes(path: Path) -> int:
    """Bytes of a series folder's files, or of one file: about what the denoised output of the same kind
    takes (a floor: a compressed DICOM input is written uncompressed)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size



def _is_2d_npy(path: Path) -> bool:
    from vagan.io.arrays import npy_header

    return Path(path).is_file() and detect_kind(path) == "npy" and len(npy_header(path)[0]) == 2


PIXEL_RANGE_SLACK = 1.25
"""How far beyond its training pixel sizes a model is used before :func:`warn_outside_training_range` speaks."""


def warn_outside_training_range(model: object, pixel_mm: float, source: Path) -> bool:
    """Warn (once per input) when ``pixel_mm`` lies well outside the pixel sizes ``model`` trained on.

    A network learns noise grain and anatomy at its training pixel size: on much finer pixels the noise
    looks coarser than any it saw and is left in, on much coarser ones fine detail looks like noise.
    Returns whether it warned; models that recorded no range (shipped phantom models, older runs) pass.
    """
    trained = getattr(model, "pixel_mm", None)
    if trained is None or not pixel_mm > 0:
        return False
    lo, hi = trained
    if lo / PIXEL_RANGE_SLACK <= pixel_mm <= hi * PIXEL_RANGE_SLACK:
        return False
    log.warning("%s: its %.2f mm pixels lie outside the %.2f-%.2f mm pixels %s was trained on; the result may keep "
                "noise or lose fine detail. Check it, or train with data.resample_mm covering %.2f mm", source,
                pixel_mm, lo, hi, getattr(model, "name", "the model"), pixel_mm)
    return True


def denoise_path(denoiser: Denoiser, job: DenoiseJob, progress: bool = True) -> DenoiseReport:
    """Read ``job.input_path``, denoise every slice with ``denoiser``, write ``job.output_path`` of the same kind."""
    if job.attention_dir is not None and not denoiser.has_attention:
        raise ConfigError(f"--attention-out: {denoiser.name} has no attention block, so there are no maps to write")
    volume: CTVolume = read_volume(job.input_path)  # validated by its reader
    if detect_kind(job.input_path) != "npy":  # a .npy carries no pixel size
        warn_outside_training_range(getattr(denoiser, "model", None), volume.pixel_spacing_mm[0], job.input_path)
    with tqdm(total=volume.hu.shape[0], desc=f"denoise {denoiser.name}", unit="slice", disable=not progress,
              dynamic_ncols=True) as bar:
        try:
            result: Denoised = denoiser(volume.hu, progress=bar.update, keep_attention=job.attention_dir is not None)
        except InputDataError as err:  # e.g. slices smaller than a network's receptive field
            raise InputDataError(f"{job.input_path}: {err}") from None
    denoised: CTVolume | np.ndarray = volume.with_hu(result.hu)
    if _is_2d_npy(job.input_path) and detect_kind(job.output_path) == "npy":
        denoised = result.hu[0]  # a 2-D .npy in, a 2-D .npy out (a .npy carries no geometry to keep)
    write_volume(job.output_path, denoised, series_description=f"vagan {denoiser.name} denoised",
                 model_name=getattr(getattr(denoiser, "model", None), "label", None) or denoiser.name,
                 overwrite=job.overwrite,
                 derivation_description=f"Denoised by vagan ({denoiser.name}) from {job.input_path.name}"
                 + (f"; {job.notice}" if job.notice else ""))
    written_attention = None
    if job.attention_dir is not None and result.attention is not None:
        written_attention = write_attention_maps(result.attention, job.attention_dir, job.overwrite)
    return DenoiseReport(output=job.output_path, slices=result.hu.shape[0], shape=tuple(result.hu.shape[1:]),
                         attention_dir=written_attention, skipped=volume.skipped)
