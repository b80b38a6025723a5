"""The defended model an attacker faces: a defence's module, built for the target's input and loaded from its
file, in front of the target (or, for a defence that replaces the classifier, the defence alone). Below the
stages that evaluate and show defences (evaluate, report) and the scripts that check them."""
from __future__ import annotations

import torch

from . import targets
from .defences import Defence
from .io import ArtifactError
from .training import load_module


def defended_model(defence: Defence, module: torch.nn.Module, target: torch.nn.Module) -> torch.nn.Module:
    """The classifier an attacker faces: target(defence(x)) for a preprocessor, the defence itself otherwise."""
    model = torch.nn.Sequential(module, target) if defence.kind == "preprocessor" else module
    return model.eval().requires_grad_(False)


def load_defence(d, p: dict, model_path: str | None, device, shape: tuple) -> tuple[torch.nn.Module, dict]:
    """The defence's module (trained weights loaded from model_path, if it has any) and their meta, in front
    of a target taking images of `shape` (C, H, W)."""
    if d.kind == "classifier":  # a network of the target's architecture: its file names which
        module, meta, _ = targets.load(model_path, device)
        return module, meta
    refused = d.refusal(shape)
    if refused:
        raise ArtifactError(f"{refused}: the target's input; allowed: a target.architecture taking that shape")
    module = d.build(d.params_of(p), tuple(shape))
    if model_path is None:
        return module.to(device).eval(), {}
    return load_module(model_path, module, device)
