"""Where this machine reads the pipeline's external inputs from: a setting, not a param.

What an input *is* is tracked (the raw files' MD5s under `download.<ds>.checksums`, the VGG-16 file's
`loss_net.sha256`): a change to it reruns everything below. Where it is read from is not: a colleague's
clone, a moved disk or a mirror holding the same bytes reruns nothing. The canonical hosts are the
defaults; `sources.local.yaml` (untracked, like DVC's `config.local`) overrides them on one machine:

    mnist: /data/mnist                 # a directory or URL prefix holding the canonical file names
    cifar10: https://mirror.example/cifar
    loss_net: /data/vgg16_features.pth # the state dict for loss_net.weights: file
"""
from __future__ import annotations

from pathlib import Path

import yaml

from . import FeatdefenseError
from .datasets import DATASETS

LOCAL_FILE = Path("sources.local.yaml")
# the hosts each dataset module names (method.md's for the paper's); torchvision's weights come from
# torchvision's own URL
CANONICAL = {name: d.source for name, d in DATASETS.items()}
KEYS = (*CANONICAL, "loss_net")


class LocationError(FeatdefenseError):
    pass


def configured(path: Path = LOCAL_FILE) -> dict[str, str]:
    """The overrides in `path` (none when it does not exist), each checked."""
    if not path.is_file():
        return {}
    try:
        found = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise LocationError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(found, dict):
        raise LocationError(f"{path}: expected a mapping of {', '.join(KEYS)} to locations")
    unknown = sorted(set(found) - set(KEYS))
    if unknown:
        raise LocationError(f"{path}: unknown key(s) {unknown}; allowed: {list(KEYS)}")
    bad = [k for k, v in found.items() if not isinstance(v, str) or not v]
    if bad:
        raise LocationError(f"{path}: {bad[0]}: {found[bad[0]]!r} is not allowed; allowed: a directory, "
                            f"file or URL prefix")
    return found


def location(key: str, path: Path = LOCAL_FILE) -> str | None:
    """Where to read `key` (a dataset, or loss_net) on this machine."""
    return configured(path).get(key, CANONICAL.get(key))


def write(overrides: dict[str, str], path: Path = LOCAL_FILE) -> None:
    """Merge `overrides` into `path` (what scripts/offline_sources.py and the tests call)."""
    merged = {**configured(path), **overrides}
    path.write_text("# Where this machine reads external inputs (untracked; see featdefense/locations.py).\n"
                    + yaml.safe_dump(merged, sort_keys=True))
