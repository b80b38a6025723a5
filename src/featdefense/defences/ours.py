"""ours: the paper's denoising autoencoder with the VGG-16 feature loss, trained by train_denoiser
(params sections `feature_loss` and `denoiser`, the paper's method)."""
from ..models.autoencoder import Denoiser
from . import Defence

DEFENCE = Defence(
    name="ours", label="ours (feature-loss denoiser)", kind="preprocessor", build=lambda _: Denoiser(), trained_by="train_denoiser", paper_key="ours", order=30,
    description="the paper's autoencoder trained with the VGG-16 feature loss")
