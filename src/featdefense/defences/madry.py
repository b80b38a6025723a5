"""madry: the target's LeNet adversarially trained with PGD from a random start (Madry et al. 2017).

Each batch is replaced by its PGD examples against the current weights (ε, steps and step size from
`defences.madry`; MadryLab's MNIST recipe is 40 steps of 0.01), then the network takes one Adam step on
them. The robust network replaces the target: attacks against it are crafted on it.

`warm_start` starts from the clean target's weights and `ramp_epochs` raises ε (and the step size with it)
linearly over the first epochs to its value (MadryLab's and later work's practice): from a random start
at ε 0.2 on grayscale CIFAR-10 the network collapses to one class (its loss stays at ln 10).
`clean_share` keeps that share of each batch clean (Goodfellow et al. 2014's mixed objective; 0: Madry's
pure adversarial training), and `optimizer` is Adam or SGD with `momentum` (MadryLab's CIFAR-10 recipe).
"""
from __future__ import annotations

import logging

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import checkpoints, targets
from ..attacks.pgd import PGD
from ..io import atomic_path, load_model_file, provenance, save_model
from ..training import batches, load_split, predict, setup, subset
from . import Defence

log = logging.getLogger(__name__)


def train(p, inp, out, dataset):
    device = setup(p)
    cfg = p["defences"]["madry"]
    x_train, y_train = load_split(inp["prepared"], "train")
    keep = torch.from_numpy(subset(len(y_train), cfg["train_size"], p["seed"]))
    x_train, y_train = x_train[keep], y_train[keep]
    x_test, y_test = load_split(inp["prepared"], "test")
    if cfg["warm_start"]:
        model, _, architecture = targets.load(inp["target"], device)
    else:  # the target's own architecture, from random weights (built once: the seed's first draw, as before)
        architecture = targets.architecture(load_model_file(inp["target"])["meta"])
        model = architecture.build(architecture.classes).to(device)
    opt = (torch.optim.Adam(model.parameters(), lr=cfg["lr"]) if cfg["optimizer"] == "adam" else
           torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"]))
    gen = torch.Generator().manual_seed(p["seed"])
    attack_gen = torch.Generator(device=device).manual_seed(p["seed"] + 1)
    rows = []
    log.info("%s madry: %d train images, PGD eps %s, %d steps of %s, %d epochs (eps ramped over %d), from %s, "
             "%s of each batch clean, %s lr %s", dataset, len(x_train), cfg["epsilon"], cfg["steps"], cfg["step_size"],
             cfg["epochs"], cfg["ramp_epochs"], "the clean target" if cfg["warm_start"] else "random weights",
             cfg["clean_share"], cfg["optimizer"], cfg["lr"])
    state = {"model": model, "opt": opt, "gen": gen, "attack_gen": attack_gen}
    for epoch in checkpoints.epochs(cfg["epochs"], state, rows, f"{dataset} madry"):
        scale = min(1.0, epoch / cfg["ramp_epochs"]) if cfg["ramp_epochs"] else 1.0
        attack = PGD(model, epsilon=scale * cfg["epsilon"], steps=cfg["steps"], step_size=scale * cfg["step_size"],
                     random_start=True)
        order = torch.randperm(len(x_train), generator=gen)
        total, correct = 0.0, 0
        for s in tqdm(list(batches(len(order), cfg["batch_size"])), desc=f"{dataset} madry epoch {epoch}",
                      mininterval=2, leave=False):
            xb, yb = x_train[order[s]].to(device), y_train[order[s]].to(device)
            model.eval()
            k = round(cfg["clean_share"] * len(yb))  # the first k stay clean (the batch is shuffled)
            x_adv = xb.clone()
            if k < len(yb):
                x_adv[k:] = attack(xb[k:], yb[k:], generator=attack_gen)
            model.train()
            logits = model(x_adv)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(yb)
            correct += int((logits.argmax(1) == yb).sum())
        clean = float((predict(model, x_test, device) == y_test).float().mean())
        rows.append({"epoch": epoch, "epsilon": scale * cfg["epsilon"], "loss": total / len(order),
                     "adversarial_train_accuracy": correct / len(order),
                     "clean_test_accuracy": clean})
        log.info("%s madry epoch %d/%d: loss %.4f, PGD train accuracy %.4f, clean test %.4f", dataset, epoch,
                 cfg["epochs"], total / len(order), correct / len(order), clean)
    save_model(out["model"], model, {**provenance("train_madry", p, inp), "dataset": dataset,
                                     "architecture": architecture.name, "train_examples": len(x_train),
                                     "final": rows[-1]})
    with atomic_path(out["log"]) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


_POS = {"type": "integer", "minimum": 1}
DEFENCE = Defence(
    name="madry", label="Madry (2017)", kind="classifier", train=train,
    train_inputs=("prepared", "target"),
    paper_key="madry", order=10, description="the target's network adversarially trained with PGD",
    schema={
        "type": "object", "additionalProperties": False,
        "required": ["epsilon", "steps", "step_size", "epochs", "batch_size", "lr", "train_size", "warm_start",
                     "ramp_epochs", "clean_share", "optimizer", "momentum"],
        "properties": {
            "epsilon": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "steps": _POS,
            "step_size": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "epochs": _POS, "batch_size": _POS,
            "lr": {"type": "number", "exclusiveMinimum": 0},
            "train_size": {"oneOf": [{"type": "null"}, _POS]},
            "warm_start": {"type": "boolean", "description": "start from the clean target's weights"},
            "ramp_epochs": {"type": "integer", "minimum": 0,
                            "description": "epochs over which epsilon rises linearly to its value (0: none)"},
            "clean_share": {"type": "number", "minimum": 0, "maximum": 1,
                            "description": "share of each batch trained on clean images (0: pure adversarial)"},
            "optimizer": {"enum": ["adam", "sgd"]},
            "momentum": {"type": "number", "minimum": 0, "maximum": 1, "description": "SGD's momentum"},
        },
    })
