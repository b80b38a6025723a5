"""PGD (Madry et al. 2017): iterated FGSM steps of size kappa, projected onto the eps-ball and [0, 1],
on cross-entropy as attacks.loss computes it (a confident model keeps its gradient).

`best=False` returns the last iterate (the paper's attack files, Madry's training). `best=True` is an
evaluation's accounting: an image counts as broken if any iterate fooled the model, so where the last
iterate does not and an earlier one did, that earlier one (the latest such) is returned."""
import torch

from . import Attack
from .loss import cross_entropy


def project(x_adv: torch.Tensor, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The nearest point of the L-infinity eps-ball around x that is also an image in [0, 1]."""
    return torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp(0, 1)


class PGD:
    def __init__(self, model, epsilon: float = 0.2, steps: int = 100, step_size: float = 0.1,
                 random_start: bool = True, best: bool = False):
        self.model, self.epsilon, self.steps = model, epsilon, steps
        self.step_size, self.random_start, self.best = step_size, random_start, best

    def forward(self, images: torch.Tensor, labels: torch.Tensor, generator=None) -> torch.Tensor:
        x = images.detach()
        x_adv = x.clone()
        if self.random_start:
            noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x_adv = project(x + (2 * noise - 1) * self.epsilon, x, self.epsilon)
        fooling = x_adv.clone()  # per image, the latest iterate that fooled the model (with best)
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            logits = self.model(x_adv)
            loss = cross_entropy(logits, labels)
            (grad,) = torch.autograd.grad(loss, x_adv)
            if self.best:
                wrong = logits.detach().argmax(1) != labels
                fooling[wrong] = x_adv.detach()[wrong]
                fooled |= wrong
                if fooled.all():  # every image already broken: more steps change no verdict
                    break
            x_adv = project(x_adv.detach() + self.step_size * grad.sign(), x, self.epsilon)
        x_adv = x_adv.detach()
        if self.best:
            with torch.no_grad():
                keep = fooled & (self.model(x_adv).argmax(1) == labels)  # the last iterate is not, one was
            x_adv[keep] = fooling[keep]
        return x_adv

    __call__ = forward


ATTACK = Attack(
    name="pgd", label="PGD", build=PGD, iterative=True, order=20,
    description="iterated FGSM steps projected onto the epsilon-ball (the paper's PGD-100); the white-box "
                "cascade is built on it (whitebox.attack)",
    schema={"type": "object", "additionalProperties": False, "required": ["epsilon", "steps", "step_size",
                                                                          "random_start"],
            "properties": {"epsilon": {"$ref": "#/$defs/epsilon"}, "steps": {"$ref": "#/$defs/positive_int"},
                           "step_size": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                           "random_start": {"type": "boolean"}}})
