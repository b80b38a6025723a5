"""report: one table per dataset shaped like the paper's (attack x defence), our numbers beside the
paper's and a white-box column where the paper has its "Broken?" ticks (markdown + CSV); robust accuracy
against epsilon (CSV for `dvc plots`, and a PNG); adversarial examples that fool the target and what each
denoiser makes of them (the paper's Figures 1-2); the target's feature maps for a clean image, its
adversarial version and its denoised versions (the paper's Figure 3)."""
from __future__ import annotations

import json
import textwrap
from importlib import resources
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from .. import attacks  # noqa: E402
from ..defences import DEFENCES  # noqa: E402
from ..io import atomic_path, write_figure, write_text  # noqa: E402
from .. import targets  # noqa: E402
from ..defended import load_defence  # noqa: E402
from ..training import load_adversarial_test, load_split, setup  # noqa: E402


def reference(m: dict) -> str:
    """The attack an evaluation's cascade was built on (whitebox.attack; PGD before attacks were plug-ins)."""
    return m["attacks"]["whitebox"].get("attack", "pgd")


def evaluated(m: dict) -> dict[str, str]:
    """The attacks an evaluation ran, by name, with their labels: the attack modules its accuracy names."""
    return {n: a.label for n, a in attacks.ATTACKS.items() if n in m["accuracy"]}


def paper_results() -> dict:
    return yaml.safe_load(resources.files("featdefense").joinpath("paper_results.yaml").read_text())


def pct(v: float) -> float:
    return round(100 * v, 1)


def interval(line: dict) -> str:
    low, high = line["interval_95"]
    return f"{pct(low)}–{pct(high)}"


def flags(m: dict) -> str:
    """What a reader must know before trusting a defence's numbers: degenerate, clean accuracy lost, the
    names of the other failed checks (their counts: the sanity table)."""
    found = []
    checks = m["sanity"]
    if m["degenerate"]:
        d = checks["not_degenerate"]
        found.append(f"DEGENERATE: predicts class {d['majority_class']} for {pct(d['majority_share'])}% of clean "
                     "test images")
    kept = checks.get("keeps_clean_accuracy", {})
    if kept.get("verdict") == "FAIL":
        found.append(f"CLEAN ACCURACY LOST: {pct(kept['defended']['accuracy'])}% against the target's "
                     f"{pct(kept['target']['accuracy'])}%")
    failed = [k for k, v in checks.items() if v["verdict"] == "FAIL" and k not in ("not_degenerate",
                                                                                   "keeps_clean_accuracy")]
    if failed:
        found.append("check(s) failed: " + ", ".join(failed))
    return "; ".join(found)


def table(evaluations: dict[str, dict], paper: dict) -> pd.DataFrame:
    """Rows attack x defence: accuracy (grey-box for attacks, the paper's protocol: right on the adversarial
    image) with its 95% interval, robust accuracy (right clean and on the adversarial image) with its
    interval, the paper's number, white-box (robust: right clean and after every attack) with its interval,
    the paper's tick, and the flags a reader must see."""
    dataset = next(iter(evaluations.values()))["dataset"]
    published = {(r["attack"], r["defence"]): r for r in paper["rows"]}
    rows = []
    rows_of = {"clean": "none (clean)", **evaluated(next(iter(evaluations.values())))}
    for attack, attack_label in rows_of.items():
        for name, m in evaluations.items():
            key = DEFENCES[name].paper_key
            row = published.get((attack, key), {})
            paper_value = row.get(dataset)
            if attack == "clean" and key == "unsecured":
                paper_value = paper["clean_target"].get(dataset)
            broken = row.get("broken") if dataset in paper["clean_target"] else None  # a dataset the paper had
            on_itself = attack != "clean" and m["defence"]["kind"] == "classifier"
            wb = m["intervals"][attacks.whitebox(attack)] if attack != "clean" else None
            robust = m.get("robust", {}).get(attack)  # right clean and attacked (evaluations since it was kept)
            rows.append({
                "attack": attack_label if attack == "clean" else
                f"{attack_label} ({'on the robust model' if on_itself else 'grey-box'})",
                "defence": m["defence"]["label"],
                "accuracy_%": pct(m["accuracy"][attack]),
                "95%_interval": interval(m["intervals"][attack]),
                "robust_%": pct(robust["accuracy"]) if robust else None,
                "robust_95%_interval": interval(robust) if robust else None,
                "paper_%": paper_value,
                "white-box_%": pct(wb["accuracy"]) if wb else None,
                "white-box_95%_interval": interval(wb) if wb else None,
                "paper_says_broken": None if broken is None else ("yes" if broken else "no"),
                "flags": flags(m) or None,
            })
    df = pd.DataFrame(rows)
    if dataset not in paper["clean_target"]:  # a dataset the paper did not cover: no paper columns
        df = df.drop(columns=["paper_%", "paper_says_broken"])
    return df


