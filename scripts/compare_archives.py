#!/usr/bin/env python3
"""Two archived runs (results/<name>/) side by side, accuracy by accuracy, each with its 95% interval.

usage: python scripts/compare_archives.py OLD NEW [--all]

One markdown row per dataset, defence and accuracy (clean, grey-box FGSM/PGD, white-box FGSM/PGD): OLD's
and NEW's percentages with their intervals, the difference in points and whether the intervals overlap.
Without --all only the rows that differ are printed. Intervals cover test-set sampling only (not seeds,
not code): a difference outside them says something changed, not that either number is right.
"""
import json
import sys
from pathlib import Path

from featdefense.attacks import accuracy_keys

KEYS = accuracy_keys()


def load(archive: Path) -> dict:
    out = {}
    for f in sorted(archive.glob("metrics/*/evaluate_*.json")):
        m = json.loads(f.read_text())
        out[(m["dataset"], m["defence"]["label"])] = m
    return out


def cell(line: dict) -> str:
    low, high = line["interval_95"]
    return f"{100 * line['accuracy']:.1f} ({100 * low:.1f}–{100 * high:.1f})"


def main(old: Path, new: Path, everything: bool) -> None:
    a, b = load(old), load(new)
    print(f"| dataset | defence | accuracy | {old.name} | {new.name} | change (points) | intervals overlap |")
    print("|---|---|---|---:|---:|---:|---|")
    for key in [k for k in b if k in a]:
        for acc in KEYS:
            x, y = a[key]["intervals"][acc], b[key]["intervals"][acc]
            if x["correct"] == y["correct"] and x["images"] == y["images"] and not everything:
                continue
            overlap = x["interval_95"][0] <= y["interval_95"][1] and y["interval_95"][0] <= x["interval_95"][1]
            print(f"| {key[0]} | {key[1]} | {acc.replace('_', ' ')} | {cell(x)} | {cell(y)} | "
                  f"{100 * (y['accuracy'] - x['accuracy']):+.1f} | {'yes' if overlap else '**no**'} |")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--all"]
    if len(args) != 2:
        sys.exit(__doc__)
    main(Path(args[0]), Path(args[1]), "--all" in sys.argv)
