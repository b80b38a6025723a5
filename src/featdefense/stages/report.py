"""report: the paper-style table (markdown + CSV, the paper's numbers beside ours) and an image grid
like the paper's Figures 1-2 (clean / PGD adversarial / denoised, with the target's predictions)."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from ..io import atomic_path, write_text  # noqa: E402
from ..models import Denoiser, Target  # noqa: E402
from ..training import load_module, load_split, setup  # noqa: E402
from .evaluate import read_test  # noqa: E402

NAMES = {"clean": "none (clean)", "fgsm": "FGSM (grey-box)", "pgd": "PGD (grey-box)",
         "whitebox_pgd": "PGD (white-box, adaptive)", "unsecured": "unsecured", "defended": "ours"}


def paper_results() -> dict:
    return yaml.safe_load(resources.files("featdefense").joinpath("paper_results.yaml").read_text())


def table(metrics: dict, paper: dict) -> pd.DataFrame:
    dataset = metrics["dataset"]
    published = {(r["attack"], r["defence"]): r[dataset] for r in paper["rows"]}
    published[("clean", "unsecured")] = paper["clean_target"][dataset]
    rows = []
    for attack in ("clean", "fgsm", "pgd", "whitebox_pgd"):
        for side, defence in (("unsecured", "unsecured"), ("defended", "ours")):
            rows.append({"attack": NAMES[attack], "defence": NAMES[side],
                         "accuracy_%": round(100 * metrics["accuracy"][side][attack], 1),
                         "paper_%": published.get((attack, defence))})
    return pd.DataFrame(rows)


def caption(m: dict) -> str:
    d, a, dn = m["data"], m["attacks"], m["denoiser"]
    ln, fl = dn["loss_net"], dn["feature_loss"]
    data = "canonical files" if d["canonical"] else "a NON-canonical copy (checksum named in params)"
    pgd = a["pgd"]
    lines = [
        f"Dataset: {m['dataset']} ({data}). Test images: {d['test_images']}.",
        "FGSM, PGD: " + m["threat_model"]["fgsm, pgd"] + ". White-box PGD: " + m["threat_model"]["whitebox_pgd"]
        + " (step sizes " + ", ".join(m["whitebox_pgd_by_step_size"]["defended"]) + "); the paper reports no "
        "white-box number and marks its own defence as not broken.",
        f"Target: LeNet, {m['target']['epochs']} epoch(s) on {d['target_train_images']} images "
        f"(clean accuracy on the full test set {100 * m['target']['clean_accuracy_full_test_set']:.1f}%).",
        f"Attacks: FGSM eps {a['fgsm']['epsilon']}; PGD eps {pgd['epsilon']}, {pgd['steps']} steps of "
        f"{pgd['step_size']}, random start {pgd['random_start']}.",
        f"Denoiser: {dn['epochs']} epoch(s) on {d['denoiser_train_examples']} adversarial train examples "
        f"({'+'.join(dn['train_on'])}); feature loss layers {fl['layers']} at {fl['input_size']}x"
        f"{fl['input_size']}, pixel term {fl['pixel']}, weighting {fl['weighting']}; loss network "
        f"{ln['origin']} ({ln['preprocessing']} preprocessing).",
    ]
    if ln["random"]:
        lines.append("**WARNING: the loss network had RANDOM weights (a test or smoke run), not ImageNet VGG-16.**")
    return "\n".join(lines)


def examples_figure(path, x_clean, x_adv, x_denoised, y, p_clean, p_adv, p_den, title):
    n = len(y)
    fig, axes = plt.subplots(3, n, figsize=(1.3 * n, 4.6), squeeze=False)
    for row, (label, images, preds) in enumerate([("clean", x_clean, p_clean), ("PGD", x_adv, p_adv),
                                                  ("denoised", x_denoised, p_den)]):
        for col in range(n):
            ax = axes[row][col]
            ax.imshow(images[col, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"pred {preds[col]}", fontsize=8, color="green" if preds[col] == y[col] else "red")
            if col == 0:
                ax.set_ylabel(label)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def pick_examples(y: np.ndarray, fooled: np.ndarray, k: int) -> np.ndarray:
    """Up to k fooled test images, one per class first, in index order."""
    chosen = [int(np.flatnonzero(fooled & (y == c))[0]) for c in range(10) if (fooled & (y == c)).any()][:k]
    rest = [int(i) for i in np.flatnonzero(fooled) if i not in chosen]
    return np.array(sorted(chosen + rest[:k - len(chosen)]), dtype=int)


def run(p, inp, out, dataset):
    metrics = json.loads(Path(inp["evaluation"]).read_text())
    df = table(metrics, paper_results())
    cap = caption(metrics)
    with atomic_path(out["table_csv"]) as tmp:
        df.to_csv(tmp, index=False)
    title = f"## {dataset}: accuracy (%) at epsilon {metrics['attacks']['pgd']['epsilon']}, ours vs the paper"
    shown = df.astype({"paper_%": object}).fillna("-")  # no published value: "-", not "nan"
    write_text(out["table_md"], f"{title}\n\n{shown.to_markdown(index=False)}\n\n{cap}\n")

    device = setup(p)
    target, _ = load_module(inp["target"], Target(), device)
    denoiser, _ = load_module(inp["denoiser"], Denoiser(), device)
    x_adv, index, _, _ = read_test(inp["pgd"])
    x_clean, y = load_split(inp["prepared"], "test", index)
    with torch.no_grad():
        p_adv = target(x_adv).argmax(1)
        pick = pick_examples(y.numpy(), (p_adv != y).numpy(), p["report"]["examples"])
        if len(pick) == 0:
            pick = np.arange(min(p["report"]["examples"], len(y)))
        xc, xa = x_clean[pick], x_adv[pick]
        xd = denoiser(xa)
        preds = [target(v).argmax(1).numpy() for v in (xc, xa, xd)]
    examples_figure(out["examples"], xc.numpy(), xa.numpy(), xd.numpy(), y[pick].numpy(), *preds,
                    title=f"{dataset}: test images the PGD attack fooled; red = wrong prediction")