def verdict(check: dict | None) -> str:
    """A check's cell: its verdict and, for a paired check, the counts that decided it."""
    if check is None:
        return "not run"
    if "broken" in check and check["verdict"] != "n/a":
        return f"{check['verdict']}: {check['broken']} of {check['left']} broken (≤{check['tolerated']})"
    if "iterative_broke" in check and check["verdict"] != "n/a":  # the single-step masking check
        return f"{check['verdict']}: {check['single_step_left']} of {check['iterative_broke']} left"
    if check["verdict"] == "FAIL" and "checks" in check:  # AutoAttack's own: which of them
        return "FAIL: " + ", ".join(k for k, c in check["checks"].items() if c["verdict"] == "FAIL")
    return check["verdict"]


def sanity_table(evaluations: dict[str, dict]) -> pd.DataFrame:
    """Defence x sanity check: pass, FAIL or n/a, with the counts that decided it."""
    names = list(dict.fromkeys(k for m in evaluations.values() for k in m["sanity"]))
    return pd.DataFrame([{"defence": m["defence"]["label"], **{k: verdict(m["sanity"].get(k)) for k in names}}
                         for m in evaluations.values()])


def sanity_notes(evaluations: dict[str, dict]) -> str:
    """Why each n/a and each FAIL, in the metrics' own words."""
    lines = []
    for m in evaluations.values():
        for k, c in m["sanity"].items():
            if c["verdict"] != "pass" and "why" in c:
                lines.append(f"- {m['defence']['label']}, {k} ({c['verdict']}): {c['why']}")
    return "\n".join(lines)


