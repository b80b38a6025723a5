"""Small shared pieces of the stages and defences: seeding, subsets, loading images and adversarial train
examples as tensors, batched inference. Below both: a defence never imports a stage."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from .io import ArtifactError, load_model_file, open_h5, resolve_device


def setup(p: dict) -> torch.device:
    """Threads, seed and device from a stage's params: what makes a rerun repeat byte for byte.

    The number of CPU threads changes float results in their last bits (and so, rarely, a prediction),
    so it is a param rather than whatever the engine's environment happens to set.
    """
    torch.set_num_threads(p["threads"])
    if "seed" in p:
        random.seed(p["seed"])
        np.random.seed(p["seed"])
        torch.manual_seed(p["seed"])
    torch.use_deterministic_algorithms(True, warn_only=True)
    return resolve_device(p.get("device", "cpu"))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 (N, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div_(255)


def load_split(prepared: str | Path, split: str, index: np.ndarray | None = None):
    """Images (float tensor in [0, 1]) and labels of one split of a prepared HDF5 file."""
    with open_h5(prepared) as f:
        try:
            x, y = f[split]["x"], f[split]["y"]
            if index is None:
                return to_tensor(x[()]), torch.from_numpy(y[()]).long()
            return to_tensor(x[()][index]), torch.from_numpy(y[()][index]).long()
        except (KeyError, OSError) as e:
            raise ArtifactError(f"{prepared}: no readable '{split}' split ({e})") from None


def batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def predict(model, x: torch.Tensor, device, batch_size: int = 1000) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[s].to(device)).argmax(1).cpu() for s in batches(len(x), batch_size)])


def load_module(path: str | Path, module, device) -> tuple[torch.nn.Module, dict]:
    """Load a featdefense model file into `module` (or into what `module(meta)` builds from the file's meta);
    returns it (eval mode, on device) and its meta."""
    blob = load_model_file(path)
    if not isinstance(module, torch.nn.Module):
        module = module(blob["meta"])
    try:
        module.load_state_dict(blob["state_dict"])
    except RuntimeError as e:
        raise ArtifactError(f"{path}: does not fit {type(module).__name__}: {e}") from None
    return module.to(device).eval(), blob["meta"]


def subset(n: int, size: int | None, seed: int) -> np.ndarray:
    """`size` indices out of n, drawn with `seed` and sorted; all of them when size is None or >= n."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


def load_train_examples(inp: dict, train_on: list[str]) -> tuple[torch.Tensor, np.ndarray]:
    """What a denoiser learns from, each example with the index of its clean image: the adversarial train
    examples of the attacks in `train_on`, and with "clean" each of their clean images once (with "clean"
    alone: the clean images the attack files' train split was made from)."""
    attacks = [a for a in train_on if a != "clean"]
    x, index = load_adversarial_train({a: inp[a] for a in attacks or ["fgsm"]})
    if not attacks:
        x, index = x[:0], index[:0]
    if "clean" in train_on:
        keep = np.unique(index) if attacks else np.unique(load_adversarial_train({"fgsm": inp["fgsm"]})[1])
        x = torch.cat([x, load_split(inp["prepared"], "train", keep)[0]])
        index = np.concatenate([index, keep])
    return x, index


def load_adversarial_train(paths: dict[str, str]) -> tuple[torch.Tensor, np.ndarray]:
    """Adversarial train images of the named attacks, stacked, and the clean index of each."""
    xs, idx = [], []
    for attack, path in paths.items():
        with open_h5(path) as f:
            try:
                xs.append(torch.from_numpy(f["train"]["x_adv"][()]))
                idx.append(f["train"]["index"][()])
            except (KeyError, OSError) as e:
                raise ArtifactError(f"{path}: no readable train split ({e})") from None
    return torch.cat(xs), np.concatenate(idx)


def load_adversarial_test(path) -> tuple[torch.Tensor, np.ndarray, dict, dict]:
    """An attack file's test split: adversarial images, their index into the prepared test split, the attack's
    params and the file's provenance."""
    with open_h5(path) as f:
        try:
            g = f["test"]
            return (torch.from_numpy(g["x_adv"][()]), g["index"][()], json.loads(f.attrs["params"]),
                    json.loads(f.attrs["provenance"]))
        except (KeyError, OSError) as e:
            raise ArtifactError(f"{path}: no readable test split ({e})") from None
