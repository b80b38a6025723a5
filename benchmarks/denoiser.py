#!/usr/bin/env python3
"""Benchmark: the denoiser's training step (train_denoiser) as the stage runs it, the clean images' VGG-16
features computed once before training, against the same loss computed naively, the clean features
recomputed at every step; samples per second of an epoch's steps and GFLOP/s against this machine's measured fp32
matrix-product peak, in one process.

    python benchmarks/denoiser.py [--samples 2048] [--batch-size 128] [--threads 1]
    python benchmarks/denoiser.py --smoke      # seconds: proves it runs (CI)

The loss network has random weights here (speed does not depend on them): the paper's layers relu2_2,
relu3_3 and relu4_3 at 16x16, and the pixel term. Not a test: nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from featdefense.defences.ours import clean_features  # noqa: E402
from featdefense.losses import feature_loss_terms  # noqa: E402
from featdefense.models.autoencoder import Denoiser  # noqa: E402
from featdefense.models.vgg import LossNetwork, vgg16_features  # noqa: E402
from pgd import cpu_name, matmul_peak, sync  # noqa: E402

LAYERS = ["relu2_2", "relu3_3", "relu4_3"]


def flops_per_sample(loss_net, model, x, naive: bool) -> float:
    """One training step's multiply-adds x 2 per sample: the denoiser forward and backward, the loss
    network's forward on the denoised images and its input gradient, and, naively, its forward on the
    clean images too. Counted by PyTorch's FLOP counter (convolutions and matrix products only), as a
    direct convolution costs: oneDNN may take a 3x3 convolution by Winograd's method, with fewer
    multiplications, so GFLOP/s here can exceed the matrix-product peak."""
    from torch.utils.flop_counter import FlopCounterMode

    cached = None if naive else _features(loss_net, x[:8])
    with FlopCounterMode(display=False) as counter:
        step(loss_net, model, None, x[:8], x[:8], cached)
    return counter.get_total_flops() / 8


def step(loss_net, model, opt, x_adv, x_clean, cached):
    target = cached if cached is not None else _features(loss_net, x_clean)
    denoised = model(x_adv)
    loss = sum(feature_loss_terms(target, loss_net(denoised), x_clean, denoised, {}).values())
    if opt is not None:
        opt.zero_grad()
    loss.backward()
    if opt is not None:
        opt.step()


@torch.no_grad()
def _features(loss_net, x):
    return loss_net(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.samples, a.batch_size = 32, 16
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          "cpu" if a.device == "auto" else a.device)
    torch.manual_seed(0)
    loss_net = LossNetwork(vgg16_features(), LAYERS, 16, "torchvision").to(device)
    x_clean = torch.rand(a.samples, 1, 28, 28, device=device)
    x_adv = (x_clean + 0.2 * torch.randn_like(x_clean)).clamp(0, 1)
    peak = matmul_peak(a.threads, device, 0.3 if a.smoke else 3.0)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{cpu_name()}, {a.threads} thread(s)")
    print(f"device: {device.type} ({where}); torch {torch.__version__}")
    print(f"{a.samples} samples, batches of {a.batch_size}; loss network to relu4_3 at 16x16 (random weights); "
          f"fp32 matrix-product peak measured here: {peak:.1f} GFLOP/s\n")
    print("| training step | samples/s | vs naive | GFLOP/s | of peak | GFLOP per sample |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rates = {}
    for name, naive in (("naive: clean features every step", True), ("ours: clean features once (the stage)", False)):
        model = Denoiser().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        flops = flops_per_sample(loss_net, model, x_clean, naive)
        start = time.perf_counter()
        cached = None if naive else clean_features(loss_net, x_clean, device)
        sync(device)
        if not naive:  # once per run, before the first epoch: not part of an epoch's steps
            once = time.perf_counter() - start
            start = time.perf_counter()
        for s in range(0, a.samples, a.batch_size):
            sl = slice(s, s + a.batch_size)
            step(loss_net, model, opt, x_adv[sl], x_clean[sl],
                 None if naive else {k: v[sl] for k, v in cached.items()})
        sync(device)
        rate = rates[name] = a.samples / (time.perf_counter() - start)
        base = next(iter(rates.values()))
        gflops = rate * flops / 1e9
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {gflops:.1f} | {100 * gflops / peak:.0f}% | "
              f"{flops / 1e9:.3f} |")
    print(f"\n(ours computed the clean features once, before the first epoch: {once:.1f} s for {a.samples} "
          f"samples, {a.samples / once:,.0f} samples/s)")


if __name__ == "__main__":
    main()