def caption(evaluations: dict[str, dict]) -> str:
    first = next(iter(evaluations.values()))
    d, a = first["data"], first["attacks"]
    data = "canonical files" if d["canonical"] else "a NON-canonical copy (its checksum named in params)"
    wb, ref = a["whitebox"], reference(first)
    pgd, labels = a[ref], evaluated(first)
    others = [label for n, label in labels.items() if n != ref]
    minimum = (f"the {', '.join(others)} row's white-box number takes the minimum over the {', '.join(others)} "
               f"attacks, the {labels[ref]} row's over all of them" if others
               else f"the {labels[ref]} row's white-box number takes the minimum over all of them")
    curve = first["robustness"]
    lines = [
        f"Dataset: {first['dataset']} ({data}); {d['test_images']} test images; adversarial train examples of "
        f"{a['subset_sizes']['train_size'] or 'all'} train images per attack.",
        f"Target: {targets.architecture(first['target']).label}, {first['target']['epochs']} epoch(s) on {d['target_train_images']} images (clean accuracy "
        f"on the full test set {100 * first['target']['clean_accuracy_full_test_set']:.1f}%).",
        f"Attacks: {'; '.join(f'{label} {spec(a[n])}' for n, label in labels.items())}. Grey-box: crafted on "
        "the undefended target and "
        "fed through the defence (the paper's protocol); for a defence that is itself the classifier (Madry), "
        "crafted on it.",
        f"White-box (adaptive), the column the paper fills with 'Broken?' ticks: {'; '.join(others + [''])}"
        f"{labels[ref]} ({pgd['steps']} steps, each step size of {wb['step_sizes']}); for image-to-image defences "
        f"also BPDA-{labels[ref]} (the defence "
        f"taken as the identity on the backward pass); AutoAttack ({autoattack(wb['autoattack'])}); the "
        f"robustness curve's {labels[ref]} at this epsilon and the convergence check's {labels[ref]} (on their "
        "images); all through "
        "defence and classifier end to end, each judged at its best iterate (an image counts as broken if any "
        "iterate fooled the model). Two accuracies: accuracy_% is the paper's protocol (right on the "
        "adversarial image, whether or not right clean; it can exceed the clean accuracy), robust_% is robust "
        "accuracy (right clean and on the adversarial image), and so is white-box_%: "
        "an image counts only if it is classified correctly clean and after every "
        f"attack, grey-box ones included: {minimum}{plus(wb['autoattack'])}{reruns(wb['autoattack'])}. "
        "Intervals: 95% Wilson score intervals "
        "over the test images: they cover which test images were drawn, not the training seed (one seed here).",
        f"Robust accuracy against epsilon (robustness.csv/png): {curve['attack']}, on {curve['test_images']} images.",
    ]
    for name, m in evaluations.items():
        t = m["defence"].get("training")
        if not t:
            lines.append(f"- {m['defence']['label']}: {m['defence']['description']}; params {m['defence']['params']}.")
            continue
        params = t.get("params", {})
        recipe = params.get("defences", {}).get(name) or params.get("denoiser")
        line = f"- {m['defence']['label']}: {m['defence']['description']}; {t.get('train_examples')} train examples; {recipe}."
        if "feature_loss" in t:
            ln = t["loss_net"]
            line += (f" Feature loss {t['feature_loss']}; loss network {ln['origin']} ({ln['preprocessing']} "
                     "preprocessing).")
            if ln["random"]:
                line += " **WARNING: the loss network had RANDOM weights (a test or smoke run), not ImageNet VGG-16.**"
        lines.append(line)
    return "\n".join(lines)


def spec(section: dict) -> str:
    """An attack's section as the caption says it: "eps 0.2, 100 steps of 0.1, random start True"."""
    said = [f"eps {section['epsilon']}"]
    if {"steps", "step_size"} <= set(section):
        said.append(f"{section['steps']} steps of {section['step_size']}")
    said += [f"{k.replace('_', ' ')} {v}" for k, v in section.items() if k not in ("epsilon", "steps", "step_size")]
    return ", ".join(said)


def autoattack(cfg: dict) -> str:
    if cfg["version"] == "none":
        return "not run"
    budget = [f"{cfg['iterations']} iterations" if cfg["iterations"] else "",
              f"Square {cfg['square_queries']} queries" if cfg["square_queries"] else ""]
    budget = ", ".join(b for b in budget if b)
    names = {"standard": "APGD-CE, APGD-T, FAB-T, Square",
             "plus": "APGD-CE, APGD-DLR, FAB, Square, APGD-T, FAB-T, with restarts"}[cfg["version"]]
    return f"{cfg['version']} version: {names}" + (
        f", budget reduced to {budget}" if budget else ", its full budget")


def plus(cfg: dict) -> str:
    if cfg["version"] == "none" or cfg.get("plus_above") is None:
        return ""
    return (f", and where it stays above {pct(cfg['plus_above'])}% after them (or keeps any image while the "
            "convergence or gradient-free check failed) AutoAttack's plus version (restarts, APGD-DLR, FAB) on "
            "the images left")


def reruns(cfg: dict) -> str:
    if cfg["version"] == "none" or not cfg.get("reruns"):
        return ""
    return (f"; then AutoAttack at that budget again with a new seed on the images left, until "
            f"{cfg['clean_runs']} run(s) in a row break none, at most {cfg['reruns']} more times (FAB-T, which has "
            "no random start, not run again)")


