"""`featdefense seeds`: the pipeline under several seeds, as DVC experiments, and mean ± sd across them.

Each seed is one `dvc exp run -S seed=<k> --name seed-<k> report@<dataset>` in this workspace (so it
reads the same sources.local.yaml and shares DVC's cache and run records): its params, dvc.lock and
metrics are kept as the experiment `seed-<k>-<dataset>` (`dvc exp show`, `dvc exp apply seed-<k>-<dataset>`).
The workspace's own seed is put back at the end.

With `jobs` > 1 the seeds are queued instead (`dvc exp run --queue`, then `dvc exp run --run-all -j <jobs>`):
DVC's queue workers run them side by side, each in its own temporary copy of the workspace (sources.local.yaml
copied in) sharing this one's DVC cache, and the workspace is left as it is.

Either way each seed's accuracies are read from its experiment (the metrics' MD5s in the experiment's dvc.lock,
the files from the cache); `data/seeds/<dataset>.md` and `.json` hold each seed's numbers and their mean ±
sample sd.

`featdefense seeds --from DIR ...` summarises runs made elsewhere instead (archives of scripts/archive_run.py,
e.g. one clone per seed run side by side): each DIR's params.yaml names its seed, and the runs must differ in
nothing else, nor in their code's commit (commit.txt).
"""
from __future__ import annotations

import json
import math
import subprocess
import tempfile
from pathlib import Path

from . import FeatdefenseError, runs
from . import params as params_mod
from .attacks import NAMES, accuracy_keys
from .defences import DEFENCES
from .io import write_json, write_text
from .locations import LOCAL_FILE


class SeedsError(FeatdefenseError):
    pass


KEYS = accuracy_keys()  # clean, each attack grey-box, each attack white-box
OUT = Path("data/seeds")


