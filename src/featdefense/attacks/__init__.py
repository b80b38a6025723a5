"""Untargeted L-infinity attacks on images in [0, 1]: one small class per attack, a single forward."""
from .fgsm import FGSM
from .pgd import PGD

ATTACKS = {"fgsm": FGSM, "pgd": PGD}


def build(name: str, model, spec: dict):
    """The attack `name` against `model`, configured from its params.yaml section `attack.<name>`."""
    return ATTACKS[name](model, **spec)


__all__ = ["FGSM", "PGD", "ATTACKS", "build"]
