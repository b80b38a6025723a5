"""`featdefense gaps ARCHIVE`: the reproduction report. For every number of the paper's Tables 1-2, the
paper's value, the archive's (its 95% interval, the seeds' spread where the archive has them), and one sentence
per experiment that bears on it, chosen from the experiment's numbers by the rules below, never typed by hand.

An experiment is a folder under ARCHIVE/experiments/ with an `experiment.yaml` (what was run, and which of the
paper's numbers it bears on) beside the metrics of its variants; the numbers are read from those files.
Its `rule` says how its numbers are read: `compare` (the default for `measures: accuracy.{attack}`, the same
quantity as the paper's number) sets them against the paper's value and along the variants; `ceiling` (a
variant's clean accuracy, which no attack can raise) says whether the paper's value lies above that bound;
`trains` (the default otherwise: a training log's `clean_test_accuracy`, its last row) says where training
collapsed.
An experiment whose variants are numbers and which names `plot` (measured keys, e.g. [fgsm, pgd, whitebox_pgd])
gets a figure, ARCHIVE/gaps/<experiment>.png: each key's points (95% intervals) along the sweep and the paper's
value where it has one; nothing is fitted.
Writes ARCHIVE/gaps.md and ARCHIVE/gaps.csv (and the figures).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import FeatdefenseError
from .accuracy import wilson
from .attacks import labels
from .datasets import DATASETS as ALL_DATASETS
from .defences import DEFENCES
from .io import write_figure, write_text

COLLAPSE_MARGIN = 0.05  # a clean accuracy within this of chance is a training that collapsed
ATTACKS = labels()  # clean and each attack module, by name
# the paper's datasets (a dataset module naming its table): (table, label)
DATASETS = {name: (d.paper_table, d.label) for name, d in ALL_DATASETS.items() if d.paper_table}


# What a pipeline run puts into its archive (scripts/archive_run.py): remaking an archive replaces these and
# keeps what was added beside them (experiments/, seeds/, convergence/, the gaps report).
RUN_FILES = ("params.yaml", "dvc.lock", "metrics", "reports", "plots", "runs", "commit.txt", "timings.md")


class GapsError(FeatdefenseError):
    pass


@dataclass(frozen=True)
class Value:
    """An accuracy (0-1), and its 95% interval over `images` test images where their number is known."""
    label: str
    accuracy: float
    low: float | None = None
    high: float | None = None
    images: int | None = None

    def pct(self) -> str:
        where = "" if self.low is None else f" ({100 * self.low:.1f}–{100 * self.high:.1f})"
        return f"{100 * self.accuracy:.1f}{where}"


def _overlap(a: Value, b: Value) -> bool:
    if a.low is None or b.low is None:
        return abs(a.accuracy - b.accuracy) < 0.0005
    return a.low <= b.high and b.low <= a.high


def relation(v: Value, paper: float) -> str:
    """'within' where the paper's value lies in the interval, else 'below' or 'above' it."""
    if v.low is not None and v.low <= paper <= v.high:
        return "within"
    return "below" if v.accuracy < paper else "above"


def _numeric(label: str) -> bool:
    try:
        float(label)
    except ValueError:
        return False
    return True


def trend(values: list[Value], varies: str) -> str:
    """How a series along a sweep moves, a step counting only where the two intervals do not overlap (for
    variants that are no numbers: from the first to the last)."""
    steps = ["=" if _overlap(a, b) else "+" if b.accuracy > a.accuracy else "-" for a, b in zip(values, values[1:])]
    along = (f"with {varies}" if all(_numeric(v.label) for v in values)
             else f"from {values[0].label} to {values[-1].label}")
    if set(steps) <= {"="}:
        return f"shows no difference beyond its intervals {along}"
    if "+" in steps and "-" in steps:
        return f"moves both ways {along}"
    word = "rises" if "+" in steps else "falls"
    flat = len(steps) - len("".join(steps).rstrip("="))  # the last steps within the intervals
    # a shape only with evidence for it: two steps in a row with no difference shown at the end of the sweep
    tail = ("" if not flat else ", then levels off" if flat >= 2 else
            f", then shows no difference from {values[-2].label} to {values[-1].label}")
    return f"{word} {along}{tail}"


