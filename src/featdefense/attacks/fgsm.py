"""FGSM (Goodfellow et al. 2014): x* = clip[0,1](x + eps * sign(grad_x CE(f(x), y))), CE as attacks.loss computes it."""
import torch

from . import Attack
from .loss import cross_entropy


class FGSM:
    def __init__(self, model, epsilon: float = 0.2):
        self.model, self.epsilon = model, epsilon

    def forward(self, images: torch.Tensor, labels: torch.Tensor, generator=None) -> torch.Tensor:
        x = images.detach().clone().requires_grad_(True)
        loss = cross_entropy(self.model(x), labels)
        (grad,) = torch.autograd.grad(loss, x)
        return (images + self.epsilon * grad.sign()).clamp(0, 1).detach()

    __call__ = forward


ATTACK = Attack(
    name="fgsm", label="FGSM", build=FGSM, order=10,
    description="one signed gradient step of size epsilon (the paper's first attack); the example of an attack "
                "module (docs/add-an-attack.md)",
    schema={"type": "object", "additionalProperties": False, "required": ["epsilon"],
            "properties": {"epsilon": {"$ref": "#/$defs/epsilon"}}})
