"""The feature (perceptual) loss of the paper, Johnson et al. style.

L = sum_i w_i ||F_i(x) - F_i(x_d)||^2 + w_pixel ||x - x_d||^2, x the clean image, x_d the denoised one.
weighting "numel" (the paper): w = 1 / (elements of the term), i.e. every term is a mean square.
weighting "clean_mean_square": every mean square is further divided by the mean square of the clean
maps (or pixels) over the training set, so that terms of very different scale weigh alike.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PIXEL = "pixel"


def term_names(layers: list[str], pixel: bool) -> list[str]:
    return list(layers) + ([PIXEL] if pixel else [])


def mean_squares(features: dict[str, torch.Tensor], x: torch.Tensor | None) -> dict[str, float]:
    """Mean square of each clean map (and of the pixels): the clean_mean_square normalisers."""
    out = {name: float(f.double().pow(2).mean()) for name, f in features.items()}
    if x is not None:
        out[PIXEL] = float(x.double().pow(2).mean())
    return out


def feature_loss_terms(clean_features: dict[str, torch.Tensor], denoised_features: dict[str, torch.Tensor],
                       clean: torch.Tensor | None, denoised: torch.Tensor | None,
                       scale: dict[str, float]) -> dict[str, torch.Tensor]:
    """Each weighted term of L; their sum is the loss. `scale` divides each mean square."""
    terms = {name: F.mse_loss(denoised_features[name], clean_features[name]) / scale.get(name, 1.0)
             for name in clean_features}
    if clean is not None:
        terms[PIXEL] = F.mse_loss(denoised, clean) / scale.get(PIXEL, 1.0)
    return terms
