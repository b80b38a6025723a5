"""A model-based test of the two engines: a seeded random sequence of what users do to a built project,
with the truth (tests/truth.py) checked after every step.

The CI test (test_engine_model.py) runs a short sequence in which every operation appears; the soak runs
as many steps as asked, with the costly operations too:

    python -m tests.engine_model STEPS [--seed N] [--project BUILT]

It builds the tiny project first (about two minutes), or copies BUILT, a tiny project built before (left
unchanged). A failure prints the seed and the steps so far: rerun with --seed to replay it.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from featdefense import locations

from .conftest import copy_project, make_project, set_param, sh, write_raw
from .truth import check_engines_agree, check_lineage_agrees, check_lock_tells_the_truth

# dotted param -> values to choose from; each reruns a few stages (the costly ones: the soak only)
EDITS = {"report.examples": [10, 4, 6], "defences.median_filter.kernel_size": [3, 5],
         "robustness.steps": [5, 3], "defences.hgd.epochs": [1, 2], "denoiser.epochs": [1, 2]}
COSTLY_EDITS = {"target.lr": [0.001, 0.002], "attack.pgd.steps": [10, 5], "whitebox.autoattack.iterations": [5, 3]}
CODE = ["src/featdefense/stages/report.py", "src/featdefense/defences/median_filter.py",
        "src/featdefense/defences/hgd.py"]
COSTLY_CODE = ["src/featdefense/stages/train_target.py", "src/featdefense/stages/prepare.py"]
TARGETS = ["data/reports/mnist/table.md", "data/reports/cifar10/robustness.png", "data/models/cifar10/hgd.pt",
           "data/metrics/mnist/evaluate_median_filter.json"]
ONE_STAGE = ["report@mnist", "evaluate_median_filter@cifar10", "train_hgd@mnist", "report@cifar10"]


class Model:
    def __init__(self, project: Path, seed: int, costly: bool):
        self.project, self.rng, self.costly = project, random.Random(seed), costly
        self.original: dict[str, object] = {}  # params edited and not reverted: their first values
        self.moves = 0
        self.log: list[str] = []

    # -- operations ------------------------------------------------------------------------------------
    def param(self, key: str):
        node = yaml.safe_load((self.project / "params.yaml").read_text())
        for part in key.split("."):
            node = node[part]
        return node

    def edit_param(self) -> str:
        edits = {**EDITS, **(COSTLY_EDITS if self.costly else {})}
        key = self.rng.choice(sorted(edits))
        now = self.param(key)
        value = self.rng.choice([v for v in edits[key] if v != now])
        self.original.setdefault(key, now)
        set_param(self.project, key, value)
        return f"edit {key}: {now} -> {value}"

    def revert_param(self) -> str:
        if not self.original:
            return self.edit_param()
        key = self.rng.choice(sorted(self.original))
        set_param(self.project, key, self.original.pop(key))
        return f"revert {key}"

    def snakemake_partial(self) -> str:
        target = self.rng.choice(TARGETS)
        sh(self.project, "snakemake", "--cores", "2", target)
        return f"snakemake {target}"

    def snakemake_all(self) -> str:
        sh(self.project, "snakemake", "--cores", "2", "all")
        assert check_engines_agree(self.project) == set(), "stale after a full snakemake run"
        return "snakemake all"

    def dvc_repro(self) -> str:
        sh(self.project, "dvc", "repro")
        assert check_engines_agree(self.project) == set(), "stale after dvc repro"
        return "dvc repro"

    def dvc_repro_one(self) -> str:
        instance = self.rng.choice(ONE_STAGE)
        sh(self.project, "dvc", "repro", instance)
        return f"dvc repro {instance}"

    def comment_edit(self) -> str:
        path = self.rng.choice(CODE + (COSTLY_CODE if self.costly else []))
        code = self.project / path
        code.write_text(code.read_text() + f"\n# comment {self.rng.randrange(10**6)}: the same computation\n")
        return f"comment in {path}"

    def move_source(self) -> str:
        self.moves += 1
        where = locations.configured(self.project / locations.LOCAL_FILE)
        moved = {}
        for ds in ("mnist", "cifar10"):
            dest = self.project.parent / f"moved-{self.moves}" / ds
            shutil.copytree(where[ds], dest)
            moved[ds] = str(dest)
        locations.write(moved, self.project / locations.LOCAL_FILE)
        return "move the data source"

    def push_clone_pull(self) -> str:
        remote = self.project.parent / "remote"
        sh(self.project, "dvc", "remote", "modify", "local", "url", str(remote))
        sh(self.project, "dvc", "push", "--quiet")
        clone = self.project.parent / f"clone-{len(self.log)}"
        for f in sh(self.project, "git", "ls-files", "--others", "--cached", "--exclude-standard").stdout.split():
            if (self.project / f).is_file() and not f.startswith(("data/", "logs/", ".snakemake/")):
                (clone / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(self.project / f, clone / f)
        sh(clone, "git", "init", "-q")
        # the colleague says where the raw files lie on their machine (not tracked, not a param)
        shutil.copy(self.project / locations.LOCAL_FILE, clone / locations.LOCAL_FILE)
        sh(clone, "featdefense", "pull")
        self.project = clone
        return "dvc push, fresh clone, featdefense pull"

    OPERATIONS = ("edit_param", "revert_param", "snakemake_partial", "snakemake_all", "dvc_repro",
                  "dvc_repro_one", "comment_edit", "move_source", "push_clone_pull")

    # -- the sequence ----------------------------------------------------------------------------------
    def plan(self, steps: int) -> list[str]:
        """Every operation once (in a random order) when there are steps enough, the rest at random;
        edits weigh more, so that runs have something to do."""
        ops = list(self.OPERATIONS) if steps >= len(self.OPERATIONS) else []
        self.rng.shuffle(ops)
        weighted = list(self.OPERATIONS) + ["edit_param"] * 3 + ["revert_param"]
        return ops + [self.rng.choice(weighted) for _ in range(steps - len(ops))]

    def run(self, steps: int, seed: int) -> None:
        for number, op in enumerate(self.plan(steps), 1):
            try:
                self.log.append(getattr(self, op)())
                check_lock_tells_the_truth(self.project)
                check_engines_agree(self.project)
                check_lineage_agrees(self.project)
            except BaseException:
                print(f"engine model: seed {seed}, failed at step {number} ({op}); steps so far:\n  "
                      + "\n  ".join(self.log), file=sys.stderr)
                raise
            print(f"step {number}: {self.log[-1]}: the truth holds", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("steps", type=int)
    ap.add_argument("--seed", type=int, default=random.SystemRandom().randrange(10**6))
    ap.add_argument("--project", type=Path, help="a built tiny project to copy (default: build one)")
    args = ap.parse_args(argv)
    print(f"engine model: seed {args.seed}, {args.steps} steps", flush=True)
    work = Path(tempfile.mkdtemp(prefix=f"engine-model-{args.seed}-"))
    if args.project is None:
        args.project = make_project(work / "built", write_raw(work / "raw"))
        sh(args.project, "snakemake", "--cores", "2", "all")
    print(f"engine model: working in {work}", flush=True)
    Model(copy_project(args.project, work / "project"), args.seed, costly=True).run(args.steps, args.seed)


if __name__ == "__main__":
    main()
