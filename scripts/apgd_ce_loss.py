#!/usr/bin/env python3
"""What APGD-CE's loss moves: AutoAttack's APGD-CE (the library's class, one restart, the configured budget) run
three ways on the same images with the same seed: on the library's float32 cross-entropy, on float64 logits, and
on the project's cross-entropy (attacks/loss.py, as the evaluation runs it; docs/evaluation.md, "The attacks'
loss").

usage: python scripts/apgd_ce_loss.py PROJECT DATASET DEFENCE [DEFENCE ...] [--images N] [--iterations N]
           [--seed S] [--out FILE.json]

Reads PROJECT's params.yaml and models; attacks the first N test images (default 1,000) that the defence
classifies right; prints how many each loss leaves and how many images one breaks that another does not.
"""
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from verify_autoattack import Float64Logits, arguments, defended  # noqa: E402

from featdefense.attacks.autoattack import own_loss_apgd  # noqa: E402
from featdefense.io import environment  # noqa: E402
from featdefense.training import load_split  # noqa: E402


def compare(project: Path, dataset: str, name: str, images: int, iterations: int | None, seed: int | None) -> dict:
    from pyautoattack.autopgd_base import APGDAttack

    p, model, _, _ = defended(project, dataset, name)
    iterations = iterations or p["whitebox"]["autoattack"]["iterations"] or 100
    seed = p["seed"] if seed is None else seed
    x, y = load_split(project / f"data/prepared/{dataset}.h5", "test")
    x, y = x[:images], y[:images]
    with torch.no_grad():
        right = torch.nonzero(model(x).argmax(1) == y).flatten()
    x, y = x[right], y[right]
    eps = p["attack"][p["whitebox"].get("attack", "pgd")]["epsilon"]
    common = dict(n_restarts=1, n_iter=iterations, eot_iter=1, rho=.75, eps=eps, norm="Linf", seed=seed, device="cpu",
                  verbose=False)
    losses = {"library float32": APGDAttack(model, **common),
              "float64 logits": APGDAttack(Float64Logits(model), **common),
              "project's cross-entropy": own_loss_apgd(APGDAttack(model, **common), model)}
    broken, out = {}, {"dataset": dataset, "defence": name, "images": images, "clean_right": len(y),
                       "iterations": iterations, "seed": seed, "epsilon": eps, "environment": environment("cpu"),
                       "losses": {}}
    for label, attack in losses.items():
        start = time.time()
        adv = attack.perturb(x, y).detach()
        assert float((adv - x).abs().max()) <= eps + 1e-6, f"{label} left the epsilon ball"
        with torch.no_grad():
            broken[label] = model(adv).argmax(1) != y
        out["losses"][label] = {"left": int((~broken[label]).sum()), "seconds": round(time.time() - start, 1)}
        print(f"{dataset} {name}: APGD-CE on {label}: {int((~broken[label]).sum())} of {len(y)} left", flush=True)
    ours, lib = broken["project's cross-entropy"], broken["library float32"]
    out["own_not_library"] = right[ours & ~lib].tolist()  # test-set indices
    out["library_not_own"] = right[lib & ~ours].tolist()
    print(f"{dataset} {name}: the project's loss broke {len(out['own_not_library'])} image(s) the library's did "
          f"not, the library's {len(out['library_not_own'])} the project's did not", flush=True)
    return out


def main() -> None:
    a = arguments(__doc__)
    a.add_argument("--images", type=int, default=1000)
    args = a.parse_args()
    torch.set_num_threads(1)
    results = [compare(args.project, args.dataset, n, args.images, args.iterations, args.seed) for n in args.defences]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
