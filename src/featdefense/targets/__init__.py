"""Targets: the classifier under attack, one module per architecture, chosen by `target.architecture`.

A target module defines `TARGET = Target(...)` (declared and found as every plug-in kind is: plugins.py): its
name, its label in the reports, the input it takes (`input_shape`: channels, height, width, images in
[0, 1]), how many classes it tells apart, and `build(classes)`, any expression, giving the network. The
paper's LeNet (lenet.py) is the default; cnn.py is a larger network on the same input (issue 20's CIFAR-10
question). A target's model file records its architecture (`architecture` in its meta): every stage that
reads the file builds that network, whatever params.yaml says now, so a stage's input, not a param, decides
what it loads. Madry's robust classifier is a network of the target's architecture too, and its file says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .. import plugins
from ..plugins import Kind

if TYPE_CHECKING:
    from torch import nn

# what a target's model file from before targets were plug-ins holds: they were all the paper's LeNet
BEFORE_PLUGINS = "lenet"


@dataclass(frozen=True)
class Target:
    name: str
    label: str                                  # its name in the reports
    input_shape: tuple[int, int, int]           # (channels, height, width) of the images it classifies
    classes: int                                # how many classes it tells apart (labels 0 .. classes - 1)
    build: Callable[[int], nn.Module]           # (classes) -> the untrained network
    description: str = ""
    order: int = 100                            # position in listings
    module: str = field(default="", compare=False)  # filled in by discovery: its source file

    def __post_init__(self):
        plugins.check_image_spec(f"target {self.name}", "input_shape", self.input_shape, self.classes)


KIND = Kind("TARGET", Target, expressions=("build",))
TARGETS: dict[str, Target] = plugins.discover(KIND, __path__[0], __name__)


def modules() -> tuple[str, ...]:
    """Every target module's source file (under src/featdefense): the code of each stage that builds one."""
    return tuple(t.module for t in TARGETS.values())


def declared(name: str) -> Target:
    return plugins.lookup(TARGETS, name, "target.architecture")


def architecture(meta: dict) -> Target:
    """The target a model file's meta says it holds."""
    return declared(meta.get("architecture", BEFORE_PLUGINS))


def check_data(t: Target, x_shape: tuple, labels, where: str) -> None:
    """Refuse, before anything computes, images whose shape is not the target's input or labels it cannot
    tell apart. x_shape: (N, C, H, W)."""
    from ..io import ArtifactError

    if tuple(x_shape[1:]) != t.input_shape:
        raise ArtifactError(f"{where}: images of shape {tuple(x_shape[1:])} (channels, height, width), but target "
                            f"{t.name} takes {t.input_shape}; allowed: a dataset of that shape, or another "
                            f"target.architecture ({sorted(TARGETS)})")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= t.classes:
        raise ArtifactError(f"{where}: labels {low} .. {high}, but target {t.name} tells apart {t.classes} classes; "
                            f"allowed: 0 .. {t.classes - 1}")


def load(path: str | Path, device) -> tuple[nn.Module, dict, Target]:
    """A model file holding a network of a target's architecture: the network (eval mode, on device), the
    file's meta and the declaration."""
    from ..training import load_module

    found = []
    module, meta = load_module(path, lambda meta: (found.append(architecture(meta)) or found[0].build(found[0].classes)),
                               device)
    return module, meta, found[0]


__all__ = ["Target", "TARGETS", "KIND", "architecture", "check_data", "declared", "load", "modules"]
