"""evaluate: one defence on one dataset, under every threat model, with the checks a reviewer runs.

- clean: accuracy with the defence in place;
- grey-box FGSM and PGD (the paper's protocol): the attack files, crafted on the undefended target, fed
  through the defence; a defence that replaces the classifier (madry) is attacked on itself instead;
- white-box (adaptive), all end to end through defence and classifier: FGSM, PGD with each
  `whitebox.step_sizes`, BPDA-PGD for image-to-image defences, AutoAttack (APGD-CE, APGD-T, FAB-T,
  Square), the robustness curve's PGD at the table's epsilon and the convergence check's stronger PGD.
  Every attack counts an image broken if any of its iterates fooled the model (best iterate), and an
  image counts as robust only if it is classified correctly clean and every attack failed on it, the
  grey-box ones included (the per-image minimum);
- robust accuracy against epsilon: white-box PGD at each `robustness.epsilons`;
- sanity checks (Carlini et al. 2019), each with pass/fail: accuracy falls to about 0 at an unbounded
  epsilon; the attack has converged (twice the steps and more restarts move it less than its interval);
  the gradient-free attack finds no more than the gradient attacks; white-box is not above grey-box; the
  classifier is not degenerate (one class for most inputs);
- every accuracy with its image count and 95% Wilson interval.

Attacks run as a cascade, each on the images still robust: that is the per-image minimum, computed
without attacking images already broken.
"""
from __future__ import annotations

import json
import logging
import math

import numpy as np
import torch
from tqdm import tqdm

from ..accuracy import degenerate, half_width, summary
from ..attacks import FGSM, PGD
from ..attacks.autoattack import AutoAttack
from ..defences import DEFENCES, Defence
from ..io import ArtifactError, open_h5, write_json
from ..models.lenet import Target
from ..training import batches, load_module, load_split, predict, setup

log = logging.getLogger(__name__)


def defended_model(defence: Defence, module: torch.nn.Module, target: torch.nn.Module) -> torch.nn.Module:
    """The classifier an attacker faces: target(defence(x)) for a preprocessor, the defence itself otherwise."""
    model = torch.nn.Sequential(module, target) if defence.kind == "preprocessor" else module
    return model.eval().requires_grad_(False)


class _StraightThrough(torch.nn.Module):
    """target(defence(x)) forward; backward as if the defence were the identity (BPDA, Athalye et al. 2018)."""

    def __init__(self, module: torch.nn.Module, target: torch.nn.Module):
        super().__init__()
        self.module, self.target = module, target

    def forward(self, x):
        return self.target(x + (self.module(x) - x).detach())


def bpda_model(module: torch.nn.Module, target: torch.nn.Module) -> torch.nn.Module:
    """The BPDA surrogate of a preprocessor defence: its predictions, the target's gradients."""
    return _StraightThrough(module, target).eval().requires_grad_(False)
GREY_BOX = ("fgsm", "pgd")


def read_test(path) -> tuple[torch.Tensor, np.ndarray, dict, dict]:
    with open_h5(path) as f:
        try:
            g = f["test"]
            return (torch.from_numpy(g["x_adv"][()]), g["index"][()], json.loads(f.attrs["params"]),
                    json.loads(f.attrs["provenance"]))
        except (KeyError, OSError) as e:
            raise ArtifactError(f"{path}: no readable test split ({e})") from None


def share(mask: torch.Tensor) -> float:
    """The fraction of True in a boolean mask (in double precision: 0.8 is written as 0.8)."""
    return float(mask.double().mean())


def still_correct(model, attack, x, y, robust: torch.Tensor, batch_size: int, device, label: str) -> torch.Tensor:
    """robust & (model is right on attack(x)), attacking only the images still robust."""
    out = robust.clone()
    todo = torch.nonzero(robust).flatten()
    for s in tqdm(list(batches(len(todo), batch_size)), desc=label, mininterval=2, leave=False):
        i = todo[s]
        adv = attack(x[i].to(device), y[i].to(device))
        out[i] = predict(model, adv, device).cpu() == y[i]
    return out


def seeded(seed: int, device):
    """gen(i)(attack): the attack with its own seeded generator, number i of an evaluation's runs (a
    rerun repeats byte for byte)."""
    def gen(i: int):
        g = torch.Generator(device=device).manual_seed(seed * 1000 + 100 + i)
        return lambda a: (lambda xb, yb: a(xb, yb, generator=g))
    return gen


