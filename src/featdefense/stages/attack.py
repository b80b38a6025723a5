"""attack: one attack module's examples (FGSM, PGD, ...: attacks/) against the target, for the train and test
splits, streamed to HDF5.

Each split's group holds x_adv (float32, N x C x H x W as prepared, in [0, 1]), index (into the prepared split),
y (true labels) and pred (the target's prediction on x_adv). The attack's params and the target's
SHA-256 are attributes. Batches are written as they are made: memory does not grow with the dataset.
"""
from __future__ import annotations

import json
import logging

import h5py
import torch
from tqdm import tqdm

from .. import attacks, checkpoints, targets
from ..io import atomic_path, open_h5, provenance
from ..training import batches, setup, subset, to_tensor

log = logging.getLogger(__name__)
SPLITS = ("train", "test")


def run(p, inp, out, dataset, attack):
    device = setup(p)
    cfg = p["attack"]
    spec = cfg[attack]
    target, _, _ = targets.load(inp["target"], device)
    target.requires_grad_(False)
    attacker = attacks.build(attack, target, spec)
    with atomic_path(out["adversarial"]) as tmp, h5py.File(tmp, "w") as f:
        for split_no, split in enumerate(SPLITS):
            with open_h5(inp["prepared"]) as prepared:
                images, labels = prepared[split]["x"], prepared[split]["y"][()]
                index = subset(len(labels), cfg[f"{split}_size"], sample_seed(p, split))
                attack_split(f.create_group(split), attacker, target, images, labels, index, cfg["batch_size"],
                             torch.Generator(device=device).manual_seed(p["seed"] * 1000 + split_no),
                             device, f"{dataset} {attack} {split}")
        f.attrs["dataset"] = dataset
        f.attrs["attack"] = attack
        f.attrs["params"] = json.dumps(spec, sort_keys=True)
        prov = provenance("attack", p, inp)
        f.attrs["target_sha256"] = prov["inputs"]["target"]["sha256"]
        f.attrs["provenance"] = json.dumps(prov, sort_keys=True)


def sample_seed(p: dict, split: str) -> int:
    """What draws a split's subset: the test images from `attack.test_sample_seed` alone, so that every training
    seed attacks (and the evaluation counts) the same test images and the seeds' spread is training's; the
    train images from `seed`, part of what a training seed varies."""
    return p["attack"]["test_sample_seed"] if split == "test" else p["seed"] + SPLITS.index(split)


def in_halves_on_oom(attacker, x, y, gen):
    """attacker(x, y); when CUDA runs out of memory, the same on each half of the batch."""
    try:
        return attacker(x, y, generator=gen)
    except torch.cuda.OutOfMemoryError:
        if len(x) == 1:
            raise
        torch.cuda.empty_cache()
        log.warning("CUDA out of memory on a batch of %d; retrying in halves (lower attack.batch_size to "
                    "avoid this)", len(x))
        h = len(x) // 2
        return torch.cat([in_halves_on_oom(attacker, x[:h], y[:h], gen), in_halves_on_oom(attacker, x[h:], y[h:], gen)])


def attack_split(g, attacker, target, images, labels, index, batch_size, gen, device, label):
    """Attack images[index] batch by batch, reading and writing one batch at a time."""
    n = len(index)
    shape = to_tensor(images[:1]).shape[1:]  # (channels, height, width), as the target takes them
    x_adv = g.create_dataset("x_adv", shape=(n, *shape), dtype="float32",
                             chunks=(min(batch_size, n), *shape), track_times=False)
    pred = g.create_dataset("pred", shape=(n,), dtype="int64", track_times=False)
    g.create_dataset("index", data=index, track_times=False)
    g.create_dataset("y", data=labels[index], track_times=False)
    fooled, ck = 0, checkpoints.current()
    for b, s in enumerate(tqdm(list(batches(n, batch_size)), desc=label, mininterval=2)):
        def batch(s=s):
            xb = to_tensor(images[index[s]]).to(device)  # index is sorted: h5py reads just these rows
            yb = torch.from_numpy(labels[index[s]]).to(device)
            adv = in_halves_on_oom(attacker, xb, yb, gen)
            with torch.no_grad():
                return {"x_adv": adv.cpu(), "pred": target(adv).argmax(1).cpu()}
        done = ck.step(f"{label} batch {b}", batch, gen)  # a stopped run's batches are read back
        x_adv[s] = done["x_adv"].numpy()
        pred[s] = done["pred"].numpy()
        fooled += int((done["pred"].numpy() != labels[index[s]]).sum())
    log.info("%s: %d examples, target accuracy on them %.4f", label, n, 1 - fooled / n)
