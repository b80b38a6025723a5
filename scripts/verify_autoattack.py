#!/usr/bin/env python3
"""An independent check of a white-box number: AutoAttack rebuilt from the library's own classes (the budget
in each constructor, as the library builds its attacks), run as the library runs its evaluation, on exactly
the images an evaluation counts as robust.

usage: python scripts/verify_autoattack.py PROJECT DATASET DEFENCE [DEFENCE ...]
           [--iterations N] [--restarts R] [--queries Q] [--seed S] [--metrics DIR] [--float64 | --own-loss]
           [--out FILE.json]

Reads PROJECT's params.yaml, data/metrics/<ds>/evaluate_<defence>.json (`whitebox_robust_index`; --metrics:
DIR/evaluate_<defence>.json instead, e.g. an archive's metrics/<ds>, for models rebuilt byte for byte) and the
models; prints, per defence, how many of those images the rebuilt AutoAttack breaks (0 is what the
evaluation claims). By default the budget is the configured one (whitebox.autoattack: iterations, Square's
queries; one restart, the standard version's attacks APGD-CE, APGD-T, FAB-T, Square); --iterations,
--restarts and --queries set a larger one, and with --restarts above 1 APGD-DLR joins as in the plus
version: a convergence test of the number (does a stronger attack move it?); --float64 gives APGD float64
logits (its cross-entropy then saturates only beyond a margin of about 37 logits); --own-loss gives APGD-CE the
project's cross-entropy (attacks/loss.py, as the evaluation runs it). --out writes the counts as
JSON (with the images each attack broke, as indices into the test set).
"""
import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from featdefense import targets
from featdefense.defences import DEFENCES
from featdefense.defended import defended_model, load_defence
from featdefense.io import environment, file_digest
from featdefense.training import load_split


class Float64Logits(torch.nn.Module):
    """The model with its logits in float64: the library's APGD then computes its cross-entropy in float64,
    which a confident model does not saturate (float32's log p_y == 0 loses the true class's gradient)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).double()


def rebuilt(model, eps: float, classes: int, iterations: int, restarts: int, queries: int, seed: int,
            float64: bool = False, own_loss: bool = False) -> dict:
    """The library's attacks, each built with the whole budget in its constructor; with float64, APGD's
    (CE, DLR, targeted DLR) on float64 logits; with own_loss, APGD-CE on the project's cross-entropy."""
    from featdefense.attacks.autoattack import own_loss_apgd

    apgd_model = Float64Logits(model) if float64 else model
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted
    from pyautoattack.fab_pt import FABAttack_PT
    from pyautoattack.square import SquareAttack

    common = dict(eps=eps, norm="Linf", seed=seed, device="cpu", verbose=False)
    targets_ = min(9, classes - 1)
    apgd_ce = APGDAttack(apgd_model, n_restarts=restarts, n_iter=iterations, eot_iter=1, rho=.75, **common)
    attacks = {"APGD-CE": own_loss_apgd(apgd_ce, model) if own_loss else apgd_ce}
    if restarts > 1:
        attacks["APGD-DLR"] = APGDAttack(apgd_model, n_restarts=restarts, n_iter=iterations, eot_iter=1, rho=.75,
                                         loss="dlr", **common)
    attacks["APGD-T"] = APGDAttack_targeted(apgd_model, n_restarts=1, n_iter=iterations, eot_iter=1, rho=.75,
                                            n_target_classes=targets_, **common)
    attacks["FAB-T"] = FABAttack_PT(model, n_restarts=1, n_iter=iterations, targeted=True,
                                    n_target_classes=targets_, **common)
    attacks["Square"] = SquareAttack(model, p_init=.8, n_queries=queries, n_restarts=1, resc_schedule=False, **common)
    return attacks


def defended(project: Path, dataset: str, name: str):
    """A project's params, its defence `name` in front of its target as the evaluation attacks them, the target's
    architecture and the model files (target, defence's) they come from."""
    p = yaml.safe_load((project / "params.yaml").read_text())
    target_path = project / f"data/models/{dataset}/target.pt"
    target, _, architecture = targets.load(target_path, "cpu")
    d = DEFENCES[name]
    model_path = project / f"data/models/{dataset}/{name}.pt" if d.trains else None
    module, _ = load_defence(d, p, model_path, "cpu", architecture.input_shape)
    return p, defended_model(d, module, target), architecture, [f for f in (target_path, model_path) if f]


