"""Reading and writing CT data: DICOM series, NIfTI, NumPy, the Mayo 2016 layout."""
