"""Untargeted L-infinity attacks on images in [0, 1]: one small class per attack, a single forward.

NAMES is what the stage graph needs (the {attack} wildcard); the classes, which import torch, load on first
use (`from featdefense.attacks import PGD` works as ever)."""
NAMES = ("fgsm", "pgd")  # the pipeline's attacks, by their params.yaml sections `attack.<name>`


def _load() -> dict:
    from .fgsm import FGSM
    from .pgd import PGD

    return {"FGSM": FGSM, "PGD": PGD, "ATTACKS": dict(zip(NAMES, (FGSM, PGD)))}


def __getattr__(name: str):
    if name in ("FGSM", "PGD", "ATTACKS"):
        globals().update(_load())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build(name: str, model, spec: dict):
    """The attack `name` against `model`, configured from its params.yaml section `attack.<name>`."""
    return _load()["ATTACKS"][name](model, **spec)


__all__ = ["FGSM", "PGD", "ATTACKS", "NAMES", "build"]
