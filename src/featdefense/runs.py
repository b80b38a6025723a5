"""What each stage run really did, content-addressed: the one truth both engines' records come from.

A stage instance's *state* is what decides its outputs: its command, the MD5 of every code file and
input it declares (DVC's hashes, so a state compares with a dvc.lock entry as is) and the values of the
params it reads. After a stage succeeds, `featdefense run` writes a *run record*: that state and the
MD5s of the outputs it made, with the software that made them. Records are local (`.featdefense/runs/`,
one file per instance and state); dvc.lock entries are records too, for what DVC ran or was told.

From these:
- a stage whose state has a record does no work: its outputs are left as they are or copied back from
  DVC's cache (Snakemake deletes a job's outputs before it runs; so does DVC);
- `featdefense dvc-commit` records in dvc.lock exactly the instances whose outputs were made from the
  state they are in now, and names the others as stale;
- `featdefense pull` keeps only the pulled outputs whose dvc.lock entry matches the workspace.
"""
from __future__ import annotations

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
CACHE = Path(".dvc/cache/files/md5")
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


def state(stage: Stage, wildcards: dict[str, str], params: dict, memo: dict | None = None,
          deps: bool = True) -> dict:
    memo = {} if memo is None else memo
    paths = stage.code_paths + [p.format(**wildcards) for p in stage.deps.values()] if deps else []
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

def record(instance: str, st: dict, outs: dict[str, str], device: str) -> None:
    write_json(RUNS / instance / f"{state_key(st)}.json",
               {"instance": instance, "state": st, "outs": outs, "environment": environment(device)})


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


def made_from(instance: str, st: dict, lock: dict | None = None) -> dict[str, str] | None:
    """The outputs (path -> MD5) a recorded run made from exactly this state, if one did."""
    rec = local_record(instance, st)
    if rec:
        return rec["outs"]
    entry = (lock_entries() if lock is None else lock).get(instance)
    if entry and _same(entry["state"], st):
        return entry["outs"]
    return None


# -- restoring outputs from DVC's cache -------------------------------------------------------------

def _cached(h: str) -> Path:
    return CACHE / h[:2] / h[2:]


def _available(path: str, h: str, memo: dict) -> bool:
    if md5(path, memo) == h:
        return True
    if not _cached(h).is_file():
        return False
    if h.endswith(".dir"):
        return all(_cached(e["md5"]).is_file() for e in json.loads(_cached(h).read_text()))
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
                for e in json.loads(_cached(h).read_text()):
                    (tmp / e["relpath"]).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(_cached(e["md5"]), tmp / e["relpath"])
        else:
            with atomic_path(path) as tmp:
                shutil.copyfile(_cached(h), tmp)
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


def survey(params: dict) -> tuple[list[str], list[str], dict[str, str]]:
    """Each instance as (current and already in dvc.lock, current but not yet in it, stale with why)."""
    lock, memo = lock_entries(), {}
    recorded, to_commit, stale = [], [], {}
    for stage, w in instances():
        name = stage.instance_name(**w)
        st, outs = state(stage, w, params, memo), outputs(stage, w, memo)
        entry = lock.get(name)
        if outs is not None and entry and _same(entry["state"], st) and entry["outs"] == outs:
            recorded.append(name)
        elif outs is not None and (rec := local_record(name, st)) and rec["outs"] == outs:
            to_commit.append(name)
        else:
            stale[name] = _why(entry, st, outs)
    return recorded, to_commit, stale


def dvc_commit(params: dict) -> list[str]:
    """Record in dvc.lock the instances whose outputs were made from their present state; nothing else.

    One DVC command for all of them (DVC's repository lock forbids two at once)."""
    import subprocess

    recorded, to_commit, stale = survey(params)
    if to_commit:
        subprocess.run(["dvc", "commit", "--force", "--quiet", *to_commit], check=True)
        # DVC rewrites the files it moves into its cache: the new times would look, to Snakemake, like
        # inputs updated after the outputs made from them
        stamp(set(recorded) | set(to_commit))
    print(f"dvc.lock: recorded {len(to_commit)} stage(s) made from their present code, inputs and params"
          + (f"; {len(stale)} not recorded (stale or never made):" if stale else ""))
    for name, why in stale.items():
        print(f"  {name}: {why}")
    return to_commit


def keep_current_pulled(params: dict) -> dict[str, str]:
    """After `dvc pull`: outputs whose dvc.lock entry matches the workspace are stamped in graph order
    (Snakemake's mtime check then agrees); stale ones are removed from the workspace (they stay in DVC's
    cache) so that neither engine takes them as current. Returns the stale instances and why."""
    write_params_files(params)  # before the outputs' times: older than them
    lock, stale, current = lock_entries(), {}, set()
    for stage, w in instances():
        name = stage.instance_name(**w)
        memo: dict = {}  # outputs removed above change what later instances see
        st, outs = state(stage, w, params, memo), outputs(stage, w, memo)
        entry = lock.get(name)
        if outs is not None and entry and _same(entry["state"], st) and entry["outs"] == outs:
            current.add(name)
            continue
        stale[name] = _why(entry, st, outs)
        for p in products(stage, w):
            path = Path(p)
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    stamp(current)
    return stale


def stamp(names: set[str]) -> None:
    """Give the outputs of these instances modification times in the graph's order, a millisecond apart,
    the last one now (never in the future: a file edited next must look newer)."""
    import time

    everything = instances()
    start = time.time() - len(everything) * 1e-3
    for i, (stage, w) in enumerate(everything):
        if stage.instance_name(**w) in names:
            for p in products(stage, w):
                _touch(Path(p), start + i * 1e-3)


def _touch(path: Path, t: float) -> None:
    if path.is_dir():
        for f in path.rglob("*"):
            os.utime(f, (t, t))
        (path / ".snakemake_timestamp").touch()
        os.utime(path / ".snakemake_timestamp", (t, t))
    os.utime(path, (t, t))