def against_paper(values: list[Value], paper: float, varies: str) -> str:
    rel = [relation(v, paper) for v in values]
    if "within" in rel:
        at = ", ".join(v.label for v, r in zip(values, rel) if r == "within")
        images = {v.images for v, r in zip(values, rel) if r == "within"}
        over = f" over {images.pop()} test images" if len(images) == 1 and None not in images else ""
        return f"reaches the paper's {100 * paper:.1f} (within its 95% interval{over}) at {varies} {at}"
    if len(set(rel)) == 1:
        return f"stays {rel[0]} the paper's {100 * paper:.1f} in every variant"
    return f"crosses the paper's {100 * paper:.1f}: " + ", ".join(f"{r} it at {v.label}" for v, r in zip(values, rel))


def compare_sentence(title: str, varies: str, attack: str, values: list[Value], paper: float) -> str:
    series = " → ".join(f"{v.pct()} ({v.label})" for v in values)
    return (f"{title}: {ATTACKS[attack]} {series}; it {trend(values, varies)} and "
            f"{against_paper(values, paper, varies)}.")


def trains_sentence(title: str, values: list[Value], classes: int) -> str:
    chance = 1 / classes  # a classifier guessing one class
    collapsed = [v for v in values if v.accuracy <= chance + COLLAPSE_MARGIN]
    trained = [v for v in values if v not in collapsed]
    parts = []
    if collapsed:
        parts.append("collapses to chance (clean test accuracy within "
                     f"{100 * COLLAPSE_MARGIN:.0f} points of {100 * chance:.0f}%) under "
                     + ", ".join(f"{v.label} ({v.pct()})" for v in collapsed))
    if trained:
        parts.append("trains under " + ", ".join(f"{v.label} ({v.pct()})" for v in trained))
    return f"{title}: the defence " + "; it ".join(parts) + "."


def ceiling_sentence(title: str, attack: str, values: list[Value], paper: float) -> str:
    """A variant that bounds the defence (its clean accuracy: no attack can raise it): where the paper's value
    lies against that bound."""
    parts = []
    for v in values:
        r = relation(v, paper)
        parts.append(f"clean {v.pct()} ({v.label}): the paper's {ATTACKS[attack]} {100 * paper:.1f} "
                     + {"above": "lies below this ceiling", "within": "lies within its interval",
                        "below": "lies above this ceiling: out of reach of this autoencoder as trained here"}[r])
    return f"{title}: " + "; ".join(parts) + "."


def _dig(obj, dotted: str):
    for k in dotted.split("."):
        obj = obj[k]
    return obj


def read_value(path: Path, label: str, measures: str) -> Value:
    """One variant's number: a json's dotted key (its interval from the json's own `intervals`, or from its
    `data.test_images`), or a csv's column in its last row (no interval)."""
    if not path.is_file():
        raise GapsError(f"{path}: missing (an experiment's variant names it)")
    if path.suffix == ".csv":
        rows = list(csv.DictReader(path.open()))
        if not rows or measures not in rows[-1]:
            raise GapsError(f"{path}: no column {measures!r} in its last row")
        return Value(label, float(rows[-1][measures]))
    m = json.loads(path.read_text())
    try:
        accuracy = float(_dig(m, measures))
    except (KeyError, TypeError):
        raise GapsError(f"{path}: no {measures!r}") from None
    key = measures.rsplit(".", 1)[-1]
    if key in m.get("intervals", {}):
        low, high = m["intervals"][key]["interval_95"]
        images = m["intervals"][key].get("images")
    else:
        images = _dig(m, "data.test_images")
        low, high = wilson(round(accuracy * images), images)
    return Value(label, accuracy, low, high, images)


