#!/usr/bin/env python3
"""An independent check of a white-box number: AutoAttack rebuilt from the library's own classes at the
configured budget (the budget in each constructor, as the library builds its 100-iteration attacks), run
as the library runs its standard evaluation, on exactly the images an evaluation counts as robust.

usage: python scripts/verify_autoattack.py PROJECT DATASET DEFENCE [DEFENCE ...]

Reads PROJECT's params.yaml, data/metrics/<ds>/evaluate_<defence>.json (`whitebox_robust_index`) and the
models; prints, per defence, how many of those images the rebuilt AutoAttack breaks (0 is what the
evaluation claims).
"""
import json
import sys
from pathlib import Path

import torch
import yaml

from featdefense.defences import DEFENCES
from featdefense import targets
from featdefense.stages.evaluate import defended_model, load_defence
from featdefense.training import load_split


def rebuilt(model, eps: float, iterations: int, queries: int, seed: int):
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    from pyautoattack.fab_pt import FABAttack_PT
    from pyautoattack.square import SquareAttack

    common = dict(eps=eps, norm="Linf", seed=seed, device="cpu", verbose=False)
    return {"APGD-CE": APGDAttack(model, n_restarts=1, n_iter=iterations, eot_iter=1, rho=.75, **common),
            "APGD-T": APGDAttack_targeted(model, n_restarts=1, n_iter=iterations, eot_iter=1, rho=.75,
                                          n_target_classes=9, **common),
            "FAB-T": FABAttack_PT(model, n_restarts=1, n_iter=iterations, targeted=True, n_target_classes=9, **common),
            "Square": SquareAttack(model, p_init=.8, n_queries=queries, n_restarts=1, resc_schedule=False, **common)}


def main(project: Path, dataset: str, defences: list[str]) -> None:
    torch.set_num_threads(1)
    p = yaml.safe_load((project / "params.yaml").read_text())
    aa = p["whitebox"]["autoattack"]
    if aa["version"] != "standard":
        sys.exit(f"{project}: AutoAttack's {aa['version']} version; this rebuilds the standard one only")
    iterations, queries = aa["iterations"] or 100, aa["square_queries"] or 5000
    target = targets.load(project / f"data/models/{dataset}/target.pt", "cpu")[0]
    for name in defences:
        d = DEFENCES[name]
        m = json.loads((project / f"data/metrics/{dataset}/evaluate_{name}.json").read_text())
        model_path = project / f"data/models/{dataset}/{name}.pt" if d.trains else None
        module, _ = load_defence(d, p, model_path, "cpu")
        model = defended_model(d, module, target)
        index = m["whitebox_robust_index"]
        x, y = load_split(project / f"data/prepared/{dataset}.h5", "test", index)
        robust = model(x).argmax(1) == y
        print(f"{dataset} {name}: {len(index)} images counted robust (clean right: {int(robust.sum())})", flush=True)
        for label, attack in rebuilt(model, p["attack"][p["whitebox"].get("attack", "pgd")]["epsilon"], iterations, queries, p["seed"]).items():
            i = torch.nonzero(robust).flatten()
            if len(i):
                robust[i] = model(attack.perturb(x[i], y[i])).argmax(1) == y[i]
            print(f"  after {label} ({iterations} iterations, Square {queries} queries): {int(robust.sum())} left",
                  flush=True)
        print(f"{dataset} {name}: the rebuilt AutoAttack broke {len(index) - int(robust.sum())} of the "
              f"{len(index)} images the evaluation counts as robust", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
