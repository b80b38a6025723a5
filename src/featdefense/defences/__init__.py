"""Defences: one module each, found here by name, each evaluated and reported the same way.

A defence module defines `DEFENCE = Defence(...)`: its name, its row label, what kind of module it is
(a `preprocessor` mapping images to images in front of the target, built by `build` from its params
section `defences.<name>` and the target's input shape (channels, height, width), `input_shape` naming the
one shape it takes if it cannot take any; or a `classifier` replacing the target, a network of the target's
architecture whose model file names it), the JSON schema of its section, and, when it learns, a
`train(p, inp, out, dataset)` function. The stage graph
(pipeline.py) gives every defence an `evaluate_<name>` stage, a `train_<name>` stage when it trains, and
its rows in the report: nothing else needs to know about it. See docs/add-a-defence.md.

Declared and found as every plug-in kind is (plugins.py): read from the source, not imported; DEFENCE's
arguments are literals, but `build` may be any expression and `train` names a function of the module (or
one it imports): both are imported on first call.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .. import plugins
from ..attacks import NAMES as ATTACK_NAMES
from ..plugins import Deferred, Kind

if TYPE_CHECKING:
    from torch import nn

KINDS = ("preprocessor", "classifier")
# What a training stage may read, by name (the paths are the stage graph's, in pipeline.py): each attack
# module's files by the attack's name.
TRAIN_INPUTS = ("prepared", "target", *ATTACK_NAMES, "loss_net")


@dataclass(frozen=True)
class Defence:
    name: str
    label: str                                  # its name in the report's tables
    kind: str                                   # "preprocessor" | "classifier"
    build: Callable[[dict, tuple], nn.Module] | None = None  # (its params section, {} without one; the target's
    #                                             input shape (C, H, W)) -> a preprocessor; a classifier is a
    #                                             network of the target's architecture (targets)
    input_shape: tuple[int, int, int] | None = None  # the one input shape a preprocessor takes (None: any)
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
        if (self.build is None) != (self.kind == "classifier"):
            raise ValueError(f"defence {self.name}: a preprocessor declares build, a classifier does not (its "
                             "network is the target's architecture, its weights its model file)")
        if self.kind == "classifier" and not self.trains:
            raise ValueError(f"defence {self.name}: a classifier trains (its weights are the defence)")
        if self.input_shape is not None:
            plugins.check_image_spec(f"defence {self.name}", "input_shape", self.input_shape, 2)
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

    def refusal(self, shape: tuple) -> str | None:
        """Why this defence cannot stand in front of a target taking images of `shape` (None: it can)."""
        if self.input_shape is not None and tuple(shape) != tuple(self.input_shape):
            return (f"defence {self.name} ({self.module}) takes images of shape {tuple(self.input_shape)} "
                    f"(its input_shape), not {tuple(shape)}")
        return None

    def params_of(self, p: dict) -> dict:
        return p.get("defences", {}).get(self.name, {}) if self.schema is not None else {}


KIND = Kind("DEFENCE", Defence, expressions=("build",), functions=("train",))


def declaration(path: Path, module: str) -> Defence | None:
    """The Defence a module's `DEFENCE = Defence(...)` declares, read from its source (None: it has none)."""
    return plugins.declaration(KIND, path, module)


DEFENCES: dict[str, Defence] = plugins.discover(KIND, __path__[0], __name__)

__all__ = ["Defence", "DEFENCES", "Deferred", "KINDS", "TRAIN_INPUTS", "declaration"]
