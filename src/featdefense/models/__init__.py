"""The paper's networks: the target LeNet, the denoising autoencoder, and the VGG-16 loss network."""
from .autoencoder import Denoiser
from .lenet import Target
from .vgg import LossNetwork

__all__ = ["Target", "Denoiser", "LossNetwork"]
