"""What each stage run really did, content-addressed: the one truth both engines' records come from.

A stage instance's *state* is what decides its outputs: its command, the MD5 of every code file and
input it declares (DVC's hashes, so a state compares with a dvc.lock entry as is) and the values of the
params it reads. After a stage succeeds, `featdefense run` writes a *run record*: that state and the
MD5s of the outputs it made (locally: `.featdefense/runs/`, one file per instance and state), and, as an
output beside the others, the state and the software that made them (`data/runs/<instance>.json`, pushed
with them). dvc.lock entries are records too, for what DVC ran or was told.

From these:
- a stage whose state has a record does no work: its outputs are left as they are or copied back from
  DVC's cache (Snakemake deletes a job's outputs before it runs; so does DVC);
- `featdefense dvc-commit` records in dvc.lock exactly the instances whose outputs were made from the
  state they are in now, and names the others as stale;
- `featdefense pull` keeps only the pulled outputs whose dvc.lock entry matches the workspace.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from . import params as params_mod
from .io import atomic_path, environment, file_digest, read_dvc_lock, write_json, write_text
from .pipeline import STAGES, Stage

log = logging.getLogger(__name__)
RUNS = Path(".featdefense/runs")
PARAMS = Path(".featdefense/params")  # each instance's param values, a Snakemake input (see params_file)
LOCK = Path("dvc.lock")
IGNORED = {".snakemake_timestamp"}  # Snakemake's marker in directory outputs; .dvcignore drops it too


# -- hashes as DVC computes them -------------------------------------------------------------------

def _dir_listing(path: Path, memo: dict) -> list[dict]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in IGNORED)
    return sorted(({"md5": md5(p, memo), "relpath": p.relative_to(path).as_posix()} for p in files),
                  key=lambda e: e["relpath"])


def md5(path: str | Path, memo: dict | None = None) -> str | None:
    """DVC's hash of a file (MD5 of its bytes) or directory (MD5 of its sorted listing + '.dir'); None
    when it does not exist."""
    memo = {} if memo is None else memo
    path = Path(path)
    if path not in memo:
        if path.is_file():
            memo[path] = file_digest(path, "md5")
        elif path.is_dir():
            listing = json.dumps(_dir_listing(path, memo), sort_keys=True).encode()
            memo[path] = hashlib.md5(listing).hexdigest() + ".dir"
        else:
            memo[path] = None
    return memo[path]


# -- a stage instance's state ----------------------------------------------------------------------

def instances() -> list[tuple[Stage, dict[str, str]]]:
    """Every stage instance, in the graph's order (each after the instances it reads from)."""
    return [(s, w) for s in STAGES.values() for w in s.instances()]


def products(stage: Stage, wildcards: dict[str, str]) -> list[str]:
    return [p.format(**wildcards) for p in stage.products.values()]


def dep_paths(stage: Stage, wildcards: dict[str, str]) -> list[str]:
    """What an instance reads: its code and its input files (dvc.yaml's deps, in that order)."""
    return [p.format(**wildcards) for p in stage.code_paths] + [p.format(**wildcards) for p in stage.deps.values()]


def state(stage: Stage, wildcards: dict[str, str], params: dict, memo: dict | None = None,
          deps: bool = True) -> dict:
    memo = {} if memo is None else memo
    paths = dep_paths(stage, wildcards) if deps else []
    return {"cmd": stage.cmd.format(**wildcards),
            "deps": {d: md5(d, memo) for d in paths},
            "params": {k: params_mod.get(params, k) for k in stage.param_keys(**wildcards)}}


def outputs(stage: Stage, wildcards: dict[str, str], memo: dict | None = None) -> dict[str, str] | None:
    """The MD5 of each output, or None when one is missing."""
    found = {p: md5(p, memo) for p in products(stage, wildcards)}
    return None if None in found.values() else found


def params_file(stage: Stage, wildcards: dict[str, str] | None = None) -> str:
    """The file holding the values of the params an instance reads (a template without wildcards).

    Snakemake takes it as an input, so a param change reaches it as a newer input, the way a code or
    data change does; its own params trigger is off (workflow/profiles/default), because it remembers
    only what Snakemake ran and would call stale what DVC made."""
    name = stage.instance_name(**(wildcards or {w: "{%s}" % w for w in stage.wildcards}))
    return str(PARAMS / f"{name}.json")


