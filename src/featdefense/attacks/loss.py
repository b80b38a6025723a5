"""The attacks' loss: cross-entropy (the paper's), computed so that a confident model keeps its gradient.

F.cross_entropy forms the true class's logit gradient as p_y - 1. Once the other classes' probabilities sum
below float32's resolution (a margin of about 17 logits) that is exactly 0 and the true class drops out of
the gradient, leaving only the other classes' tiny terms to steer the sign (36.8% of the cpu
configuration's MNIST test images were there); float64 only moves that edge to about 37 logits, since
p_y - 1 = 1 - 1 - sum p_j still cancels. Here the same function is written as the log-sum-exp of the
margins z_j - z_y over the other classes and a constant 0 for the true one: the true logit's gradient is
then -(sum of the other classes' probabilities), formed without subtracting from 1, and it vanishes only
where those underflow float32 (a margin of about 87 logits).
FGSM and PGD take this loss's sign, so nothing else about them changes; its value is cross-entropy's. AutoAttack's
APGD-CE takes it too (attacks/autoattack.py), in place of the library's float32 F.cross_entropy."""
import torch


def cross_entropy_per_image(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Each image's cross-entropy -log softmax(logits)_y, keeping its gradient (AutoAttack's APGD-CE takes
    it per image)."""
    true = torch.nn.functional.one_hot(labels, logits.shape[1]).bool()
    # z_j - z_y, the true class's entry a constant 0 (no gradient formed through it)
    margins = (logits - logits.gather(1, labels[:, None])).masked_fill(true, 0.0)
    return torch.logsumexp(margins, dim=1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy -log softmax(logits)_y over the batch, as F.cross_entropy, keeping its gradient."""
    return cross_entropy_per_image(logits, labels).mean()