def load_defence(d, p: dict, model_path: str | None, device) -> tuple[torch.nn.Module, dict]:
    """The defence's module (trained weights loaded from model_path, if it has any) and their meta."""
    module = d.build(d.params_of(p))
    if model_path is None:
        return module.to(device).eval(), {}
    return load_module(model_path, module, device)


def run(p, inp, out, dataset, defence):
    device = setup(p)
    d = DEFENCES[defence]
    target, target_meta = load_module(inp["target"], Target(), device)
    module, meta = load_defence(d, p, inp.get("model"), device)
    model = defended_model(d, module, target)
    x_files, index, attack_params, attack_prov = {}, None, {}, None
    for attack in GREY_BOX:
        x_adv, idx, attack_params[attack], attack_prov = read_test(inp[attack])
        if index is not None and not np.array_equal(index, idx):
            raise ArtifactError(f"{inp[attack]}: its test images differ from those of the other attack files")
        x_files[attack], index = x_adv, idx
    x, y = load_split(inp["prepared"], "test", index)
    wb, bs = p["whitebox"], p["whitebox"]["batch_size"]
    fgsm = FGSM(model, **p["attack"]["fgsm"])
    pgd = {**p["attack"]["pgd"], "best": True}
    everyone = torch.ones(len(y), dtype=torch.bool)

    gen = seeded(p["seed"], device)
    predictions = predict(model, x, device)
    correct = {"clean": predictions == y}
    if d.kind == "preprocessor":   # grey-box: the target's adversarial examples, through the defence
        grey = "crafted on the undefended target (the paper's protocol)"
        for attack in GREY_BOX:
            correct[attack] = predict(model, x_files[attack], device) == y
    else:                          # the defence is the classifier: attacked on itself
        grey = "crafted on the robust classifier itself (its weights are the defence)"
        correct["fgsm"] = still_correct(model, fgsm, x, y, everyone, bs, device, f"{defence} FGSM")
        correct["pgd"] = still_correct(model, gen(0)(PGD(model, **pgd)), x, y, everyone, bs, device, f"{defence} PGD")

    # white-box, adaptive: a cascade, each attack on the images still robust (the per-image minimum)
    robust_fgsm = correct["clean"] & correct["fgsm"]
    if d.kind == "preprocessor":  # a classifier's grey-box FGSM above was already this white-box one
        robust_fgsm = still_correct(model, fgsm, x, y, robust_fgsm, bs, device, f"{defence} white-box FGSM")
    correct["whitebox_fgsm"] = robust_fgsm
    bpda = bpda_model(module, target) if d.kind == "preprocessor" and not isinstance(module, torch.nn.Identity) \
        else None
    correct["whitebox_pgd"], cascade, curve, sanity = whitebox(model, x, y, predictions, correct, p, device, gen,
                                                               defence, bpda)

    accuracy = {k: share(v) for k, v in correct.items()}
    with open_h5(inp["prepared"]) as f:
        canonical = bool(f.attrs["canonical"])
    metrics = {
        "dataset": dataset,
        "defence": {"name": d.name, "label": d.label, "kind": d.kind, "description": d.description,
                    "params": d.params_of(p), "trained": d.trains},
        "threat_model": {
            "fgsm, pgd": f"grey-box: {grey}",
            "whitebox_fgsm": "white-box, adaptive: FGSM through defence and classifier end to end; per image, "
                             "robust only if clean, grey-box FGSM and white-box FGSM all left it correct",
            "whitebox_pgd": "white-box, adaptive: per image, robust only if it is classified correctly clean and "
                            "after every attack of whitebox_pgd_cascade (grey-box ones included), each judged "
                            "at its best iterate",
        },
        "accuracy": accuracy,
        "intervals": {k: summary(v) for k, v in correct.items()},
        "whitebox_pgd_cascade": cascade,
        "sanity": sanity,
        "degenerate": sanity["not_degenerate"]["degenerate"],
        "robustness": curve,
        "data": {"canonical": canonical, "test_images": int(len(index)),
                 "target_train_images": target_meta["metrics"]["train_size"]},
        "target": {"epochs": target_meta["metrics"]["epochs"],
                   "clean_accuracy_full_test_set": target_meta["metrics"]["clean_test_accuracy"]},
        "attacks": {**attack_params, "subset_sizes": {k: attack_prov["params"]["attack"][k]
                                                      for k in ("train_size", "test_size")},
                    "whitebox": wb, "sanity": p["sanity"]},
    }
    if meta:
        metrics["defence"]["training"] = {k: meta[k] for k in ("params", "train_examples", "final", "final_loss",
                                                               "feature_loss", "loss_net") if k in meta}
    log.info("%s %s: %s", dataset, defence, ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))
    log.info("%s %s: white-box cascade %s", dataset, defence, {k: v["accuracy"] for k, v in cascade.items()})
    log.info("%s %s: sanity %s", dataset, defence, {k: "pass" if v["pass"] else "FAIL" for k, v in sanity.items()})
    write_json(out["metrics"], metrics)


