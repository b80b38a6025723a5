#!/usr/bin/env python3
"""Benchmark: what each of AutoAttack's attacks costs in the white-box evaluation, the standard version's and
the plus version's at the configured budget, each on the same images of a robust model, against PGD-100 on
those images in the same process (the peer: its cost is 100 forward and backward passes); and so what a
rerun costs at the configured budget without FAB-T (the evaluation's rerun) against a plus run.

    python benchmarks/autoattack.py                 # Madry's MNIST model where a pipeline run left it
    python benchmarks/autoattack.py --smoke         # seconds: proves it runs (CI); its figures mean nothing

Model: the robust classifier of `--defence` (a classifier defence: madry) with the target, as the evaluation
builds it, where PROJECT/data holds them, else a random LeNet on random images (said so): an attack costs
little on a model it breaks at once, so the figures mean most on a robust one. Not a test: nothing here
asserts a speed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from featdefense.attacks.autoattack import AutoAttack  # noqa: E402
from featdefense.attacks.pgd import PGD  # noqa: E402


def model_and_images(project: Path, defence: str, n: int, smoke: bool):
    from featdefense import targets
    from featdefense.defended import defended_model, load_defence
    from featdefense.defences import DEFENCES
    from featdefense.targets.lenet import LeNet
    from featdefense.training import load_split

    data = project / "data"
    target_file, prepared = data / "models/mnist/target.pt", data / "prepared/mnist.h5"
    d = DEFENCES[defence]
    model_file = data / f"models/mnist/{defence}.pt" if d.trains else None
    if not smoke and target_file.is_file() and prepared.is_file() and (model_file is None or model_file.is_file()):
        p = yaml.safe_load((project / "params.yaml").read_text())
        target, _, architecture = targets.load(target_file, "cpu")
        module, _ = load_defence(d, p, model_file, "cpu", architecture.input_shape)
        model = defended_model(d, module, target)
        x, y = load_split(prepared, "test", np.arange(n))
        what = f"{d.label} on MNIST ({model_file or 'no weights'}), the first {n} test images of {prepared}"
    else:
        torch.manual_seed(0)
        model = LeNet().eval().requires_grad_(False)
        x = torch.rand(n, 1, 28, 28)
        y = model(x).argmax(1)
        what = f"a random LeNet and {n} random images (no pipeline run here: figures of speed only)"
    with torch.no_grad():
        right = model(x).argmax(1) == y
    return model, x[right], y[right], what


def timed(attack, x, y, model) -> tuple[float, float]:
    start = time.perf_counter()
    adv = attack(x, y)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        return seconds, float((model(adv).argmax(1) == y).double().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", type=Path, default=ROOT, help="where a pipeline run left data/ and params.yaml")
    ap.add_argument("--defence", default="madry")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--iterations", type=int, default=100, help="APGD's and FAB's (the cpu configuration's)")
    ap.add_argument("--queries", type=int, default=1000, help="Square's (the cpu configuration's)")
    ap.add_argument("--epsilon", type=float, default=0.2)
    ap.add_argument("--smoke", action="store_true", help="16 images, 2 iterations, 10 queries: seconds")
    a = ap.parse_args()
    if a.smoke:
        a.images, a.iterations, a.queries = 16, 2, 10
    torch.set_num_threads(1)  # the cpu configuration's: one thread a job
    model, x, y, what = model_and_images(a.project, a.defence, a.images, a.smoke)
    print(f"model and data: {what}; {len(y)} of them classified right, every attack on all of these")
    print(f"budget: epsilon {a.epsilon}, {a.iterations} iterations, Square {a.queries} queries; one thread\n")
    pgd = PGD(model, a.epsilon, 100, a.epsilon / 2, random_start=True, best=True)
    g = torch.Generator().manual_seed(0)
    base, pgd_acc = timed(lambda xb, yb: pgd(xb, yb, generator=g), x, y, model)
    rows, cost = [("PGD-100 (the peer)", base, pgd_acc)], {}
    for version in ("standard", "plus"):
        aa = AutoAttack(model, a.epsilon, classes=10, version=version, seed=0, iterations=a.iterations,
                        square_queries=a.queries)
        for key, label, attack in aa.attacks():
            seconds, acc = timed(attack, x, y, model)
            cost[version, key] = seconds
            rows.append((f"{version} {label}", seconds, acc))
    print("| attack | seconds | ms an image | PGD-100 runs | robust accuracy (%) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, seconds, acc in rows:
        print(f"| {name} | {seconds:.1f} | {1000 * seconds / len(y):.0f} | {seconds / base:.2f} | {100 * acc:.1f} |")
    standard = sum(s for (v, _), s in cost.items() if v == "standard")
    plus = sum(s for (v, _), s in cost.items() if v == "plus")
    rerun = standard - cost["standard", "fab-t"]
    print(f"\nstandard run {standard:.1f} s ({standard / base:.1f} PGD-100 runs), FAB-T {cost['standard', 'fab-t']:.1f} s "
          f"of it; plus run {plus:.1f} s ({plus / base:.1f}); plus without FAB-T (the evaluation's: the standard "
          f"run's FAB-T made its examples) {plus - cost['plus', 'fab-t']:.1f} s")
    print(f"a rerun at the configured budget without FAB-T (the evaluation's) {rerun:.1f} s: "
          f"{rerun / plus:.2f} x a plus run (what a rerun was)")


if __name__ == "__main__":
    main()
