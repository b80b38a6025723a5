"""PGD (Madry et al. 2017): iterated FGSM steps of size kappa, projected onto the eps-ball and [0, 1]."""
import torch
import torch.nn.functional as F


def project(x_adv: torch.Tensor, x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """The nearest point of the L-infinity eps-ball around x that is also an image in [0, 1]."""
    return torch.min(torch.max(x_adv, x - epsilon), x + epsilon).clamp(0, 1)


class PGD:
    def __init__(self, model, epsilon: float = 0.2, steps: int = 100, step_size: float = 0.1,
                 random_start: bool = True):
        self.model, self.epsilon, self.steps = model, epsilon, steps
        self.step_size, self.random_start = step_size, random_start

    def forward(self, images: torch.Tensor, labels: torch.Tensor, generator=None) -> torch.Tensor:
        x = images.detach()
        x_adv = x.clone()
        if self.random_start:
            noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x_adv = project(x + (2 * noise - 1) * self.epsilon, x, self.epsilon)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = F.cross_entropy(self.model(x_adv), labels)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = project(x_adv.detach() + self.step_size * grad.sign(), x, self.epsilon)
        return x_adv.detach()

    __call__ = forward