def whitebox(model, x, y, predictions, correct, p, device, gen, label: str, bpda=None):
    """The white-box PGD cascade, the robustness curve and the sanity checks of `model` (defence and
    classifier end to end) on images x, y, given the masks `correct` of clean, grey-box and white-box FGSM.
    `bpda`: the BPDA surrogate of an image-to-image defence, if it has one. Returns the per-image robust
    mask (every attack), the cascade (accuracy after each attack), the curve and the checks."""
    wb, bs = p["whitebox"], p["whitebox"]["batch_size"]
    pgd = {**p["attack"]["pgd"], "best": True}
    cascade = {}  # "NN. attack" -> accuracy once it and every attack before it ran (NN keeps the order)

    def after(name: str, mask: torch.Tensor) -> torch.Tensor:
        cascade[f"{len(cascade) + 1:02d}. {'+ ' if cascade else ''}{name}"] = summary(mask)
        return mask

    robust = after("clean, grey-box PGD", correct["clean"] & correct["pgd"])
    if p["attack"]["fgsm"]["epsilon"] <= pgd["epsilon"]:  # FGSM's ball lies inside PGD's: it counts too
        robust = after("grey-box and white-box FGSM", robust & correct["whitebox_fgsm"])
    runs = [(f"white-box PGD step {step}", PGD(model, **{**pgd, "step_size": step})) for step in wb["step_sizes"]]
    if bpda is not None:
        # BPDA: forward through the defence, backward as if it were the identity; in case the defence's
        # own gradient is uninformative (clipping, a median's sparse gradient, saturating outputs)
        step = max(wb["step_sizes"])
        runs.append((f"white-box BPDA-PGD step {step}", PGD(bpda, **{**pgd, "step_size": step})))
    for i, (name, attack) in enumerate(runs):
        robust = after(name, still_correct(model, gen(1 + i)(attack), x, y, robust, bs, device, f"{label} {name}"))
    aa = wb["autoattack"]
    autoattack = [] if aa["version"] == "none" else AutoAttack(
        model, epsilon=pgd["epsilon"], version=aa["version"], seed=p["seed"], iterations=aa["iterations"],
        square_queries=aa["square_queries"], device=device).attacks()
    for name, attack in autoattack:
        robust = after(f"white-box AutoAttack {name}", still_correct(model, attack, x, y, robust, bs, device,
                                                                     f"{label} AutoAttack {name}"))
    # the robustness curve's PGD at the table's epsilon counts too; the curve there is the table's number
    curve, at_table = robustness_curve(model, x, y, correct["clean"], p["robustness"], pgd, bs, device, gen,
                                       label, robust)
    if at_table is not None:
        robust = after(f"white-box PGD of the robustness curve (first {len(at_table)} images)",
                       torch.cat([at_table, robust[len(at_table):]]))
    sanity, robust = sanity_checks(model, x, y, predictions, correct, robust, p, gen, device, label, after)
    return robust, cascade, curve, sanity


def robustness_curve(model, x, y, clean, cfg: dict, pgd: dict, batch_size: int, device, gen, defence: str,
                     whitebox: torch.Tensor) -> tuple[dict, torch.Tensor | None]:
    """White-box PGD accuracy at each epsilon. An image broken at a smaller epsilon is broken at every
    larger one (its adversarial example lies in the larger ball too), so each run attacks the rest. At the
    table's epsilon (attack.pgd's) the cascade's breaks (`whitebox`) count too, so that the curve there is
    the table's white-box number on the same images; returns the curve and, where it has that epsilon,
    its robust images there."""
    n = len(y) if cfg["test_size"] is None else min(cfg["test_size"], len(y))
    robust = clean[:n].clone()
    accuracy, intervals, at_table = [], [], None
    for i, eps in enumerate(sorted(cfg["epsilons"])):
        if eps > 0:
            attack = gen(50 + i)(PGD(model, epsilon=eps, steps=cfg["steps"], step_size=cfg["relative_step"] * eps,
                                     random_start=pgd["random_start"], best=True))
            robust = still_correct(model, attack, x[:n], y[:n], robust, batch_size, device,
                                   f"{defence} PGD at eps {eps}")
        if math.isclose(eps, pgd["epsilon"]):
            robust = at_table = robust & whitebox[:n]
        accuracy.append(share(robust))
        intervals.append(summary(robust)["interval_95"])
    return {"attack": f"white-box PGD, {cfg['steps']} steps of {cfg['relative_step']} x epsilon (best iterate); "
                      f"at epsilon {pgd['epsilon']} with every attack of the table",
            "test_images": n, "epsilon": sorted(cfg["epsilons"]), "accuracy": accuracy,
            "interval_95": intervals}, at_table


