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

from vagan.errors import ConfigError, InputDataError, VaganError
from vagan.inference.denoise import Denoised, Denoiser
from vagan.io.atomic import atomic_dir, check_output, check_outputs_apart
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
        raise VaganError(f"input {input_path} is {in_kind} but output {output_path} would be {out_kind}; "
                         "write the same kind (a folder for DICOM, .nii/.nii.gz, .npy)")
    return in_kind


def write_attention_maps(maps: np.ndarray, folder: Path, overwrite: bool = False) -> Path:
    """M_T maps ``(Z, H, W)`` in [0, 1] as ``attention.npy`` plus one PNG per slice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with atomic_dir(folder, "attention-maps", overwrite=overwrite) as tmp:
        np.save(tmp / "attention.npy", maps.astype(np.float32))
        for z, image in enumerate(maps):
            plt.imsave(tmp / f"attention_{z + 1:04d}.png", image, cmap="magma", vmin=0.0, vmax=1.0)
    return folder


def check_denoise_outputs(input_path: Path, output_path: Path, attention_dir: Path | None, overwrite: bool,
                          inputs: Sequence[Path] = ()) -> None:
    """Every check of the outputs before any work: kinds, overlap with the inputs (``input_path`` and
    e.g. the model folder) and with each other, existence, ownership and permission."""
    if not Path(input_path).exists():
        raise InputDataError(f"{input_path}: does not exist; expected a DICOM series folder, .nii/.nii.gz or .npy")
    kind = _check_kinds(input_path, output_path)
    every_input = (input_path, *inputs)
    if attention_dir is not None:
        check_outputs_apart([output_path, attention_dir])
    check_output(output_path, overwrite, every_input, kind="dicom-series" if kind == "dicom" else None)
    if attention_dir is not None:
        check_output(attention_dir, overwrite, every_input, kind="attention-maps")


def denoise_path(denoiser: Denoiser, input_path: Path, output_path: Path, *, overwrite: bool = False,
                 attention_dir: Path | None = None, progress: bool = True, inputs: Sequence[Path] = ()) -> DenoiseReport:
    """Read ``input_path``, denoise every slice with ``denoiser``, write ``output_path`` of the same kind.

    ``inputs`` are further paths the command reads (the model), which no output may overlap.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    attention_dir = Path(attention_dir) if attention_dir is not None else None
    if attention_dir is not None and not denoiser.has_attention:
        raise ConfigError(f"--attention-out: {denoiser.name} has no attention block, so there are no maps to write")
    check_denoise_outputs(input_path, output_path, attention_dir, overwrite, inputs)
    volume: CTVolume = read_volume(input_path)  # validated by its reader
    with tqdm(total=volume.hu.shape[0], desc=f"denoise {denoiser.name}", unit="slice", disable=not progress, dynamic_ncols=True) as bar:
        try:
            result: Denoised = denoiser(volume.hu, progress=bar.update, keep_attention=attention_dir is not None)
        except ValueError as err:  # e.g. slices smaller than a network's receptive field
            raise InputDataError(f"{input_path}: cannot denoise slices of {volume.hu.shape[1:]} with {denoiser.name}: "
                                 f"{err}") from None
    description = f"vagan {denoiser.name} denoised"
    write_volume(output_path, CTVolume(hu=result.hu, pixel_spacing_mm=volume.pixel_spacing_mm,
                                       slice_positions_mm=volume.slice_positions_mm, orientation=volume.orientation,
                                       slice_thickness_mm=volume.slice_thickness_mm, headers=volume.headers,
                                       source=volume.source),
                 like=volume, series_description=description[:64], overwrite=overwrite,
                 derivation_description=f"Denoised by vagan ({denoiser.name}) from {input_path.name}"[:1024])
    written_attention = None
    if attention_dir is not None and result.attention is not None:
        written_attention = write_attention_maps(result.attention, attention_dir, overwrite)
    return DenoiseReport(output=output_path, slices=result.hu.shape[0], shape=tuple(result.hu.shape[1:]),
                         attention_dir=written_attention, skipped=volume.skipped)
