"""segcvae: conditional generative models for semantic segmentation (Sohn, Lee & Yan, 2015)."""

__version__ = "0.1.0"