def sanity_checks(model, x, y, predictions, correct, robust, p, gen, device, label, after):
    """The checks a reviewer runs against a robustness claim, each {pass, what, and its figures}.

    The costly ones run on the first `sanity.test_size` images. The convergence check's stronger PGD
    breaks images too: they count in the white-box number (returned with the checks)."""
    cfg, pgd, bs = p["sanity"], {**p["attack"]["pgd"], "best": True}, p["whitebox"]["batch_size"]
    m = len(y) if cfg["test_size"] is None else min(cfg["test_size"], len(y))
    xs, ys, clean = x[:m], y[:m], correct["clean"][:m]
    checks = {}
    deg = degenerate(predictions, 10, cfg["degenerate_share"])
    checks["not_degenerate"] = {"pass": not deg["degenerate"], **deg,
                                "what": f"no class predicted for more than {cfg['degenerate_share']:.0%} of the clean "
                                        "test images"}

    eps = cfg["unbounded_epsilon"]
    steps = p["robustness"]["steps"]
    unbounded = summary(still_correct(model, gen(90)(PGD(model, epsilon=eps, steps=steps, step_size=eps / 4,
                                                         random_start=True, best=True)),
                                      xs, ys, clean, bs, device, f"{label} sanity: PGD at eps {eps}"))
    checks["unbounded_budget"] = {"pass": unbounded["accuracy"] <= cfg["unbounded_max_accuracy"],
                                  "what": f"accuracy under PGD at epsilon {eps} (any image) is at most "
                                          f"{cfg['unbounded_max_accuracy']}", "accuracy": unbounded}

    step = p["whitebox"]["step_sizes"][0]
    alone = still_correct(model, gen(91)(PGD(model, **{**pgd, "step_size": step})), xs, ys, clean, bs, device,
                          f"{label} sanity: PGD alone")
    stronger = alone
    for r in range(cfg["restarts"]):
        attack = PGD(model, **{**pgd, "step_size": step, "steps": 2 * pgd["steps"], "random_start": True})
        stronger = still_correct(model, gen(92 + r)(attack), xs, ys, stronger, bs, device,
                                 f"{label} sanity: PGD x2 steps, restart {r + 1}")
    base, more = summary(alone), summary(stronger)
    checks["converged"] = {"pass": base["accuracy"] - more["accuracy"] <= half_width(base),
                           "what": f"PGD with twice the steps and {cfg['restarts']} random restarts lowers PGD's "
                                   "accuracy by less than half its 95% interval", "pgd": base, "stronger": more}
    robust = after(f"white-box PGD of the convergence check (first {m} images)",
                   torch.cat([robust[:m] & stronger, robust[m:]]))

    aa = p["whitebox"]["autoattack"]
    if aa["version"] != "none":  # Square alone against the gradient attacks alone, on the same images
        name, square = AutoAttack(model, epsilon=pgd["epsilon"], seed=p["seed"], iterations=aa["iterations"],
                                  square_queries=aa["square_queries"], device=device).attack("square")
        found = still_correct(model, square, xs, ys, clean, bs, device, f"{label} sanity: {name} alone")
        checks["gradient_free_not_stronger"] = {
            "pass": summary(found)["accuracy"] >= more["accuracy"] - half_width(more),
            "what": "the gradient-free attack (Square) alone leaves no fewer images than PGD alone with restarts, "
                    "beyond half its 95% interval (else the gradients are likely masked)",
            "square": summary(found), "gradient": more}
        robust = after(f"white-box {name} of the gradient-masking check (first {m} images)",
                       torch.cat([robust[:m] & found, robust[m:]]))
    grey = summary(correct["pgd"][:m])
    checks["whitebox_not_above_greybox"] = {
        "pass": more["accuracy"] <= grey["accuracy"] + half_width(grey),
        "what": "white-box PGD alone (with the convergence check's restarts) is not above grey-box PGD by more "
                "than half its 95% interval", "whitebox": more, "greybox": grey}
    return checks, robust
