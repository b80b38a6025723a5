"""loss_net: the frozen VGG-16 (convolutional part) of the feature loss, as a tracked artifact.

weights: imagenet1k_v1 downloads torchvision's IMAGENET1K_V1 (hash-checked by torchvision);
file loads a local state dict whose SHA-256 params.yaml names; random is a seeded random init, for
tests and smoke runs only, and every log, metric and report says so.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from .. import FeatdefenseError
from ..io import file_digest, provenance, save_model
from ..locations import LOCAL_FILE, location
from ..models.vgg import vgg16_features

log = logging.getLogger(__name__)


def _features_only(state: dict) -> dict:
    """Accept a state dict of vgg16() ('features.N.*') or of vgg16().features ('N.*')."""
    if any(k.startswith("features.") for k in state):
        return {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    return state


def imagenet1k_v1() -> tuple[dict, str]:
    from torchvision.models import VGG16_Weights

    weights = VGG16_Weights.IMAGENET1K_V1
    try:
        state = weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:
        raise FeatdefenseError(
            f"loss_net: could not download torchvision's VGG16 {weights.name} weights from {weights.url} "
            f"({e}). Offline, set loss_net.weights: file with loss_net.sha256 and the matching "
            f"loss_net.preprocessing, and the file's path as loss_net in {LOCAL_FILE} (see docs/run.md, "
            f"'Offline sources').") from None
    return _features_only(state), weights.url


def from_file(path: str | None, sha256: str) -> tuple[dict, str]:
    if not path or not Path(path).is_file():
        raise FeatdefenseError(f"loss_net.weights: file needs the state dict's path as loss_net in {LOCAL_FILE} "
                               f"(found {path!r}); allowed: an existing file whose SHA-256 is loss_net.sha256")
    found = file_digest(path)
    if found != sha256:
        raise FeatdefenseError(f"loss_net file {path}: SHA-256 mismatch: expected {sha256} "
                               f"(loss_net.sha256), found {found}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FeatdefenseError(f"loss_net file {path}: not a readable state dict: {e}") from None
    return _features_only(state), f"file with SHA-256 {sha256}"


def run(p, inp, out):
    cfg = p["loss_net"]
    torch.manual_seed(p["seed"])
    features = vgg16_features()
    if cfg["weights"] == "random":
        origin = f"random init (seed {p['seed']})"
        log.warning("LOSS NETWORK HAS RANDOM WEIGHTS (loss_net.weights: random): fine for tests and smoke "
                    "runs, not the paper's ImageNet VGG-16")
    else:
        state, origin = (imagenet1k_v1() if cfg["weights"] == "imagenet1k_v1"
                         else from_file(location("loss_net"), cfg["sha256"]))
        try:
            features.load_state_dict(state)
        except RuntimeError as e:
            raise FeatdefenseError(f"loss_net: the weights from {origin} do not fit VGG-16's features: "
                                   f"{e}") from None
    # The file's path is not a param: the same weights found elsewhere give the same artifact.
    meta = {**provenance("loss_net", p, {}),
            "weights": cfg["weights"], "origin": origin, "preprocessing": cfg["preprocessing"],
            "random": cfg["weights"] == "random"}
    save_model(out["loss_net"], features, meta)
    log.info("loss network: VGG-16 features from %s, %s preprocessing", origin, cfg["preprocessing"])