def sanity_caption(evaluations: dict[str, dict]) -> str:
    first = next(iter(evaluations.values()))
    checks = dict(first["sanity"])
    for m in evaluations.values():
        checks.update({k: v for k, v in m["sanity"].items() if k not in checks})
    lines = [f"- {k}: {v['what']}" for k, v in checks.items()]
    images = first["sanity"]["unbounded_budget"]["accuracy"]["images"]
    return (f"The costly checks on the first {images} test images; gradient_free_not_stronger and "
            "autoattack_plus, autoattack_rerun on all of them (their cascade steps), the degenerate and clean-accuracy checks on "
            "all. A paired check counts the images the stronger attack newly broke among those the reference "
            "left (≤: how many it tolerates); n/a: its premise does not hold (why below).\n"
            + "\n".join(lines) + "\n\n" + sanity_notes(evaluations))


def robustness_frame(evaluations: dict[str, dict]) -> pd.DataFrame:
    eps = next(iter(evaluations.values()))["robustness"]["epsilon"]
    return pd.DataFrame({"epsilon": eps, **{name: m["robustness"]["accuracy"] for name, m in evaluations.items()}})


def robustness_figure(path, frame: pd.DataFrame, evaluations: dict[str, dict], title: str) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, m in evaluations.items():
        ax.plot(frame["epsilon"], 100 * frame[name], marker="o", label=m["defence"]["label"])
    ax.set_xlabel("epsilon (L-infinity)")
    ax.set_ylabel("white-box accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(textwrap.fill(title, 80), fontsize=8)  # the curve's attack is a long name
    fig.tight_layout()
    write_figure(path, fig)


def show_image(ax, image) -> None:
    """An image (C, H, W) in [0, 1]: grayscale for one channel, RGB for three."""
    image = np.asarray(image)
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 1))


def examples_figure(path, rows: list[tuple[str, np.ndarray, np.ndarray]], y: np.ndarray, title: str) -> None:
    """One row per (label, images, predictions); red titles are wrong predictions."""
    n = len(y)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n, 1.45 * len(rows) + 0.4), squeeze=False)
    for r, (label, images, preds) in enumerate(rows):
        for col in range(n):
            ax = axes[r][col]
            show_image(ax, images[col])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"pred {preds[col]}", fontsize=8, color="green" if preds[col] == y[col] else "red")
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    write_figure(path, fig)


def feature_noise_figure(path, target, rows: list[tuple[str, torch.Tensor]], channels: int, title: str) -> None:
    """The target's first-layer feature maps (conv1 + ReLU) for each image of `rows` (the first is the
    clean one); the channels shown are those the adversarial noise changes most."""
    first = torch.nn.Sequential(*list(target)[:2])
    with torch.no_grad():
        maps = [first(x)[0] for _, x in rows]
    noise = (maps[1] - maps[0]).abs().flatten(1).mean(1)
    shown = noise.argsort(descending=True)[:channels].tolist()
    top = float(torch.stack([m[shown] for m in maps]).max())
    fig, axes = plt.subplots(len(rows), channels + 1, figsize=(1.35 * (channels + 1), 1.45 * len(rows) + 0.4),
                             squeeze=False)
    for r, ((label, x), m) in enumerate(zip(rows, maps)):
        change = float((m - maps[0]).abs().mean() / maps[0].abs().mean().clamp_min(1e-12))
        show_image(axes[r][0], x[0].numpy())
        axes[r][0].set_ylabel(f"{label}\nnoise {change:.2f}", fontsize=7)
        for c, ch in enumerate(shown, start=1):
            axes[r][c].imshow(m[ch].numpy(), cmap="viridis", vmin=0, vmax=top)
            if r == 0:
                axes[r][c].set_title(f"channel {ch}", fontsize=7)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    write_figure(path, fig)


