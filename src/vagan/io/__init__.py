"""Reading and writing CT data: DICOM series, NIfTI, NumPy, the Mayo 2016 layout."""

from vagan.io.readers import detect_kind, read_volume, write_volume
from vagan.io.volume import CTVolume

__all__ = ["CTVolume", "detect_kind", "read_volume", "write_volume"]
