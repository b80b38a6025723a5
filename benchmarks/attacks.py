#!/usr/bin/env python3
"""Benchmark: our PGD against ART's PGD and APGD-CE, on the same LeNet and images, in one process.

Prints image-iterations per second for each and the ratios against ours. Not a test: speeds depend on
the machine; run it when choosing batch sizes or a configuration's attack budget.

usage: python benchmarks/attacks.py [--images 500] [--steps 20] [--threads 2]
"""
import argparse
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    from featdefense.attacks import PGD
    from featdefense.attacks.apgd import APGD
    from featdefense.models.lenet import Target

    torch.manual_seed(0)
    model = Target().eval().requires_grad_(False)
    x = torch.rand(a.images, 1, 28, 28)
    y = model(x).argmax(1)
    classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                   nb_classes=10, clip_values=(0.0, 1.0))
    art_pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=0.2, eps_step=0.05, max_iter=a.steps,
                                       num_random_init=0, batch_size=a.images, verbose=False)
    runs = {
        "featdefense PGD": lambda: PGD(model, 0.2, a.steps, 0.05, random_start=False)(x, y),
        "ART PGD": lambda: art_pgd.generate(x.numpy(), y=y.numpy()),
        "ART APGD-CE": lambda: APGD(model, 0.2, a.steps)(x, y),
    }
    speed = {}
    for name, fn in runs.items():
        fn()  # warm-up
        start = time.perf_counter()
        fn()
        speed[name] = a.images * a.steps / (time.perf_counter() - start)
    base = speed["featdefense PGD"]
    print(f"{a.images} images x {a.steps} steps, LeNet, {a.threads} thread(s)")
    for name, s in speed.items():
        print(f"{name:16s} {s:10.0f} image-iterations/s   {s / base:5.2f}x ours")


if __name__ == "__main__":
    main()
