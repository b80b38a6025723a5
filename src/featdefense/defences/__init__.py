"""Defences: one module each, found here by name, each evaluated and reported the same way.

A defence module defines `DEFENCE = Defence(...)`: its name, its row label, what kind of module it is
(a `preprocessor` mapping images to images in front of the target, or a `classifier` replacing the
target), how to build that module from its params section `defences.<name>` (with the JSON schema of
that section), and, when it learns, a `train(p, inp, out, dataset)` function. The stage graph
(pipeline.py) gives every defence an `evaluate_<name>` stage, a `train_<name>` stage when it trains, and
its rows in the report: nothing else needs to know about it. See README, "Adding a defence".
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

KINDS = ("preprocessor", "classifier")
# What a training stage may read, by name (the paths are the stage graph's, in pipeline.py).
TRAIN_INPUTS = ("prepared", "target", "fgsm", "pgd", "loss_net")


@dataclass(frozen=True)
class Defence:
    name: str
    label: str                                  # its name in the report's tables
    kind: str                                   # "preprocessor" | "classifier"
    build: Callable[[dict], nn.Module]          # (its params section, {} without one) -> the module
    schema: dict | None = None                  # JSON schema of params.yaml `defences.<name>`; None: no section
    train: Callable | None = None               # train(p, inp, out, dataset) -> writes out["model"], out["log"]
    train_inputs: tuple[str, ...] = ()          # what the training reads, out of TRAIN_INPUTS
    train_params: tuple[str, ...] = ()          # params it reads besides seed/device/threads and its section
    code: tuple[str, ...] = ()                  # files it uses besides its own module and what that imports
    trained_by: str | None = None               # a stage of the graph that trains it (the paper's denoiser)
    paper_key: str | None = None                # its rows in paper_results.yaml, if the paper has them
    order: int = 100                            # position in tables and figures
    description: str = ""
    module: str = field(default="", compare=False)  # filled in by discovery: its source file

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"defence {self.name}: kind {self.kind!r} is not one of {KINDS}")
        unknown = set(self.train_inputs) - set(TRAIN_INPUTS)
        if unknown:
            raise ValueError(f"defence {self.name}: unknown train_inputs {sorted(unknown)}; allowed {TRAIN_INPUTS}")

    @property
    def section(self) -> str | None:
        """Its params.yaml section (dotted), or None."""
        return f"defences.{self.name}" if self.schema is not None else None

    @property
    def trains(self) -> bool:
        return self.train is not None or self.trained_by is not None

    def params_of(self, p: dict) -> dict:
        return p.get("defences", {}).get(self.name, {}) if self.schema is not None else {}


def _discover() -> dict[str, Defence]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        d = getattr(module, "DEFENCE", None)
        if isinstance(d, Defence):
            object.__setattr__(d, "module", f"defences/{info.name}.py")
            found.append(d)
    names = [d.name for d in found]
    if len(set(names)) != len(names):
        raise ValueError(f"two defence modules share a name: {sorted(names)}")
    return {d.name: d for d in sorted(found, key=lambda d: (d.order, d.name))}


DEFENCES: dict[str, Defence] = _discover()


def defended_model(defence: Defence, module: nn.Module, target: nn.Module) -> nn.Module:
    """The classifier an attacker faces: target(defence(x)) for a preprocessor, the defence itself otherwise."""
    model = nn.Sequential(module, target) if defence.kind == "preprocessor" else module
    return model.eval().requires_grad_(False)


class _StraightThrough(nn.Module):
    """target(defence(x)) forward; backward as if the defence were the identity (BPDA, Athalye et al. 2018)."""

    def __init__(self, module: nn.Module, target: nn.Module):
        super().__init__()
        self.module, self.target = module, target

    def forward(self, x):
        return self.target(x + (self.module(x) - x).detach())


def bpda_model(module: nn.Module, target: nn.Module) -> nn.Module:
    """The BPDA surrogate of a preprocessor defence: its predictions, the target's gradients."""
    return _StraightThrough(module, target).eval().requires_grad_(False)


__all__ = ["Defence", "DEFENCES", "KINDS", "TRAIN_INPUTS", "bpda_model", "defended_model"]
