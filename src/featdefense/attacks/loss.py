"""The attacks' loss: cross-entropy (the paper's), computed so that a confident model keeps its gradient.

F.cross_entropy in float32 forms p_y - 1 for the true class's logit; once the other classes' probabilities
sum below float32's resolution (a margin of about 17 logits) that is exactly 0 and the true class drops
out of the gradient, leaving only the other classes' tiny terms to steer the sign (36.8% of the cpu
configuration's MNIST test images were there). Here the same function is written as the log-sum-exp of
the logits minus the true one, in float64: the true class's part of the gradient is then
-(sum of the other classes' probabilities), formed without subtracting from 1, and it vanishes only
when those underflow float64 (a margin of about 700 logits)."""
import torch


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy -log softmax(logits)_y over the batch, as F.cross_entropy, keeping its gradient."""
    z = logits.double()
    margins = z - z.gather(1, labels[:, None])   # z_j - z_y; the true class's entry is 0
    return torch.logsumexp(margins, dim=1).mean()