def pick_examples(y: np.ndarray, fooled: np.ndarray, k: int) -> np.ndarray:
    """Up to k fooled test images, one per class first, in index order."""
    chosen = [int(np.flatnonzero(fooled & (y == c))[0]) for c in np.unique(y[fooled])][:k]
    rest = [int(i) for i in np.flatnonzero(fooled) if i not in chosen]
    return np.array(sorted(chosen + rest[:k - len(chosen)]), dtype=int)


def run(p, inp, out, dataset):
    evaluations = {name: json.loads(Path(inp[f"evaluation_{name}"]).read_text()) for name in DEFENCES}
    df = table(evaluations, paper_results())
    with atomic_path(out["table_csv"]) as tmp:
        df.to_csv(tmp, index=False)
    first = next(iter(evaluations.values()))
    ref = reference(first)
    eps = first["attacks"][ref]["epsilon"]
    title = f"## {dataset}: accuracy (%) at epsilon {eps}" + (", ours beside the paper's" if "paper_%" in df else "")
    shown = df.astype(object)
    for i, row in df.iterrows():  # a degenerate classifier's accuracy is no robustness: no number is shown
        if evaluations[next(n for n, m in evaluations.items() if m["defence"]["label"] == row["defence"])]["degenerate"]:
            shown.loc[i, ["accuracy_%", "robust_%", "white-box_%"]] = "degenerate"
    shown = shown.where(df.notna(), "-")  # no value: "-", not "nan"
    checks = sanity_table(evaluations).to_markdown(index=False)
    write_text(out["table_md"], f"{title}\n\n{shown.to_markdown(index=False)}\n\n{caption(evaluations)}\n\n"
                                f"### {dataset}: sanity checks (Carlini et al. 2019), per defence\n\n{checks}\n\n"
                                f"{sanity_caption(evaluations)}\n")
    curve = robustness_frame(evaluations)
    with atomic_path(out["robustness"]) as tmp:
        curve.to_csv(tmp, index=False)
    robustness_figure(out["robustness_png"], curve, evaluations,
                      f"{dataset}: {next(iter(evaluations.values()))['robustness']['attack']}")

    device = setup(p)
    target, _, architecture = targets.load(inp["target"], device)
    preprocessors = {name: load_defence(d, p, inp.get(f"model_{name}"), device, architecture.input_shape)[0]
                     for name, d in DEFENCES.items() if d.kind == "preprocessor"}
    denoisers = {name: m for name, m in preprocessors.items() if not isinstance(m, torch.nn.Identity)}
    shown_attack = p["whitebox"]["attack"]  # the paper's figures show PGD's examples
    label = attacks.declared(shown_attack).label
    x_adv, index, _, _ = load_adversarial_test(inp[shown_attack])
    x_clean, y = load_split(inp["prepared"], "test", index)
    k = p["report"]["examples"]
    with torch.no_grad():
        p_adv = target(x_adv).argmax(1)
        pick = pick_examples(y.numpy(), (p_adv != y).numpy(), k)
        if len(pick) == 0:
            pick = np.arange(min(k, len(y)))
        xc, xa = x_clean[pick], x_adv[pick]
        rows = [("clean", xc), (f"{label} (grey-box)", xa)] + [
            (f"{DEFENCES[name].label}\n({label} denoised)", m(xa)) for name, m in denoisers.items()]
        examples_figure(out["examples"], [(label, v.numpy(), target(v).argmax(1).numpy()) for label, v in rows],
                        y[pick].numpy(), f"{dataset}: test images the {label} attack fooled, then each denoiser's "
                        "output; titles: the target's prediction (red = wrong)")
    feature_noise_figure(out["feature_noise"], target, [(label, v[:1]) for label, v in rows], channels=6,
                         title=f"{dataset}: the target's first-layer feature maps; 'noise' = mean |change| "
                         "against the clean maps, relative to their mean")
