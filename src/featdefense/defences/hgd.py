"""hgd: a high-level representation guided denoiser (Liao et al. 2018), small enough for 28x28 images.

A small U-Net (two 2x down-samplings, skip connections) predicts the adversarial noise; the denoised
image is x - noise (Liao et al.'s x^ = x* - dx^), given to the target as it is, unclipped, in training and
evaluation alike: one function, which the attacker differentiates. Both clips tried before failed to
train: a plain clip's zero gradient let training on grayscale CIFAR-10 settle on a constant image (10% clean
accuracy, results/cpu-real-fast); a clip passing the gradient on as if it were not there let MNIST training
run away (pixels pushed past the range by a gradient that the clipped loss never answers: LGD loss 26.0,
then 86.6 from epoch 3 on, every image class 1; results/cpu-real-checked/plots/mnist/hgd_train.csv). It
learns from the same adversarial train examples as our denoiser and, with `train_on: [clean, ...]`, from
their clean images as well (a denoiser must leave those as they are), with the LGD loss ||f(x) - f(x_d)||_1
between the frozen target's logits on the clean image x and on the denoised image x_d.
"""
from __future__ import annotations

import logging

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .. import checkpoints, targets
from ..io import atomic_path, load_model_file, provenance, save_model
from ..training import batches, load_split, load_train_examples, setup
from . import Defence

log = logging.getLogger(__name__)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU())


class UNet(nn.Module):
    """C x H x W -> C x H x W: encoder H -> H/2 -> H/4 (28 -> 14 -> 7), decoder back up with skip connections.
    A height or width that is not a multiple of 4 is padded (reflected) to one, the noise cropped back."""

    def __init__(self, width: int = 8, channels: int = 1):
        super().__init__()
        w = width
        self.enc1, self.enc2, self.bottom = _block(channels, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.pool = nn.MaxPool2d(2)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2), _block(4 * w, 2 * w)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2), _block(2 * w, w)
        self.noise = nn.Conv2d(w, channels, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        padded = F.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect") if (h % 4 or w % 4) else x
        e1 = self.enc1(padded)                                      # w x H x W
        e2 = self.enc2(self.pool(e1))                               # 2w x H/2 x W/2
        b = self.bottom(self.pool(e2))                              # 4w x H/4 x W/4
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))             # 2w x H/2 x W/2
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))            # w x H x W
        return x - self.noise(d1)[..., :h, :w]  # unclipped (see the module's docstring)


def lgd_loss(target: nn.Module, x_clean: torch.Tensor, x_denoised: torch.Tensor) -> torch.Tensor:
    """||f(x) - f(x_d)||_1 on the target's logits, averaged over the batch."""
    with torch.no_grad():
        reference = target(x_clean)
    return (target(x_denoised) - reference).abs().sum(1).mean()


def train(p, inp, out, dataset):
    device = setup(p)
    cfg = p["defences"]["hgd"]
    architecture = targets.architecture(load_model_file(inp["target"])["meta"])
    # built first: its initial weights are the seed's first draws, whatever is built after it (the target's
    # random init, which its weights then replace)
    model = UNet(cfg["width"], architecture.input_shape[0]).to(device)
    target, _, _ = targets.load(inp["target"], device)
    target.requires_grad_(False)
    x_adv, index = load_train_examples(inp, cfg["train_on"])  # a clean image is its own target
    x_clean, _ = load_split(inp["prepared"], "train", index)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    gen = torch.Generator().manual_seed(p["seed"])
    rows = []
    log.info("%s hgd: %d train examples (%s), width %d, %d epochs", dataset, len(x_adv),
             "+".join(cfg["train_on"]), cfg["width"], cfg["epochs"])
    for epoch in checkpoints.epochs(cfg["epochs"], {"model": model, "opt": opt, "gen": gen}, rows,
                                    f"{dataset} hgd"):
        model.train()
        order = torch.randperm(len(x_adv), generator=gen)
        total = 0.0
        for s in tqdm(list(batches(len(order), cfg["batch_size"])), desc=f"{dataset} hgd epoch {epoch}",
                      mininterval=2, leave=False):
            i = order[s]
            loss = lgd_loss(target, x_clean[i].to(device), model(x_adv[i].to(device)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(i)
        rows.append({"epoch": epoch, "lgd_loss": total / len(order)})
        log.info("%s hgd epoch %d/%d: LGD loss %.4f", dataset, epoch, cfg["epochs"], total / len(order))
    save_model(out["model"], model, {**provenance("train_hgd", p, inp), "dataset": dataset,
                                     "train_examples": len(x_adv), "final": rows[-1]})
    with atomic_path(out["log"]) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


_POS = {"type": "integer", "minimum": 1}
DEFENCE = Defence(
    name="hgd", label="HGD (2018)", kind="preprocessor", build=lambda cfg, shape: UNet(cfg["width"], shape[0]),
    train=train,
    train_inputs=("prepared", "target", "fgsm", "pgd"), paper_key="hgd", order=20,
    description="U-Net denoiser trained with the high-level guided loss on the target's logits",
    schema={
        "type": "object", "additionalProperties": False,
        "required": ["width", "train_on", "epochs", "batch_size", "lr"],
        "properties": {
            "width": _POS,
            "train_on": {"type": "array", "uniqueItems": True, "items": {"enum": ["clean", "fgsm", "pgd"]},
                         "contains": {"enum": ["fgsm", "pgd"]}},
            "epochs": _POS, "batch_size": _POS,
            "lr": {"type": "number", "exclusiveMinimum": 0},
        },
    })
