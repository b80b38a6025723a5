"""`featdefense <command>`: one thin entry point per stage, plus the pipeline's own helpers."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import FeatdefenseError, audit, checkpoints, params as params_mod, runs
from .datasets import DATASETS
from .io import environment
from .pipeline import STAGES, STOP_SIGNAL, WILDCARD_VALUES, dvc_yaml

log = logging.getLogger("featdefense")
STOPPED = 75  # the exit status of a stage stopped on request with its checkpoint saved (EX_TEMPFAIL)
TIMINGS = Path("logs/timings.jsonl")  # wall-clock per stage: never a DVC dependency or output


def run_stage(name: str, wildcards: dict[str, str], params_path: str, force: bool = False) -> None:
    """Run one stage instance, refused while another process runs the same one (checkpoints.exclusive)."""
    with checkpoints.exclusive(STAGES[name].instance_name(**wildcards)):
        _run_stage(name, wildcards, params_path, force)


def _run_stage(name: str, wildcards: dict[str, str], params_path: str, force: bool) -> None:
    stage = STAGES[name]
    full = params_mod.load(params_path)
    p = params_mod.select(full, stage.param_keys(**wildcards))
    inp = {k: v.format(**wildcards) for k, v in stage.deps.items()}
    out = {k: v.format(**wildcards) for k, v in stage.made.items()}
    label = stage.instance_name(**wildcards)
    log.info("stage %s: params %s", label, json.dumps(p, sort_keys=True))
    start = time.time()
    runs.write_params_file(stage, wildcards, full)  # older than the outputs: Snakemake sees them current
    state = runs.state(stage, wildcards, full)
    made = None if force else runs.made_from(label, state)
    restored = bool(made) and runs.restore(made)
    resumed = 0  # pieces of work read back from a stopped run's checkpoint
    if restored:
        log.info("stage %s: a recorded run made these outputs from the same code, inputs and params: "
                 "restored them, nothing recomputed", label)
    else:
        module, function = stage.function.split(":")
        compute = getattr(importlib.import_module(module), function)
        # its progress so far, if a run of this same state was stopped (removed once the record is written);
        # the signal a scheduler sends before a job's time limit stops it at its next save
        signal.signal(getattr(signal, f"SIG{STOP_SIGNAL}"), checkpoints.ask_to_stop)
        with checkpoints.opened(label, checkpoints.key(state, environment(p.get("device")))) as ck:
            with audit.recording(label):  # only where FEATDEFENSE_AUDIT asks (the tests)
                compute(p, inp, out, **wildcards, **stage.fixed)
            if not all(Path(f).exists() for f in out.values()):
                raise FeatdefenseError(f"stage {label} finished without writing all of {sorted(out.values())}")
            runs.record(stage, wildcards, state, p.get("device"))
        resumed = len(ck.resumed)
    seconds = time.time() - start
    log.info("stage %s done in %.1f s", label, seconds)
    TIMINGS.parent.mkdir(exist_ok=True)
    with open(TIMINGS, "a") as f:
        f.write(json.dumps({"stage": label, "seconds": round(seconds, 2), "finished": time.time(),
                            "restored": restored, "resumed": resumed}) + "\n")


def apply_params(files: list[str], params_path: str) -> None:
    """Deep-merge configuration overlays onto params.yaml (keeping its comments), validated first."""
    from ruamel.yaml import YAML

    from .io import atomic_path

    rt = YAML()  # round-trip: comments and key order survive
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    document = rt.load(Path(params_path).read_text())
    for f in files:
        overlay = yaml.safe_load(Path(f).read_text()) or {}
        if not isinstance(overlay, dict):
            raise params_mod.ParamsError(f"{f}: expected a mapping of params sections")
        params_mod.merge_into(document, overlay)
    params_mod.validate(json.loads(json.dumps(document)), f"{params_path} with {', '.join(files)} applied")
    with atomic_path(params_path) as tmp, open(tmp, "w") as out:
        rt.dump(document, out)
    print(f"{params_path}: applied {', '.join(files)}")


def pull(params_path: str) -> None:
    """`dvc pull`, then keep what is current: outputs whose dvc.lock entry matches this workspace's code,
    inputs and params. Stale ones are named and removed from the workspace (not from DVC's cache), left to
    rerun; Snakemake's start-up puts the file times of the rest in order (runs.reconcile)."""
    subprocess.run(["dvc", "--wait-for-lock", "pull"], check=True)
    params = params_mod.load(params_path)
    stale = runs.remove_stale(params)
    runs.reconcile(params)
    print(f"featdefense pull: {len(runs.instances()) - len(stale)} stage(s) current"
          + (f"; {len(stale)} stale, removed from the workspace (kept in DVC's cache) and left to rerun:"
             if stale else ""))
    for name, why in stale.items():
        print(f"  {name}: {why}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="featdefense", description=__doc__)
    ap.add_argument("--params", default=str(params_mod.DEFAULT_PATH), help="params file (default params.yaml)")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run one stage of the pipeline")
    r.add_argument("stage", choices=list(STAGES))
    for w, values in WILDCARD_VALUES.items():
        r.add_argument(f"--{w}", choices=values)
    r.add_argument("--force", action="store_true", help="compute, even where a recorded run made these outputs "
                                                        "from the same code, inputs and params (then restored)")
    pp = sub.add_parser("params", help="check params.yaml, or apply configuration overlays to it")
    pp.add_argument("action", choices=["check", "apply"])
    pp.add_argument("files", nargs="*", help="overlays (configs/*.yaml), applied in order")
    lin = sub.add_parser("lineage", help="print the chain of stages, params and hashes behind an artifact")
    lin.add_argument("artifact", help="a stage output, e.g. data/metrics/mnist/evaluate_ours.json")
    lin.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("dvc-yaml", help="print dvc.yaml as rendered from the stage graph")
    sub.add_parser("dvc-commit", help="record in dvc.lock the stages whose outputs were made from their present "
                                      "code, inputs and params (Snakemake runs it when it stops)")
    sub.add_parser("status", help="which stage instances dvc.lock records, which are current but unrecorded, "
                                  "which are stale and why")
    sub.add_parser("pull", help="dvc pull, then keep the outputs that are current here and name (and remove from "
                                "the workspace) the stale ones")
    se = sub.add_parser("seeds", help="run the pipeline for one dataset under several seeds (DVC experiments) and "
                                      "write data/seeds/<dataset>.md: each accuracy's mean and sd across them")
    se.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    se.add_argument("--dataset", choices=list(DATASETS), default="mnist")
    se.add_argument("--from", dest="archives", nargs="+", type=Path, metavar="DIR",
                    help="summarise archived runs (results/<name>/, one seed each) instead of running the seeds")
    se.add_argument("--jobs", "-j", type=int, default=1,
                    help="run this many seeds side by side (DVC's experiment queue; default 1: one after another "
                         "in this workspace)")
    se.add_argument("--out", type=Path,
                    help="with --from: the markdown file to write (default data/seeds/<dataset>.md)")
    ga = sub.add_parser("gaps", help="write ARCHIVE/gaps.md and .csv: each number of the paper's Tables 1-2 beside "
                                     "the archive's, and what the archived experiments say of it")
    ga.add_argument("archive", type=Path, help="an archive of scripts/archive_run.py, e.g. results/cpu-real-hgd-unclipped")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        if args.command == "run":
            stage = STAGES[args.stage]
            wildcards = {w: getattr(args, w) for w in stage.wildcards}
            missing = [w for w, v in wildcards.items() if v is None]
            if missing:
                ap.error(f"stage {args.stage} needs " + " ".join(f"--{w}" for w in missing))
            run_stage(args.stage, wildcards, args.params, args.force)
        elif args.command == "params":
            if args.action == "check":
                params_mod.load(args.params)
                print(f"{args.params}: valid")
            else:
                apply_params(args.files, args.params)
        elif args.command == "lineage":
            from .lineage import render, trace

            tree = trace(args.artifact)
            print(json.dumps(tree, indent=2) if args.json else render(tree))
        elif args.command == "dvc-yaml":
            sys.stdout.write(dvc_yaml())
        elif args.command == "dvc-commit":
            runs.dvc_commit(params_mod.load(args.params))
        elif args.command == "status":
            recorded, to_commit, stale = runs.survey(params_mod.load(args.params))
            print(f"{len(recorded)} stage(s) current and recorded in dvc.lock")
            for name in to_commit:
                print(f"  {name}: current, not yet in dvc.lock (featdefense dvc-commit records it)")
            for name, why in stale.items():
                print(f"  {name}: stale, {why}")
        elif args.command == "pull":
            pull(args.params)
        elif args.command == "seeds":
            from . import seeds

            if args.archives:
                try:
                    out = seeds.from_archives(args.archives, args.dataset, args.out or
                                              seeds.OUT / f"{args.dataset}.md")
                except (OSError, ValueError) as e:
                    raise FeatdefenseError(str(e)) from None
                print(out.read_text())
            else:
                seeds.run(args.seeds, args.dataset, args.params, args.jobs)
        elif args.command == "gaps":
            from .gaps import write
            from .stages.report import paper_results

            print(write(args.archive, paper_results()).read_text())
    except FeatdefenseError as e:
        print(f"featdefense: error: {e}", file=sys.stderr)
        return 2
    except checkpoints.Stopped as e:
        print(f"featdefense: {e}", file=sys.stderr)
        return STOPPED
    except Exception as e:
        if type(e).__name__ != "OutOfMemoryError":  # torch.cuda.OutOfMemoryError, without importing torch
            raise
        keys = [k for k in params_mod.flat_keys(params_mod.select(params_mod.load(args.params),
                                                       STAGES[args.stage].param_keys(**wildcards)))
                if k.endswith("batch_size")] or ["the batch sizes"]
        print(f"featdefense: error: CUDA ran out of memory in stage {args.stage}; lower "
              f"{' / '.join(keys)} in params.yaml ({e})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
