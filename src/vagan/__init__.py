"""vagan: Visual Attention GAN for low-dose CT denoising (Du et al.)."""

__version__ = "0.1.0"