def experiments(archive: Path) -> list[dict]:
    """The experiments archived beside a run (ARCHIVE/experiments/*/experiment.yaml). A variant may not name a
    file of the run itself (`RUN_FILES`): the run is replaced when the archive is remade, its experiments are
    kept, so such a variant would silently become another run than the one the experiment was made beside."""
    out = []
    run_files = [(archive / name).resolve() for name in RUN_FILES]
    for f in sorted((archive / "experiments").glob("*/experiment.yaml")):
        e = yaml.safe_load(f.read_text())
        missing = {"title", "varies", "measures", "variants", "bears_on"} - set(e)
        if missing:
            raise GapsError(f"{f}: missing {', '.join(sorted(missing))}")
        for v in [*e["variants"], *e.get("evaluated", [])]:
            named = (f.parent / v["path"]).resolve()
            if any(named == r or named.is_relative_to(r) for r in run_files):
                raise GapsError(f"{f}: variant {v['label']!r} names {v['path']}, a file of the archive's run, which "
                                "remaking the archive replaces; copy the file the experiment was made beside into "
                                "the experiment's folder and name the copy")
        out.append({**e, "dir": f.parent, "name": f.parent.name})
    return out


def variant_values(e: dict, dataset: str, key: str) -> list[Value]:
    """Each variant's number of `key` (an attack, or a measured key such as whitebox_pgd) on `dataset`."""
    return [read_value(e["dir"] / v["path"].format(dataset=dataset), str(v["label"]),
                       v.get("measures", e["measures"]).format(attack=key)) for v in e["variants"]]


def sentences(e: dict, dataset: str, defence: str, attack: str, paper: float) -> list[str]:
    """The sentences of experiment e on one paper number (none where it does not bear on it)."""
    said = []
    for b in e["bears_on"]:
        if b["dataset"] != dataset or b["defence"] != defence or attack not in b["attacks"]:
            continue
        values = variant_values(e, dataset, attack)
        rule = e.get("rule", "compare" if e["measures"].startswith("accuracy.") else "trains")
        if rule == "compare":
            said.append(compare_sentence(e["title"], e["varies"], attack, values, paper))
        elif rule == "ceiling":
            said.append(ceiling_sentence(e["title"], attack, values, paper))
        elif rule == "trains":
            said.append(trains_sentence(e["title"], values, ALL_DATASETS[dataset].classes))
        else:
            raise GapsError(f"{e['dir'] / 'experiment.yaml'}: rule {rule!r} is none of compare, ceiling, trains")
        for v in e.get("evaluated", []):  # variants of a training experiment also evaluated
            value = read_value(e["dir"] / v["path"], str(v["label"]), f"accuracy.{attack}")
            where = {"within": f"the paper's {100 * paper:.1f} within its interval",
                     "below": f"below the paper's {100 * paper:.1f}",
                     "above": f"above the paper's {100 * paper:.1f}"}[relation(value, paper)]
            said.append(f"{e['title']}, {v['label']} evaluated: {ATTACKS[attack]} {value.pct()}, {where}.")
    return said


def series(e: dict, paper: dict) -> list[dict]:
    """What an experiment's figure shows: per key of its `plot`, the variants' values in the order of their
    numeric labels, and the paper's value (`paper`: paper_results.yaml) where the key is one of its numbers."""
    paper = paper_numbers(paper)
    if e.get("plot") and not all(_numeric(str(v["label"])) for v in e["variants"]):
        raise GapsError(f"{e['dir'] / 'experiment.yaml'}: plot needs variants whose labels are numbers")
    out = []
    for key in e.get("plot", []):
        for b in e["bears_on"]:
            values = sorted(variant_values(e, b["dataset"], key), key=lambda v: float(v.label))
            value = paper.get((b["dataset"], b["defence"], key))
            out.append({"key": key, "dataset": b["dataset"], "defence": b["defence"], "values": values,
                        "paper": None if value is None else value / 100})
    return out