def arguments(doc: str) -> argparse.ArgumentParser:
    """The arguments this script and its peers (apgd_ce_loss.py) share."""
    a = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("project", type=Path)
    a.add_argument("dataset")
    a.add_argument("defences", nargs="+")
    a.add_argument("--iterations", type=int)
    a.add_argument("--seed", type=int)
    a.add_argument("--out", type=Path)
    return a


def verify(project: Path, dataset: str, name: str, iterations: int | None = None, restarts: int = 1,
           queries: int | None = None, seed: int | None = None, metrics: Path | None = None,
           float64: bool = False, own_loss: bool = False) -> dict:
    p, model, architecture, files = defended(project, dataset, name)
    aa = p["whitebox"]["autoattack"]
    iterations = iterations or aa["iterations"] or 100
    queries = queries or aa["square_queries"] or 5000
    seed = p["seed"] if seed is None else seed
    m = json.loads(((metrics or project / f"data/metrics/{dataset}") / f"evaluate_{name}.json").read_text())
    index = torch.tensor(m["whitebox_robust_index"], dtype=torch.long)
    x, y = load_split(project / f"data/prepared/{dataset}.h5", "test", index.numpy())
    with torch.no_grad():
        robust = model(x).argmax(1) == y
    eps = p["attack"][p["whitebox"].get("attack", "pgd")]["epsilon"]
    out = {"dataset": dataset, "defence": name, "counted_robust": len(index), "clean_right": int(robust.sum()),
           "budget": {"iterations": iterations, "restarts": restarts, "square_queries": queries, "seed": seed,
                      "epsilon": eps, "float64_logits": float64, "own_loss": own_loss},
           "md5": {str(f.relative_to(project)): file_digest(f, "md5") for f in files},
           "environment": environment("cpu"), "attacks": []}
    print(f"{dataset} {name}: {len(index)} images counted robust (clean right: {int(robust.sum())})", flush=True)
    for label, attack in rebuilt(model, eps, architecture.classes, iterations, restarts, queries, seed,
                                   float64, own_loss).items():
        i, start = torch.nonzero(robust).flatten(), time.time()
        if len(i):
            x_adv = attack.perturb(x[i], y[i]).detach()
            assert float((x_adv - x[i]).abs().max()) <= eps + 1e-6, f"{label} left the epsilon ball"
            with torch.no_grad():
                robust[i] = model(x_adv).argmax(1) == y[i]
        broken = sorted(set(i.tolist()) - set(torch.nonzero(robust).flatten().tolist()))
        out["attacks"].append({"attack": label, "left": int(robust.sum()), "broken_index": index[broken].tolist(),
                               "seconds": round(time.time() - start, 1)})
        print(f"  after {label} ({iterations} iterations, {restarts} restart(s), Square {queries} queries): "
              f"{int(robust.sum())} left", flush=True)
    out["broken"] = len(index) - int(robust.sum())
    print(f"{dataset} {name}: the rebuilt AutoAttack broke {out['broken']} of the {len(index)} images the "
          f"evaluation counts as robust", flush=True)
    return out


def main() -> None:
    a = arguments(__doc__)
    a.add_argument("--restarts", type=int, default=1)
    a.add_argument("--queries", type=int)
    a.add_argument("--metrics", type=Path)
    loss = a.add_mutually_exclusive_group()
    loss.add_argument("--float64", action="store_true", help="APGD on float64 logits")
    loss.add_argument("--own-loss", action="store_true", help="APGD-CE on the project's cross-entropy")
    args = a.parse_args()
    torch.set_num_threads(1)
    results = [verify(args.project, args.dataset, name, args.iterations, args.restarts, args.queries, args.seed,
                      args.metrics, args.float64, args.own_loss)
               for name in args.defences]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
