"""Attacks: untargeted L-infinity attacks on images in [0, 1], one module each (one small class, a single
forward), found here by name; every attack module runs.

An attack module defines `ATTACK = Attack(...)` (declared and found as every plug-in kind is: plugins.py): its
name (its params section `attack.<name>`, its attack files `data/adversarial/<dataset>/<name>.h5`, its report
columns), its label, `build(model, **section)`, any expression, giving the attack (called as
`attack(images, labels, generator=None)`, returning adversarial images), and the JSON schema of its section,
which has an `epsilon`. An `iterative` attack's section also has steps, step_size and random_start, and it
takes `best=True` (an image counts as broken if any iterate fooled the model): the white-box cascade, the
robustness curve and the sanity checks are built on one (`whitebox.attack`, the paper's PGD). The stage graph,
the schema, the evaluation and the report learn the set from the modules; see docs/add-an-attack.md.

apgd.py and autoattack.py (the evaluation's independent attacks) and loss.py declare none: they are not the
pipeline's attacks. The classes import torch: import them from their modules (`from featdefense.attacks.pgd
import PGD`); this package imports none of them (a module imports the package for `Attack`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .. import plugins
from ..plugins import Kind

ITERATIVE = ("epsilon", "steps", "step_size", "random_start")  # what an iterative attack's section holds


@dataclass(frozen=True)
class Attack:
    name: str
    label: str                                  # its name in the reports ("PGD")
    build: Callable                             # (model, **its section) -> attack(images, labels, generator=None)
    schema: dict                                # JSON schema of params.yaml `attack.<name>`: epsilon, and more
    iterative: bool = False                     # ITERATIVE in its section, and it takes best=True
    order: int = 100                            # position in tables
    description: str = ""
    module: str = field(default="", compare=False)  # filled in by discovery: its source file

    def __post_init__(self):
        props = self.schema.get("properties", {}) if isinstance(self.schema, dict) else {}
        need = ITERATIVE if self.iterative else ("epsilon",)
        missing = [k for k in need if k not in props or k not in self.schema.get("required", ())]
        if missing:
            raise ValueError(f"attack {self.name}: schema lacks required {missing}; allowed: a schema whose "
                             f"properties and required include {list(need)}"
                             + (" (an iterative attack)" if self.iterative else ""))

    def built(self, model, spec: dict, **override):
        """The attack against `model` from its section `spec`, with `override` (an evaluation: best=True for an
        iterative attack, another epsilon for a curve)."""
        return self.build(model, **{**spec, **override})


KIND = Kind("ATTACK", Attack, expressions=("build",))
ATTACKS: dict[str, Attack] = plugins.discover(KIND, __path__[0], __name__, named=True)
NAMES = tuple(ATTACKS)  # the stage graph's {attack} wildcard: every attack module


def declared(name: str) -> Attack:
    return plugins.lookup(ATTACKS, name)


def modules() -> tuple[str, ...]:
    """Every attack module's source file (under src/featdefense)."""
    return tuple(a.module for a in ATTACKS.values())


def labels() -> dict[str, str]:
    """What an evaluation's accuracy holds, with its label in reports: clean, then each attack grey-box."""
    return {"clean": "clean", **{n: a.label for n, a in ATTACKS.items()}}


def accuracy_keys() -> tuple[str, ...]:
    """Every accuracy an evaluation records: clean, each attack grey-box, each attack white-box."""
    return ("clean", *NAMES, *(whitebox(n) for n in NAMES))


def whitebox(name: str) -> str:
    """The key of attack `name`'s white-box accuracy in an evaluation's metrics."""
    return f"whitebox_{name}"


def build(name: str, model, spec: dict):
    """The attack `name` against `model`, configured from its params.yaml section `attack.<name>`."""
    return declared(name).built(model, spec)


__all__ = ["Attack", "ATTACKS", "ITERATIVE", "KIND", "NAMES", "accuracy_keys", "build", "declared", "labels",
           "modules", "whitebox"]
