"""Every plug-in kind (defence, target, dataset, attack) is declared the same way and found the same way
(featdefense.plugins): what the stage graph reads from a module's source is what importing it makes."""
from __future__ import annotations

import dataclasses
import importlib

import pytest

from featdefense import attacks, datasets, defences, targets

KINDS = {k.KIND.variable: (k.KIND, found) for k, found in [(defences, defences.DEFENCES), (targets, targets.TARGETS),
                                                          (datasets, datasets.DATASETS), (attacks, attacks.ATTACKS)]}
CASES = [(variable, name) for variable, (_, found) in KINDS.items() for name in found]


def test_every_kind_ships_plug_ins():
    assert {v: len(found) for v, (_, found) in KINDS.items()} == {"DEFENCE": 5, "TARGET": 2, "DATASET": 3, "ATTACK": 2}


@pytest.mark.parametrize("variable, name", CASES, ids=[f"{v.lower()}-{n}" for v, n in CASES])
def test_a_declaration_read_from_source_is_the_one_the_module_makes(variable, name):
    """Literal fields equal; a function field names the module's function (its stage runs it by name); an
    expression field, imported on first call, is the module's own object."""
    kind, found = KINDS[variable]
    read = found[name]
    made = getattr(importlib.import_module("featdefense." + read.module.removesuffix(".py").replace("/", ".")),
                   kind.variable)
    for f in dataclasses.fields(kind.cls):
        ours, theirs = getattr(read, f.name), getattr(made, f.name)
        if f.name == "module":
            continue
        if f.name in kind.functions:
            assert (ours.runner if ours else None) == \
                (f"{theirs.__module__}:{theirs.__name__}" if theirs else None), f.name
        elif f.name in kind.expressions:
            assert (ours is None) == (theirs is None) and (ours is None or ours.resolve() is theirs), f.name
        else:
            assert ours == theirs, f.name
