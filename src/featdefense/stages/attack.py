"""attack: FGSM or PGD examples against the target, for the train and test splits, streamed to HDF5.

Each split's group holds x_adv (float32, N x 1 x 28 x 28, in [0, 1]), index (into the prepared split),
y (true labels) and pred (the target's prediction on x_adv). The attack's params and the target's
SHA-256 are attributes. Batches are written as they are made: memory does not grow with the dataset.
"""
from __future__ import annotations

import json
import logging

import h5py
import numpy as np
import torch
from tqdm import tqdm

from .. import attacks
from ..io import atomic_path, file_digest, provenance, resolve_device
from ..models import Target
from ..training import batches, load_module, load_split, seed_everything

log = logging.getLogger(__name__)
SPLITS = ("train", "test")


def subset(n: int, size: int | None, seed: int) -> np.ndarray:
    """`size` indices out of n, drawn with `seed` and sorted; all of them when size is None or >= n."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def run(p, inp, out, dataset, attack):
    seed_everything(p["seed"])
    device = resolve_device(p["device"])
    cfg = p["attack"]
    spec = cfg[attack]
    target, _ = load_module(inp["target"], Target(), device)
    target.requires_grad_(False)
    attacker = attacks.build(attack, target, spec)
    with atomic_path(out["adversarial"]) as tmp, h5py.File(tmp, "w") as f:
        for split_no, split in enumerate(SPLITS):
            size = cfg[f"{split}_size"]
            with h5py.File(inp["prepared"], "r") as prepared:
                n = len(prepared[split]["y"])
            index = subset(n, size, p["seed"] + split_no)
            x, y = load_split(inp["prepared"], split, index)
            g = f.create_group(split)
            x_adv = g.create_dataset("x_adv", shape=(len(index), 1, 28, 28), dtype="float32",
                                     chunks=(min(cfg["batch_size"], len(index)), 1, 28, 28), track_times=False)
            pred = g.create_dataset("pred", shape=(len(index),), dtype="int64", track_times=False)
            g.create_dataset("index", data=index, track_times=False)
            g.create_dataset("y", data=y.numpy(), track_times=False)
            gen = torch.Generator(device=device).manual_seed(p["seed"] * 1000 + split_no)
            fooled = 0
            for s in tqdm(list(batches(len(index), cfg["batch_size"])), desc=f"{dataset} {attack} {split}",
                          mininterval=2):
                xb, yb = x[s].to(device), y[s].to(device)
                adv = attacker(xb, yb, generator=gen)
                with torch.no_grad():
                    pb = target(adv).argmax(1)
                x_adv[s] = adv.cpu().numpy()
                pred[s] = pb.cpu().numpy()
                fooled += int((pb != yb).sum())
            log.info("%s %s %s: %d examples, target accuracy on them %.4f", dataset, attack, split,
                     len(index), 1 - fooled / len(index))
        f.attrs["dataset"] = dataset
        f.attrs["attack"] = attack
        f.attrs["params"] = json.dumps(spec, sort_keys=True)
        f.attrs["target_sha256"] = file_digest(inp["target"])
        f.attrs["provenance"] = json.dumps(provenance("attack", p, inp), sort_keys=True)