def write_params_file(stage: Stage, wildcards: dict[str, str], params: dict) -> None:
    """Write an instance's params file, only when its values changed (its time is what Snakemake reads)."""
    path = Path(params_file(stage, wildcards))
    text = json.dumps(state(stage, wildcards, params, deps=False)["params"], indent=1, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)


def write_params_files(params: dict) -> None:
    for stage, w in instances():
        write_params_file(stage, w, params)


def state_key(st: dict) -> str:
    return hashlib.sha256(json.dumps(st, sort_keys=True).encode()).hexdigest()


# -- records ---------------------------------------------------------------------------------------

def record(stage: Stage, wildcards: dict[str, str], st: dict, device: str | None) -> dict[str, str]:
    """After a run: write its run record (an output, see Stage.record), then note locally which outputs
    this state made (what lets a later run with the same state restore them). Returns those outputs."""
    instance = stage.instance_name(**wildcards)
    write_json(stage.record.format(**wildcards),
               {"instance": instance, "state": st, "environment": environment(device)})
    outs = outputs(stage, wildcards)
    write_json(RUNS / instance / f"{state_key(st)}.json", {"instance": instance, "state": st, "outs": outs})
    return outs


def local_record(instance: str, st: dict) -> dict | None:
    path = RUNS / instance / f"{state_key(st)}.json"
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    return rec if rec.get("state") == st else None


def lock_entries(lock: Path = LOCK) -> dict[str, dict]:
    """dvc.lock's entries as records: {instance: {"state": ..., "outs": ...}}."""
    entries = {}
    for name, s in read_dvc_lock(lock).items():
        params = {k: v for f in (s.get("params") or {}).values() for k, v in f.items()}
        entries[name] = {"state": {"cmd": s.get("cmd"), "deps": {d["path"]: d.get("md5") for d in s.get("deps", [])},
                                   "params": params},
                         "outs": {o["path"]: o.get("md5") for o in s.get("outs", [])}}
    return entries


def _same(a, b) -> bool:
    """Equal as JSON (YAML and JSON give the same values different types: tuples, ints for floats)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def made_from(instance: str, st: dict) -> dict[str, str] | None:
    """The outputs (path -> MD5) a recorded run made from exactly this state, if one did."""
    rec = local_record(instance, st)
    if rec:
        return rec["outs"]
    entry = lock_entries().get(instance)
    if entry and _same(entry["state"], st):
        return entry["outs"]
    return None


# -- restoring outputs from DVC's cache -------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def cache_dir(root: Path) -> Path:
    """Where DVC keeps the objects of the repository at `root`, as DVC's own configuration says (`cache.dir`
    at any level: the default .dvc/cache, a cache outside the repository, a team's shared one)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return Path(repo.cache.local.path)


def cached(h: str, root: Path = Path(".")) -> Path:
    """Where DVC's cache keeps the object with MD5 `h` (a file, or a directory's listing, '.dir')."""
    return cache_dir(Path(root).resolve()) / h[:2] / h[2:]


def _available(path: str, h: str, memo: dict) -> bool:
    if md5(path, memo) == h:
        return True
    if not cached(h).is_file():
        return False
    if h.endswith(".dir"):
        return all(cached(e["md5"]).is_file() for e in json.loads(cached(h).read_text()))
    return True


def restore(outs: dict[str, str]) -> bool:
    """Put each output back with the recorded MD5: left as it is when it already has it, else copied from
    DVC's cache. False, touching nothing, when the cache lacks any of them."""
    memo: dict = {}
    if not all(_available(p, h, memo) for p, h in outs.items()):
        return False
    for path, h in outs.items():
        if md5(path, memo) == h:
            continue
        if h.endswith(".dir"):
            with atomic_path(path, directory=True) as tmp:
                for e in json.loads(cached(h).read_text()):
                    (tmp / e["relpath"]).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(cached(e["md5"]), tmp / e["relpath"])
        else:
            with atomic_path(path) as tmp:
                shutil.copyfile(cached(h), tmp)
    return True


# -- the engines' records ---------------------------------------------------------------------------

def _why(entry: dict | None, st: dict, outs: dict | None) -> str:
    if outs is None:
        return "outputs missing"
    if entry is None:
        return "no record of how its outputs were made"
    old = entry["state"]
    changed = [k for k in sorted(set(st["params"]) | set(old["params"]))
               if not _same(st["params"].get(k), old["params"].get(k))]
    deps = [d for d in sorted(set(st["deps"]) | set(old["deps"])) if st["deps"].get(d) != old["deps"].get(d)]
    reasons = ([f"params {', '.join(changed)}"] if changed else []) + ([f"inputs {', '.join(deps)}"] if deps else [])
    if not reasons and entry["outs"] != outs:
        reasons = ["outputs differ from the recorded ones"]
    return "changed: " + "; ".join(reasons) if reasons else "changed command"


