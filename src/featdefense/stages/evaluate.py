"""evaluate: accuracy of the target (unsecured) and of target(denoiser(x)) (defended) on the clean test
images, on their FGSM and PGD versions (grey-box: attacks crafted on the target alone), and under a
white-box adaptive PGD run end to end through the model evaluated (denoiser and target together)."""
from __future__ import annotations

import json
import logging

import numpy as np
import torch
from tqdm import tqdm

from ..io import ArtifactError, open_h5, write_json
from ..attacks import PGD
from ..models import Denoiser, Target
from ..training import batches, load_module, load_split, predict, setup

log = logging.getLogger(__name__)
ATTACKS = ("fgsm", "pgd")


def read_test(path) -> tuple[torch.Tensor, np.ndarray, dict, dict]:
    with open_h5(path) as f:
        try:
            g = f["test"]
            return (torch.from_numpy(g["x_adv"][()]), g["index"][()], json.loads(f.attrs["params"]),
                    json.loads(f.attrs["provenance"]))
        except (KeyError, OSError) as e:
            raise ArtifactError(f"{path}: no readable test split ({e})") from None


def whitebox(model, x, y, still_correct: torch.Tensor, pgd: dict, step_sizes: list[float], batch_size: int,
             seed: int, device) -> tuple[float, dict[str, float]]:
    """PGD through `model` end to end, once per step size. An image counts as robust only if every
    attack failed on it, including the grey-box one (`still_correct`): the per-image minimum."""
    robust = still_correct.clone()
    per_step = {}
    for i, step in enumerate(step_sizes):
        attack = PGD(model, epsilon=pgd["epsilon"], steps=pgd["steps"], step_size=step,
                     random_start=pgd["random_start"])
        gen = torch.Generator(device=device).manual_seed(seed * 1000 + 100 + i)
        correct = torch.cat([
            predict(model, attack(x[s].to(device), y[s].to(device), generator=gen), device) == y[s]
            for s in tqdm(list(batches(len(x), batch_size)), desc=f"white-box PGD step {step}", mininterval=2)])
        per_step[str(step)] = float(correct.float().mean())
        robust &= correct
    return float(robust.float().mean()), per_step


def run(p, inp, out, dataset):
    device = setup(p)
    target, target_meta = load_module(inp["target"], Target(), device)
    denoiser, denoiser_meta = load_module(inp["denoiser"], Denoiser(), device)
    defended = torch.nn.Sequential(denoiser, target).eval().requires_grad_(False)
    target.requires_grad_(False)
    adversarial, index, attack_params, attack_prov = {}, None, {}, None
    for attack in ATTACKS:
        x_adv, idx, attack_params[attack], attack_prov = read_test(inp[attack])
        if index is not None and not np.array_equal(index, idx):
            raise ArtifactError(f"{inp[attack]}: its test images differ from those of the other attack files")
        adversarial[attack], index = x_adv, idx
    x_clean, y = load_split(inp["prepared"], "test", index)
    inputs = {"clean": x_clean, **adversarial}
    models = {"unsecured": target, "defended": defended}
    correct = {side: {name: predict(m, x, device) == y for name, x in inputs.items()} for side, m in models.items()}
    results = {side: {name: float(c.float().mean()) for name, c in by_input.items()}
               for side, by_input in correct.items()}
    wb = p["whitebox"]
    per_step = {}
    for side, model in models.items():
        results[side]["whitebox_pgd"], per_step[side] = whitebox(
            model, x_clean, y, correct[side]["pgd"], p["attack"]["pgd"], wb["step_sizes"], wb["batch_size"],
            p["seed"], device)
    with open_h5(inp["prepared"]) as f:
        canonical = bool(f.attrs["canonical"])
    loss_net = denoiser_meta["loss_net"]
    metrics = {
        "dataset": dataset,
        "threat_model": {
            "fgsm, pgd": "grey-box: crafted on the target alone (the paper's protocol)",
            "whitebox_pgd": "adaptive: PGD through the evaluated model end to end; per image, the minimum over "
                            "the grey-box PGD and white-box PGD with each step size",
        },
        "whitebox_pgd_by_step_size": per_step,
        "accuracy": results,
        "data": {"canonical": canonical, "test_images": int(len(index)),
                 "denoiser_train_examples": denoiser_meta["train_examples"],
                 "target_train_images": target_meta["metrics"]["train_size"]},
        "target": {"epochs": target_meta["metrics"]["epochs"],
                   "clean_accuracy_full_test_set": target_meta["metrics"]["clean_test_accuracy"]},
        "attacks": {**attack_params, "subset_sizes": {k: attack_prov["params"]["attack"][k]
                                                      for k in ("train_size", "test_size")}},
        "denoiser": {"epochs": denoiser_meta["params"]["denoiser"]["epochs"],
                     "train_on": denoiser_meta["params"]["denoiser"]["train_on"],
                     "feature_loss": denoiser_meta["feature_loss"],
                     "loss_net": loss_net},
    }
    for side, accs in results.items():
        log.info("%s %s: %s", dataset, side, ", ".join(f"{k} {v:.4f}" for k, v in accs.items()))
    if loss_net["random"]:
        log.warning("these numbers used a loss network with RANDOM weights")
    write_json(out["metrics"], metrics)
