"""train_target: the target (`target.architecture`, the paper's LeNet by default) on clean images (Adam,
cross-entropy); saves it, its architecture and its clean accuracy."""
from __future__ import annotations

import logging

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import checkpoints, targets
from ..io import atomic_path, provenance, save_model, write_json
from ..training import batches, load_split, predict, setup

log = logging.getLogger(__name__)


def run(p, inp, out, dataset):
    device = setup(p)
    cfg = p["target"]
    x_train, y_train = load_split(inp["prepared"], "train")
    x_test, y_test = load_split(inp["prepared"], "test")
    t = targets.declared(cfg["architecture"])
    for split, (x, y) in {"train": (x_train, y_train), "test": (x_test, y_test)}.items():
        targets.check_data(t, x.shape, y, f"{inp['prepared']} ({split} split)")
    model = t.build(t.classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(p["seed"])
    rows = []
    for epoch in checkpoints.epochs(cfg["epochs"], {"model": model, "opt": opt, "gen": gen}, rows,
                                    f"{dataset} target"):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total, correct, seen = 0.0, 0, 0
        for s in tqdm(list(batches(len(order), cfg["batch_size"])), desc=f"{dataset} target epoch {epoch}",
                      mininterval=2, leave=False):
            idx = order[s]
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        test_acc = float((predict(model, x_test, device) == y_test).float().mean())
        rows.append({"epoch": epoch, "loss": total / seen, "train_accuracy": correct / seen,
                     "test_accuracy": test_acc})
        log.info("%s target epoch %d/%d: loss %.4f, train %.4f, clean test %.4f", dataset, epoch,
                 cfg["epochs"], total / seen, correct / seen, test_acc)
    metrics = {"dataset": dataset, "clean_test_accuracy": rows[-1]["test_accuracy"],
               "train_size": len(x_train), "test_size": len(x_test), "epochs": cfg["epochs"], "architecture": t.name}
    save_model(out["target"], model, {**provenance("train_target", p, {"prepared": inp["prepared"]}),
                                      "dataset": dataset, "architecture": t.name,
                                      "metrics": metrics})
    write_json(out["metrics"], metrics)
    with atomic_path(out["log"]) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
