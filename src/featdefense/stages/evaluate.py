"""evaluate: one defence on one dataset, under every threat model.

- clean: accuracy with the defence in place;
- grey-box FGSM and PGD (the paper's protocol): the attack files, crafted on the undefended target, fed
  through the defence; a defence that replaces the classifier (madry) is attacked on itself instead;
- white-box (adaptive): FGSM, PGD with each `whitebox.step_sizes`, BPDA-PGD for image-to-image
  defences, then APGD-CE (ART), all run end to end through defence and classifier. An image counts as
  robust only if it is classified correctly clean and every attack failed on it, the grey-box ones
  included (the per-image minimum), so white-box accuracy is never above grey-box;
- robust accuracy against epsilon: white-box PGD at each `robustness.epsilons`.

Attacks run as a cascade, each on the images still robust: that is the per-image minimum, computed
without attacking images already broken.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import torch
from tqdm import tqdm

from ..attacks import FGSM, PGD
from ..attacks.apgd import APGD
from ..defences import DEFENCES, bpda_model, defended_model
from ..io import ArtifactError, open_h5, write_json
from ..models.lenet import Target
from ..training import batches, load_module, load_split, predict, setup

log = logging.getLogger(__name__)
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
    pgd = p["attack"]["pgd"]
    everyone = torch.ones(len(y), dtype=torch.bool)

    def gen(i: int):  # one seeded generator per attack run: reruns repeat byte for byte
        g = torch.Generator(device=device).manual_seed(p["seed"] * 1000 + 100 + i)
        return lambda a: (lambda xb, yb: a(xb, yb, generator=g))

    correct = {"clean": predict(model, x, device) == y}
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
    cascade = {}  # "N. attack" -> accuracy once it and every attack before it ran (N keeps the order)
    robust = correct["clean"] & correct["pgd"]
    cascade["1. clean, grey-box PGD"] = share(robust)
    if p["attack"]["fgsm"]["epsilon"] <= pgd["epsilon"]:  # FGSM's ball lies inside PGD's: it counts too
        robust &= robust_fgsm
        cascade["2. + grey-box and white-box FGSM"] = share(robust)
    runs = [(f"white-box PGD step {step}", PGD(model, **{**pgd, "step_size": step})) for step in wb["step_sizes"]]
    if d.kind == "preprocessor" and not isinstance(module, torch.nn.Identity):
        # BPDA: forward through the defence, backward as if it were the identity; in case the defence's
        # own gradient is uninformative (clipping, a median's sparse gradient, saturating outputs)
        bpda = bpda_model(module, target)
        runs.append(("white-box BPDA-PGD step 0.1", PGD(bpda, **{**pgd, "step_size": max(wb["step_sizes"])})))
    for i, (name, attack) in enumerate(runs):
        robust = still_correct(model, gen(1 + i)(attack), x, y, robust, bs, device, f"{defence} {name}")
        cascade[f"{len(cascade) + 1}. + {name}"] = share(robust)
    if wb["apgd_steps"]:
        apgd = APGD(model, epsilon=pgd["epsilon"], steps=wb["apgd_steps"], restarts=wb["apgd_restarts"])
        robust = still_correct(model, apgd, x, y, robust, bs, device, f"{defence} white-box APGD-CE")
        cascade[f"{len(cascade) + 1}. + white-box APGD-CE"] = share(robust)
    correct["whitebox_fgsm"], correct["whitebox_pgd"] = robust_fgsm, robust

    curve = robustness_curve(model, x, y, correct["clean"], p["robustness"], pgd["random_start"], bs, device,
                             gen, defence)
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
                            "after every attack of whitebox_pgd_cascade (grey-box ones included)",
        },
        "accuracy": accuracy,
        "whitebox_pgd_cascade": cascade,
        "robustness": curve,
        "data": {"canonical": canonical, "test_images": int(len(index)),
                 "target_train_images": target_meta["metrics"]["train_size"]},
        "target": {"epochs": target_meta["metrics"]["epochs"],
                   "clean_accuracy_full_test_set": target_meta["metrics"]["clean_test_accuracy"]},
        "attacks": {**attack_params, "subset_sizes": {k: attack_prov["params"]["attack"][k]
                                                      for k in ("train_size", "test_size")},
                    "whitebox": wb},
    }
    if meta:
        metrics["defence"]["training"] = {k: meta[k] for k in ("params", "train_examples", "final", "final_loss",
                                                               "feature_loss", "loss_net") if k in meta}
    log.info("%s %s: %s", dataset, defence, ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))
    log.info("%s %s: white-box cascade %s", dataset, defence, cascade)
    write_json(out["metrics"], metrics)


def robustness_curve(model, x, y, clean, cfg: dict, random_start: bool, batch_size: int, device, gen,
                     defence: str) -> dict:
    """White-box PGD accuracy at each epsilon. An image broken at a smaller epsilon is broken at every
    larger one (its adversarial example lies in the larger ball too), so each run attacks the rest."""
    n = len(y) if cfg["test_size"] is None else min(cfg["test_size"], len(y))
    robust = clean[:n].clone()
    accuracy = []
    for i, eps in enumerate(sorted(cfg["epsilons"])):
        if eps > 0:
            attack = gen(50 + i)(PGD(model, epsilon=eps, steps=cfg["steps"], step_size=cfg["relative_step"] * eps,
                                     random_start=random_start))
            robust = still_correct(model, attack, x[:n], y[:n], robust, batch_size, device,
                                   f"{defence} PGD at eps {eps}")
        accuracy.append(share(robust))
    return {"attack": f"white-box PGD, {cfg['steps']} steps of {cfg['relative_step']} x epsilon",
            "test_images": n, "epsilon": sorted(cfg["epsilons"]), "accuracy": accuracy}
