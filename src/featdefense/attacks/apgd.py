"""APGD-CE (Croce & Hein 2020) from the Adversarial Robustness Toolbox: a second, independent white-box
attack with a per-image step-size schedule (no step size to tune), L-infinity, untargeted.

ART draws its random start from NumPy's global generator, which the stage seeds (training.setup).
"""
import numpy as np
import torch
from torch import nn


class APGD:
    def __init__(self, model, epsilon: float = 0.2, steps: int = 100, restarts: int = 1, num_classes: int = 10):
        self.model, self.epsilon, self.steps = model, epsilon, steps
        self.restarts, self.num_classes = restarts, num_classes

    def forward(self, images: torch.Tensor, labels: torch.Tensor, generator=None) -> torch.Tensor:
        from art.attacks.evasion import AutoProjectedGradientDescent
        from art.estimators.classification import PyTorchClassifier

        device = images.device
        classifier = PyTorchClassifier(
            model=self.model, loss=nn.CrossEntropyLoss(), input_shape=tuple(images.shape[1:]),
            nb_classes=self.num_classes, clip_values=(0.0, 1.0), device_type="gpu" if device.type == "cuda" else "cpu")
        attack = AutoProjectedGradientDescent(
            classifier, norm=np.inf, eps=self.epsilon, eps_step=2 * self.epsilon,  # APGD's first step: 2 eps
            max_iter=self.steps, targeted=False, nb_random_init=self.restarts, batch_size=len(images),
            loss_type="cross_entropy", verbose=False)
        x_adv = attack.generate(images.detach().cpu().numpy(), y=labels.cpu().numpy())
        return torch.from_numpy(x_adv).to(device)

    __call__ = forward
