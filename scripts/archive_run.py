#!/usr/bin/env python3
"""Archive a finished pipeline run into results/NAME/ (committed to git) so docs/results.md's figures can be traced.

usage: python scripts/archive_run.py RUN_DIR NAME

Copies the run's params.yaml, dvc.lock (hashes of every input, output and code file, and the params each
stage read), metrics, report tables and figures, run records (the software that made each), and writes timings.md (wall-clock per stage from
logs/timings.jsonl, naming the stages resumed from a checkpoint) and commit.txt (the last git commit of the code the run was made from).
Into an existing archive it replaces those (`RUN_FILES`) and keeps what was added beside them (experiments/,
seeds/, convergence/, the gaps report: regenerate the latter with `featdefense gaps results/NAME`).
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

from featdefense.gaps import RUN_FILES  # what a run puts into its archive (nothing else there is replaced)


def main(run: Path, name: str, results: Path = Path(__file__).resolve().parent.parent / "results") -> None:
    out = results / name
    for f in (out / n for n in RUN_FILES):
        if f.is_dir():
            shutil.rmtree(f)
        elif f.exists():
            f.unlink()
    out.mkdir(parents=True, exist_ok=True)
    for f in ["params.yaml", "dvc.lock"]:
        shutil.copy(run / f, out / f)
    for pattern in ["data/metrics/*/*.json", "data/reports/*/*", "data/plots/*/*.csv", "data/runs/*.json"]:
        for f in sorted(run.glob(pattern)):
            dest = out / f.relative_to(run / "data")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dest)
    # the last commit of the code (a run's own commit of params.yaml and dvc.lock may follow it)
    commit = subprocess.run(["git", "log", "-1", "--format=%H", "--", "src", "workflow", "Snakefile"], cwd=run,
                            capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "workflow"],
                           cwd=run, capture_output=True, text=True).stdout
    (out / "commit.txt").write_text(commit + ("(code modified after this commit)\n" if dirty else ""))
    runs = {}
    for line in (run / "logs" / "timings.jsonl").read_text().splitlines():
        t = json.loads(line)
        if not t.get("restored") or t["stage"] not in runs:  # the last run of each stage that computed its
            runs[t["stage"]] = t  # outputs (a later restore copies them back in no time)
    table = ["| stage | seconds |", "| --- | ---: |"] + [f"| {k} | {t['seconds']:.0f} |" for k, t in runs.items()]
    wall = max(t["finished"] for t in runs.values()) - min(t["finished"] - t["seconds"] for t in runs.values())
    total = sum(t["seconds"] for t in runs.values())
    resumed = [f"{k} ({t['resumed']} piece(s) of its work read back)" for k, t in runs.items() if t.get("resumed")]
    (out / "timings.md").write_text(
        "\n".join(table) + f"\n\nsum of stage times {total / 60:.1f} min; wall clock from the first stage's start to "
        f"the last one's end {wall / 60:.1f} min\n" + (f"\nresumed from a stopped run's checkpoint (its seconds are the "
        f"resumed run's only): {', '.join(resumed)}\n" if resumed else ""))
    print(f"archived {run} into {out}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]).resolve(), sys.argv[2])
