"""Task-based image quality (docs/quality.md): noise power spectra, task transfer functions,
CT-number accuracy and model observers for low-contrast detectability."""