def _classify(stage: Stage, w: dict[str, str], params: dict, lock: dict, memo: dict) -> tuple[str, str]:
    """'recorded' (current, and dvc.lock says so), 'made' (current: a run recorded here made its outputs
    from its present state; dvc.lock does not say so yet) or 'stale', with why."""
    name = stage.instance_name(**w)
    st, outs = state(stage, w, params, memo), outputs(stage, w, memo)
    entry = lock.get(name)
    if outs is not None and entry and _same(entry["state"], st) and entry["outs"] == outs:
        return "recorded", ""
    if outs is not None and (rec := local_record(name, st)) and rec["outs"] == outs:
        return "made", ""
    return "stale", _why(entry, st, outs)


def survey(params: dict) -> tuple[list[str], list[str], dict[str, str]]:
    """Each instance as (current and already in dvc.lock, current but not yet in it, stale with why)."""
    lock, memo = lock_entries(), {}
    found: dict[str, dict] = {"recorded": {}, "made": {}, "stale": {}}
    for stage, w in instances():
        kind, why = _classify(stage, w, params, lock, memo)
        found[kind][stage.instance_name(**w)] = why
    return list(found["recorded"]), list(found["made"]), found["stale"]


def dvc_commit(params: dict) -> list[str]:
    """Record in dvc.lock the instances whose outputs were made from their present state; nothing else.

    One DVC command for all of them, run where Snakemake was started (its onsuccess/onerror), never in a
    job on a cluster node. DVC's repository lock forbids two at once: this one waits for the lock (another
    run ending, a `dvc push`) instead of failing."""
    import subprocess

    _, to_commit, stale = survey(params)
    if to_commit:
        subprocess.run(["dvc", "--wait-for-lock", "commit", "--force", "--quiet", *to_commit], check=True)
    print(f"dvc.lock: recorded {len(to_commit)} stage(s) made from their present code, inputs and params"
          + (f"; {len(stale)} not recorded (stale or never made):" if stale else ""))
    for name, why in stale.items():
        print(f"  {name}: {why}")
    return to_commit


def remove_stale(params: dict) -> dict[str, str]:
    """Remove from the workspace the outputs of stale instances (after `dvc pull`: they stay in DVC's
    cache), so that neither engine takes them as current; returns them, with why."""
    lock, memo, stale = lock_entries(), {}, {}
    for stage, w in instances():
        kind, why = _classify(stage, w, params, lock, memo)
        if kind != "stale":
            continue
        stale[stage.instance_name(**w)] = why
        for p in map(Path, products(stage, w)):
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
            memo[p] = None  # what reads it below sees it gone
    return stale


def _mtime(path: Path) -> float:
    marker = path / ".snakemake_timestamp"  # what Snakemake reads for a directory output
    return (marker if marker.is_file() else path).stat().st_mtime


def reconcile(params: dict) -> None:
    """Make file times tell Snakemake what content tells DVC (run at Snakemake's start-up).

    Each instance's params file is rewritten where its values changed. Then, in the graph's order, the
    outputs of every current instance (made from its present code, inputs and params, by either engine)
    that look older than one of its inputs get the time now: DVC writes the files it runs, restores or
    pulls whenever it reaches them, and a stage rerun by DVC that made the same bytes changes nothing
    below it. Stale instances are left alone: Snakemake reruns them."""
    import time

    write_params_files(params)
    lock, memo, last = lock_entries(), {}, 0.0
    for stage, w in instances():
        outs = [Path(p) for p in products(stage, w)]
        if not all(p.exists() for p in outs) or _classify(stage, w, params, lock, memo)[0] == "stale":
            continue
        inputs = [Path(p) for p in dep_paths(stage, w)] + [Path(params_file(stage, w))]
        if min(map(_mtime, outs)) <= max(map(_mtime, inputs)):
            last = max(time.time(), last + 1e-3)
            for p in outs:
                _touch(p, last)


def _touch(path: Path, t: float) -> None:
    if path.is_dir():
        for f in path.rglob("*"):
            os.utime(f, (t, t))
        (path / ".snakemake_timestamp").touch()
        os.utime(path / ".snakemake_timestamp", (t, t))
    os.utime(path, (t, t))
