"""NumPy ``.npy`` volumes: HU as float32 ``(Z, H, W)`` or one ``(H, W)`` slice, no sidecar.

A ``.npy`` file carries no geometry: reading gives ``pixel_spacing_mm`` and slice spacing of
1.0 mm unless the caller passes them, axial orientation and no positions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vagan.errors import MACHINE_FAULTS, InputDataError
from vagan.io.atomic import atomic_file
from vagan.io.volume import DEFAULT_SPACING_MM, CTVolume

log = logging.getLogger(__name__)


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` of a ``.npy`` file, read from its header alone (no data).

    A ``ValueError`` for a file that is not ``.npy``; an ``InputDataError`` where the header promises
    more data than the file holds (a damaged or hostile header would otherwise allocate it all).
    """
    with Path(path).open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(handle)
        offset = handle.tell()
    if dtype.hasobject:
        raise ValueError("object arrays (pickles) are refused")
    needed = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize
    size = Path(path).stat().st_size
    if size < needed:
        raise InputDataError(f"{path}: its header claims an array of shape {tuple(shape)} {dtype} ({needed:,} bytes) "
                             f"but the file holds {size:,} bytes: truncated or corrupt")
    return tuple(shape), dtype, offset


def read_npy(
    path: Path,
    *,
    pixel_spacing_mm: tuple[float, float] = (DEFAULT_SPACING_MM, DEFAULT_SPACING_MM),
    slice_thickness_mm: float = DEFAULT_SPACING_MM,
) -> CTVolume:
    """Read HU from a ``.npy`` file (pickles refused); a 2-D array becomes one slice."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: NumPy file does not exist")
    try:
        npy_header(path)  # before any allocation
        data = np.load(path, allow_pickle=False)
    except (*MACHINE_FAULTS, InputDataError):
        raise
    except Exception as err:  # ValueError for pickles/bad headers, EOFError for truncation
        raise InputDataError(f"{path}: corrupt or unreadable .npy ({err.__class__.__name__}: {err})") from None
    if not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise InputDataError(f"{path}: array of dtype {data.dtype}; expected real HU values (float or integer)")
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise InputDataError(f"{path}: array of shape {data.shape}; expected (Z, H, W) or (H, W) HU")
    volume = CTVolume(
        hu=np.ascontiguousarray(data, dtype=np.float32),
        pixel_spacing_mm=(float(pixel_spacing_mm[0]), float(pixel_spacing_mm[1])),
        slice_thickness_mm=float(slice_thickness_mm),
        source=path,
    )
    return volume.validate()


def write_npy(path: Path, hu: np.ndarray | CTVolume, *, overwrite: bool = False) -> Path:
    """Write HU as float32 ``.npy`` (the array's own shape: ``(Z, H, W)`` or ``(H, W)``), atomically."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"NumPy output {path} must end in .npy")
    array = hu.hu if isinstance(hu, CTVolume) else np.asarray(hu)
    if array.ndim not in (2, 3):
        raise ValueError(f"HU array for {path} must be (Z, H, W) or (H, W), got shape {array.shape}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    CTVolume(hu=array if array.ndim == 3 else array[None], source=path).validate(check_scale=False)
    with atomic_file(path, overwrite=overwrite) as tmp, tmp.open("wb") as fh:
        # np.save's header, then the data through Python's file, not np.save's fwrite: a disk that fills or fails
        # mid-write then raises OSError(ENOSPC/EIO), where fwrite's error says only "N requested and M written"
        np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(array))
        fh.write(memoryview(array).cast("B"))
    log.debug("%s: wrote %s float32 HU", path, array.shape)
    return path