def mean_sd(values: list[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (n - 1; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, sd


def accuracy(m: dict, key: str) -> float:
    """An evaluation's accuracy `key`: a KEYS one, or "robust_<attack>" (right clean and under it grey-box)."""
    if key.startswith("robust_"):
        return m["robust"][key[len("robust_"):]]["accuracy"]
    return m["accuracy"][key]


def keys(runs: dict[int, dict[str, dict]]) -> list[str]:
    """What a seeds table shows: KEYS, and each attack's robust accuracy where every evaluation records it."""
    robust = all("robust" in m for labels in runs.values() for m in labels.values())
    return [*KEYS, *([f"robust_{a}" for a in NAMES] if robust else [])]


def aggregate(runs: dict[int, dict[str, dict]]) -> dict:
    """{seed: {defence label: metrics}} -> {defence label: {key: {"seeds": [...], "mean": m, "sd": s}}}."""
    labels = list(next(iter(runs.values())))
    table = {}
    for label in labels:
        table[label] = {}
        for key in keys(runs):
            values = [accuracy(runs[seed][label], key) for seed in sorted(runs)]
            mean, sd = mean_sd(values)
            table[label][key] = {"seeds": values, "mean": mean, "sd": sd}
        table[label]["degenerate_in"] = [seed for seed in sorted(runs) if runs[seed][label]["degenerate"]]
    return table


def same_test_images(found: dict[int, dict[str, dict]]) -> bool | None:
    """Whether every seed's evaluations ran on the same test images (the SHA-256 of their index each evaluation
    records); None where an evaluation does not record it."""
    said = [m["data"].get("test_index_sha256") for labels in found.values() for m in labels.values()]
    return None if None in said else len(set(said)) == 1


def test_images_note(same: bool | None) -> str:
    return {True: "Every seed is evaluated on the same test images (attack.test_sample_seed): the spread is "
                  "training's (the target, the attack files' train examples, each defence's training), not the "
                  "test sample's.",
            False: "The seeds are evaluated on DIFFERENT test images: the spread mixes training with the test "
                   "sample.",
            None: "Whether the seeds share their test images is not recorded (evaluations that predate "
                  "data.test_index_sha256): the spread may mix training with the test sample."}[same]


def markdown(dataset: str, seeds: list[int], table: dict, images: int, same: bool | None) -> str:
    shown = [k for k in next(iter(table.values())) if k != "degenerate_in"]
    head = ["defence"] + [k.replace("_", " ") for k in shown] + ["degenerate in seeds"]
    lines = [f"## {dataset}: accuracy (%) over seeds {', '.join(map(str, seeds))}: mean ± sd ({images} test images)",
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, row in table.items():
        cells = [f"{100 * row[k]['mean']:.1f} ± {100 * row[k]['sd']:.1f}" for k in shown]
        lines.append("| " + " | ".join([label, *cells, ", ".join(map(str, row["degenerate_in"])) or "-"]) + " |")
    robust = " robust ones: right clean and on it." if any(k.startswith("robust_") for k in shown) else ""
    lines += ["", f"Grey-box columns: the paper's protocol (right on the adversarial image);{robust} White-box: the "
              "per-image minimum over every attack (see the report's caption).",
              test_images_note(same)]
    return "\n".join(lines) + "\n"


def from_archives(dirs: list[Path], dataset: str, out: Path) -> Path:
    """Mean ± sd over archived runs (their metrics/<dataset>/evaluate_*.json), one seed each; they must share
    every param but the seed. Writes out (markdown) and out with .json."""
    import yaml

    found, recipe, commit = {}, None, None
    for d in dirs:
        p = yaml.safe_load((d / "params.yaml").read_text())
        if not isinstance(p, dict) or "seed" not in p:
            raise ValueError(f"{d}/params.yaml: names no seed")
        seed = p.pop("seed")
        if recipe is not None and p != recipe:
            a, b = ({k: params_mod.get(t, k) for k in params_mod.flat_keys(t)} for t in (p, recipe))
            changed = sorted(k for k in set(a) | set(b) if a.get(k, KeyError) != b.get(k, KeyError))
            raise ValueError(f"{d}: its params differ from {dirs[0]}'s in more than the seed: {', '.join(changed)}")
        code = (d / "commit.txt").read_text().strip() if (d / "commit.txt").exists() else ""
        if not code or "modified" in code:
            raise ValueError(f"{d}: commit.txt names no clean code commit ({code or 'none'})")
        if found and code != commit:
            raise ValueError(f"{d}: made by code commit {code}, {dirs[0]} by {commit}: not one recipe")
        commit = code
        if seed in found:
            raise ValueError(f"{d}: seed {seed} twice")
        recipe, found[seed] = p, {}
        for name in DEFENCES:
            f = d / "metrics" / dataset / f"evaluate_{name}.json"
            if f.is_file():  # a run made for a few defences only (e.g. `snakemake <their metrics>`)
                m = json.loads(f.read_text())
                found[seed][m["defence"]["label"]] = m
    seeds = sorted(found)
    labels = [label for label in found[seeds[0]] if all(label in found[s] for s in seeds)]
    missing = {label: [s for s in seeds if label not in found[s]]
               for label in dict.fromkeys(lb for s in seeds for lb in found[s]) if label not in labels}
    if not labels:
        raise ValueError(f"no defence of {dataset} is evaluated in every run: {', '.join(map(str, dirs))}")
    table = aggregate({s: {label: found[s][label] for label in labels} for s in seeds})
    images = {found[s][label]["data"]["test_images"] for s in seeds for label in labels}
    if len(images) > 1:
        raise ValueError(f"the runs were evaluated on different numbers of test images: {sorted(images)}")
    images = images.pop()
    same = same_test_images({s: {label: found[s][label] for label in labels} for s in seeds})
    if same is None and "test_sample_seed" not in recipe["attack"]:  # runs that predate it: a test subset was
        same = recipe["attack"]["test_size"] is None or len(seeds) == 1  # drawn from each training seed
    write_json(out.with_suffix(".json"), {"dataset": dataset, "seeds": seeds, "test_images": images,
                                          "same_test_images": same, "runs": [str(d) for d in dirs],
                                          "table": table, "not_in_every_run": missing})
    note = "".join(f"Not summarised: {label}, not evaluated in the runs of seed(s) "
                   f"{', '.join(map(str, s))}.\n" for label, s in missing.items())
    write_text(out, markdown(dataset, seeds, table, images, same) + note)
    return out


DVC_EXP_RUN = ["dvc", "--wait-for-lock", "exp", "run"]  # waits for another DVC command instead of failing


def _replace(name: str) -> None:
    """Remove an experiment called `name` made before (DVC refuses a name twice), so that a second
    `featdefense seeds` reruns safely; what it recomputes is only what changed (the rest is restored from
    the run records and DVC's run cache)."""
    names = subprocess.run(["dvc", "exp", "list", "--name-only"], capture_output=True, text=True,
                           check=True).stdout.split()
    if name in names:
        print(f"featdefense seeds: experiment {name} exists: replaced", flush=True)
        subprocess.run(["dvc", "exp", "remove", name], check=True, capture_output=True)


def exp_run(seed: int, name: str, dataset: str, queue: bool = False) -> None:
    """`dvc exp run` of report@<dataset> at this seed as experiment `name` (with `queue`, queued for DVC's
    workers, the untracked sources.local.yaml copied into its temporary workspace)."""
    _replace(name)
    extra = ["--queue", *(["-C", str(LOCAL_FILE)] if LOCAL_FILE.is_file() else [])] if queue else []
    subprocess.run(DVC_EXP_RUN + ["-S", f"seed={seed}", "--name", name, *extra, f"report@{dataset}"], check=True)


def experiment_metrics(name: str, dataset: str) -> dict[str, dict]:
    """The evaluations' metrics of experiment `name` (of this commit), read from DVC's cache by the MD5s
    its dvc.lock records."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    lock = subprocess.run(["git", "show", f"{ref}:dvc.lock"], capture_output=True, text=True)
    if lock.returncode:
        raise SeedsError(f"experiment {name} did not finish (no {ref}): `dvc queue logs {name}` says why")
    with tempfile.TemporaryDirectory() as tmp:  # read as the workspace's own dvc.lock is read
        (Path(tmp) / "dvc.lock").write_text(lock.stdout)
        entries = runs.lock_entries(Path(tmp) / "dvc.lock")
    found = {}
    for defence in DEFENCES:
        path = f"data/metrics/{dataset}/evaluate_{defence}.json"
        outs = entries.get(f"evaluate_{defence}@{dataset}", {}).get("outs", {})
        if path not in outs or not runs.cached(outs[path]).is_file():
            raise SeedsError(f"experiment {name}: {path} is not in its dvc.lock or not in DVC's cache")
        m = json.loads(runs.cached(outs[path]).read_text())
        found[m["defence"]["label"]] = m
    return found


def run(seeds: list[int], dataset: str, params_path: str = "params.yaml", jobs: int = 1) -> Path:
    if jobs < 1:
        raise SeedsError(f"--jobs {jobs}: allowed are 1 (one seed after another) or more (side by side)")
    own = params_mod.load(params_path)["seed"]
    names = {seed: f"seed-{seed}-{dataset}" for seed in seeds}
    if jobs > 1:
        for seed in seeds:
            print(f"featdefense seeds: seed {seed} queued (dvc exp run --queue, report@{dataset})", flush=True)
            exp_run(seed, names[seed], dataset, queue=True)
        print(f"featdefense seeds: {len(seeds)} experiments, {jobs} at a time (dvc exp run --run-all)", flush=True)
        # the whole queue (with anything queued before); it exits 0 when an experiment fails: each is looked up
        subprocess.run(["dvc", "exp", "run", "--run-all", "-j", str(jobs)], check=True)
    else:
        for seed in seeds:
            print(f"featdefense seeds: seed {seed} (dvc exp run, report@{dataset})", flush=True)
            exp_run(seed, names[seed], dataset)
    found = {seed: experiment_metrics(names[seed], dataset) for seed in seeds}  # either way, from the experiments
    table = aggregate(found)
    images = next(iter(found[seeds[0]].values()))["data"]["test_images"]
    OUT.mkdir(parents=True, exist_ok=True)
    same = same_test_images(found)
    write_json(OUT / f"{dataset}.json", {"dataset": dataset, "seeds": seeds, "test_images": images,
                                         "same_test_images": same, "table": table})
    write_text(OUT / f"{dataset}.md", markdown(dataset, seeds, table, images, same) + "Each seed's params, dvc.lock and "
               "metrics: `dvc exp show`, the experiments named seed-<k>-<dataset>.\n")
    if jobs == 1:  # back to the workspace's own seed: its outputs come back from DVC's cache, nothing recomputed
        exp_run(own, f"seed-{own}-{dataset}-restored", dataset)
    print((OUT / f"{dataset}.md").read_text())
    return OUT / f"{dataset}.md"
