"""ours: the paper's denoising autoencoder, trained on adversarial train examples against the clean image
with the feature loss of a frozen VGG-16 (params sections `feature_loss` and `denoiser`, the paper's
method; its stage keeps the paper's name, train_denoiser). The clean images' VGG features are computed
once, before training."""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from .. import checkpoints
from ..io import ArtifactError, atomic_path, provenance, save_model
from ..losses import feature_loss_terms, mean_squares, term_names
from ..models.autoencoder import Denoiser
from ..models.vgg import LossNetwork, vgg16_features
from ..training import batches, load_module, load_split, load_train_examples, setup
from . import Defence

log = logging.getLogger(__name__)


@torch.no_grad()
def clean_features(loss_net, x: torch.Tensor, device, batch_size: int = 500) -> dict[str, torch.Tensor]:
    parts = [loss_net(x[s].to(device)) for s in batches(len(x), batch_size)]
    return {name: torch.cat([part[name] for part in parts]) for name in loss_net.layers}


def train(p, inp, out, dataset):
    """The stage train_denoiser (the paper's name for it): the model and its training log."""
    device = setup(p)
    # built first: its initial weights are the seed's first draws, whatever is built after it (the loss
    # network's random init, which its weights then replace)
    model = Denoiser().to(device)
    cfg, fl = p["denoiser"], p["feature_loss"]
    x_adv, index = load_train_examples(inp, cfg["train_on"])
    unique, position = np.unique(index, return_inverse=True)
    x_clean, _ = load_split(inp["prepared"], "train", unique)
    refused = DEFENCE.refusal(x_clean.shape[1:])
    if refused:
        raise ArtifactError(f"{inp['prepared']}: {refused}; allowed: a dataset of that shape")
    x_clean = x_clean.to(device)
    position = torch.from_numpy(position)

    features, loss_meta = load_module(inp["loss_net"], vgg16_features(), device)
    loss_net = LossNetwork(features, fl["layers"], fl["input_size"], loss_meta["preprocessing"]).to(device)
    if loss_meta["random"]:
        log.warning("the loss network has RANDOM weights (loss_net.weights: random)")
    target_features = clean_features(loss_net, x_clean, device)
    scale = {}
    if fl["weighting"] == "clean_mean_square":
        scale = mean_squares(target_features, x_clean if fl["pixel"] else None)
        log.info("clean mean squares (term normalisers): %s", scale)

    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    gen = torch.Generator().manual_seed(p["seed"])
    names = term_names(fl["layers"], fl["pixel"])
    rows = []
    log.info("%s denoiser: %d training examples (%s) of %d clean images, %d epochs", dataset, len(x_adv),
             "+".join(cfg["train_on"]), len(unique), cfg["epochs"])
    for epoch in checkpoints.epochs(cfg["epochs"], {"model": model, "opt": opt, "gen": gen}, rows,
                                    f"{dataset} denoiser"):
        model.train()
        order = torch.randperm(len(x_adv), generator=gen)
        sums = dict.fromkeys(names, 0.0)
        for s in tqdm(list(batches(len(order), cfg["batch_size"])), desc=f"{dataset} denoiser epoch {epoch}",
                      mininterval=2, leave=False):
            i = order[s]
            pos = position[i].to(device)
            denoised = model(x_adv[i].to(device))
            terms = feature_loss_terms({k: v[pos] for k, v in target_features.items()}, loss_net(denoised),
                                       x_clean[pos] if fl["pixel"] else None, denoised, scale)
            loss = sum(terms.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            for k, v in terms.items():
                sums[k] += float(v.detach()) * len(i)
        row = {"epoch": epoch, "loss": sum(sums.values()) / len(order),
               **{k: v / len(order) for k, v in sums.items()}}
        rows.append(row)
        log.info("%s denoiser epoch %d/%d: loss %.6g (%s)", dataset, epoch, cfg["epochs"], row["loss"],
                 ", ".join(f"{k} {row[k]:.4g}" for k in names))
    meta = {**provenance("train_denoiser", p, inp), "dataset": dataset,
            "loss_net": {k: loss_meta[k] for k in ("weights", "origin", "preprocessing", "random")},
            "feature_loss": fl, "scale": scale, "train_examples": len(x_adv), "clean_images": len(unique),
            "final_loss": rows[-1]}
    save_model(out["denoiser"], model, meta)
    with atomic_path(out["log"]) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


DEFENCE = Defence(
    name="ours", label="ours (feature-loss denoiser)", kind="preprocessor", build=lambda _, shape: Denoiser(),
    input_shape=(1, 28, 28),  # the paper's autoencoder: its strides and kernels give back exactly this size
    trained_by="train_denoiser", paper_key="ours", order=30,
    description="the paper's autoencoder trained with the VGG-16 feature loss")