def paper_numbers(paper: dict) -> dict[tuple[str, str, str], float]:
    """(dataset, defence, attack) -> the paper's accuracy % in its Tables 1-2, in the tables' order."""
    numbers = {(ds, "unsecured", "clean"): paper["clean_target"][ds] for ds in DATASETS}
    numbers.update({(ds, r["defence"], r["attack"]): r[ds] for ds in DATASETS for r in paper["rows"]})
    return numbers


def key_label(key: str) -> str:
    """A measured key as the report names it: "PGD", "white-box PGD"."""
    if key.startswith("whitebox_"):
        return "white-box " + ATTACKS.get(key[len("whitebox_"):], key)
    return ATTACKS.get(key, key)


def figure(e: dict, paper: dict, path: Path) -> Path:
    """Draw an experiment's series (see `series`): points with their intervals, the paper's values dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = series(e, paper)
    several = len({s["dataset"] for s in drawn}) > 1  # then each line names its dataset
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for i, s in enumerate(drawn):
        colour = f"C{i}"
        x = [float(v.label) for v in s["values"]]
        y = [100 * v.accuracy for v in s["values"]]
        err = [[100 * (v.accuracy - v.low) for v in s["values"]], [100 * (v.high - v.accuracy) for v in s["values"]]]
        label = key_label(s["key"]) + (f" ({ALL_DATASETS[s['dataset']].label})" if several else "")
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colour, label=label)
        if s["paper"] is not None:
            ax.axhline(100 * s["paper"], color=colour, linestyle="--", linewidth=1,
                       label=f"the paper's {label} ({100 * s['paper']:.1f})")
    ax.set_xscale("log", base=2)
    ticks = sorted({float(v.label) for s in drawn for v in s["values"]})
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel(e["varies"])
    ax.set_ylabel("accuracy % (95% interval)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(e["title"], fontsize=8, wrap=True)
    fig.tight_layout()
    write_figure(path, fig)
    return path


def seed_tables(archive: Path) -> dict[str, dict]:
    """The archive's seeds summaries (`featdefense seeds`' json), by dataset."""
    return {ds: json.loads(f.read_text()) for ds in DATASETS if (f := archive / "seeds" / f"{ds}.json").is_file()}


def seed_spread(tables: dict[str, dict], dataset: str, defence: str, attack: str) -> str:
    table = tables.get(dataset)
    if table is None:
        return ""
    row = table["table"].get(DEFENCES[defence].label)
    if row is None:
        return ""
    cell = row[attack]
    return f"{100 * cell['mean']:.1f} ± {100 * cell['sd']:.1f} (seeds {', '.join(map(str, table['seeds']))})"


def robust_value(m: dict, attack: str) -> Value | None:
    """An evaluation's robust accuracy under a grey-box attack (right clean and on its adversarial image): its
    `robust`, or in an evaluation that predates it, for the cascade's own attack its first step (the images
    right clean and under that grey-box attack); None where neither says it."""
    line = m.get("robust", {}).get(attack)
    if line is None:
        reference = m.get("attacks", {}).get("whitebox", {}).get("attack", "pgd")
        cascade = m.get(f"whitebox_{reference}_cascade", {})
        first = next(iter(cascade.items()), None)
        if first is None or first[0] != f"01. clean, grey-box {ATTACKS[attack]}":
            return None
        line = first[1]
    return Value("robust", line["accuracy"], *line["interval_95"], line["images"])


def rows(archive: Path, paper: dict, found: list[dict]) -> list[dict]:
    """One row per number of the paper's tables: the archive's value and what each of `found` says of it."""
    out, seeds = [], seed_tables(archive)
    for (ds, defence, attack), value in paper_numbers(paper).items():
        p = value / 100
        if attack == "clean":
            t = json.loads((archive / "metrics" / ds / "target.json").read_text())
            images = t["test_size"]
            ours = Value("archive", t["clean_test_accuracy"], *wilson(round(t["clean_test_accuracy"] * images),
                                                                       images), images)
            number = "the target, clean"
            robust = None
        else:
            path = archive / "metrics" / ds / f"evaluate_{defence}.json"
            ours = read_value(path, "archive", f"accuracy.{attack}")
            m = json.loads(path.read_text())
            robust = robust_value(m, attack)
            number = f"{DEFENCES[defence].label}, grey-box {ATTACKS[attack]}" + (
                " (degenerate)" if m["degenerate"] else "")
        said = [s for e in found for s in sentences(e, ds, defence, attack, p)]
        out.append({"table": DATASETS[ds][0], "dataset": DATASETS[ds][1], "number": number, "paper": value,
                    "ours": ours, "robust": robust,
                    "seeds": "" if attack == "clean" else seed_spread(seeds, ds, defence, attack),
                    "relation": relation(ours, p), "said": said})
    return out


def render(archive: Path, rows_: list[dict], found: list[dict]) -> tuple[str, str]:
    lines = [f"# Gaps to the paper, `{archive.name}`", "",
             f"Generated by `featdefense gaps results/{archive.name}` from its metrics, its seeds and the experiments under "
             "its `experiments/` (each folder's `experiment.yaml` says what was run); ours: accuracy % by the paper's "
             "protocol (right on the adversarial image), robust: right clean and on the adversarial image (95% "
             "Wilson interval over the test images); each sentence is chosen from the numbers by the rules of "
             "`featdefense.gaps`.", "",
             "| table | dataset | number | paper | ours | robust | seeds (mean ± sd) | the paper's value is (its protocol) | experiments |",
             "| --- | --- | --- | ---: | --- | --- | --- | --- | ---: |"]
    for r in rows_:
        where = {"within": "within our interval", "below": "above ours", "above": "below ours"}[r["relation"]]
        lines.append(f"| {r['table']} | {r['dataset']} | {r['number']} | {r['paper']:.1f} | {r['ours'].pct()} | "
                     f"{r['robust'].pct() if r['robust'] else '-'} | "
                     f"{r['seeds'] or '-'} | {where} | {len(r['said'])} |")
    if found:
        lines += ["", "## The experiments", "",
                  "Each folder holds the variants' params, metrics and run records, and a README.md saying how "
                  "it was run; the cost is what its runs took on one core of a 2-core machine.", ""]
        lines += [f"- `experiments/{e['name']}/`: {e['title']}; {e.get('cost', 'cost not recorded')}."
                  + (f" Figure: `gaps/{e['name']}.png` ({', '.join(e['plot'])} against {e['varies']})."
                     if e.get("plot") else "") for e in found]
    lines += ["", "## What the experiments say", ""]
    for r in rows_:
        robust = f", robust {r['robust'].pct()}" if r["robust"] else ""
        lines.append(f"- **{r['dataset']}, {r['number']}** (paper {r['paper']:.1f}, ours {r['ours'].pct()}{robust}):")
        lines += [f"  - {s}" for s in r["said"]] or ["  - no experiment yet bears on this number."]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "dataset", "number", "paper", "ours", "low", "high", "robust", "robust_low", "robust_high",
                "seeds", "relation", "experiments"])
    for r in rows_:
        o, rb = r["ours"], r["robust"]
        robust = [round(100 * v, 2) for v in (rb.accuracy, rb.low, rb.high)] if rb else ["", "", ""]
        w.writerow([r["table"], r["dataset"], r["number"], r["paper"], round(100 * o.accuracy, 2),
                    round(100 * o.low, 2), round(100 * o.high, 2), *robust, r["seeds"], r["relation"], len(r["said"])])
    return "\n".join(lines) + "\n", buf.getvalue()


def write(archive: Path, paper: dict) -> Path:
    if not (archive / "metrics").is_dir():
        raise GapsError(f"{archive}: no metrics/ (an archive of scripts/archive_run.py)")
    found = experiments(archive)
    md, table = render(archive, rows(archive, paper, found), found)
    for e in found:
        if e.get("plot"):
            figure(e, paper, archive / "gaps" / f"{e['name']}.png")
    write_text(archive / "gaps.md", md)
    write_text(archive / "gaps.csv", table)
    return archive / "gaps.md"
