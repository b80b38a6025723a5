#!/usr/bin/env python3
"""How much of a target's test set saturates float32 cross-entropy, and what that does to FGSM.

usage: python scripts/saturation.py PROJECT [DATASET] [IMAGES]

On the first IMAGES test images of a built project (its data/prepared/<ds>.h5 and data/models/<ds>/target.pt):
the share whose log p_y is exactly 0 in float32, the logit margins' quantiles, and FGSM's accuracy at
attack.fgsm's epsilon with the gradient of (a) F.cross_entropy in float32, (b) F.cross_entropy in float64,
(c) featdefense.attacks.loss.cross_entropy (what the attacks use), (d) the logit margin max_j z_j - z_y.
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from featdefense.attacks.loss import cross_entropy
from featdefense import targets
from featdefense.training import load_split


def fgsm(model, x, y, eps, loss):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(model(x), y), x)
    return (x + eps * g.sign()).clamp(0, 1).detach()


def margin(z, y):
    other = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf"))
    return (other.max(1).values - z.gather(1, y[:, None])[:, 0]).sum()


def main(project: Path, dataset: str = "mnist", images: int = 1000) -> None:
    torch.set_num_threads(1)
    p = yaml.safe_load((project / "params.yaml").read_text())
    eps = p["attack"]["fgsm"]["epsilon"]
    model = targets.load(project / f"data/models/{dataset}/target.pt", "cpu")[0].requires_grad_(False)
    x, y = load_split(project / f"data/prepared/{dataset}.h5", "test")
    x, y = x[:images], y[:images]
    with torch.no_grad():
        z = model(x)
    right = z.argmax(1) == y
    saturated = (F.log_softmax(z, 1).gather(1, y[:, None])[:, 0] == 0)
    m = z.gather(1, y[:, None])[:, 0] - z.masked_fill(F.one_hot(y, 10).bool(), float("-inf")).max(1).values
    q = torch.quantile(m[right], torch.tensor([0.5, 0.9, 0.99, 1.0]))
    print(f"{dataset}: {images} test images, clean accuracy {right.float().mean():.3f}")
    print(f"log p_y == 0 exactly in float32: {saturated.float().mean():.1%}; in float64: "
          f"{(F.log_softmax(z.double(), 1).gather(1, y[:, None])[:, 0] == 0).float().mean():.1%}")
    print("true-class margin z_y - max_j z_j of the correct ones: median {:.1f}, 90% {:.1f}, 99% {:.1f}, max {:.1f};"
          " above 87 (our loss's float32 limit): {:.1%}".format(*q.tolist(), (m > 87).float().mean()))
    losses = {"F.cross_entropy, float32": lambda z, y: F.cross_entropy(z, y),
              "F.cross_entropy, float64": lambda z, y: F.cross_entropy(z.double(), y),
              "attacks.loss.cross_entropy (ours)": cross_entropy,
              "logit margin": margin}
    for name, loss in losses.items():
        adv = torch.cat([fgsm(model, x[s:s + 500], y[s:s + 500], eps, loss) for s in range(0, len(y), 500)])
        with torch.no_grad():
            acc = (model(adv).argmax(1) == y).float().mean()
        print(f"FGSM eps {eps} with {name}: accuracy {acc:.1%}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), *sys.argv[2:3], *[int(a) for a in sys.argv[3:4]])
