"""What must hold after anything either engine does, checked from the outside.

- dvc.lock says of each stage instance only what happened: the params and input hashes it records are
  the ones stored inside the outputs it names (their provenance, read from DVC's cache), and the state in
  the run record it names beside them (data/runs/<instance>.json: the state the run had).
- The engines agree on which instances are stale: what `snakemake -n all` calls stale in itself (a reason
  other than an input rebuilt first) `dvc status` calls stale, and Snakemake would rerun all DVC does.
- `featdefense lineage` of each artifact agrees with what the artifact says of itself, or warns, and names
  the software that made it (a metric, a table, a figure too: from its run record).
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from featdefense.io import read_dvc_lock
from featdefense.lineage import provenance_of, trace_many
from featdefense.pipeline import RECORDS, STAGES
from featdefense.runs import cached

from .conftest import set_dotted, sh

OTHER_JOB = "Input files updated by another job"


def nested(dotted: dict) -> dict:
    """{'attack.pgd': {...}, 'seed': 0} -> {'attack': {'pgd': {...}}, 'seed': 0}."""
    tree: dict = {}
    for key, value in dotted.items():
        node = tree
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {})
        set_dotted(tree, key, value)
    return tree


def lock_params(entry: dict) -> dict:
    return {k: v for f in (entry.get("params") or {}).values() for k, v in f.items()}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _input_sha256(project: Path, deps: dict[str, str], path: str) -> str:
    """The SHA-256 of the version of an input that dvc.lock names (a file inside a directory input
    through DVC's listing of that directory)."""
    if path in deps:
        return _sha256(cached(deps[path], project))
    for directory, h in deps.items():
        if path.startswith(directory + "/") and h.endswith(".dir"):
            listing = {e["relpath"]: e["md5"] for e in json.loads(cached(h, project).read_text())}
            return _sha256(cached(listing[path[len(directory) + 1:]], project))
    raise AssertionError(f"{path}: read by the stage but not among the inputs dvc.lock records")


def check_lock_tells_the_truth(project: Path) -> int:
    """Every dvc.lock entry against its outputs' own provenance; returns how many outputs were checked."""
    checked = 0
    for name, entry in read_dvc_lock(project / "dvc.lock").items():
        deps = {d["path"]: d["md5"] for d in entry.get("deps", [])}
        outs = {o["path"]: o["md5"] for o in entry.get("outs", [])}
        params = lock_params(entry)
        for path, md5 in outs.items():
            assert md5.endswith(".dir") or cached(md5, project).is_file(), f"{name}: {path} {md5} not in the cache"
            prov = None if md5.endswith(".dir") else provenance_of(cached(md5, project), path)
            if prov is None:
                continue
            stage = prov["stage"]
            assert name.split("@")[0] == stage, (name, path, stage)
            assert prov["params"] == nested(params), \
                f"{name}: dvc.lock records params {params}, {path} was made with {prov['params']}"
            for inp in prov["inputs"].values():
                assert _input_sha256(project, deps, inp["path"]) == inp["sha256"], \
                    f"{name}: dvc.lock records another {inp['path']} than the one {path} was made from"
            checked += 1
        # every entry, provenance inside its outputs or not: the run record it names (an output beside the
        # others) was written by the run that made them, from exactly the state the entry records
        [record] = [p for p in outs if p.startswith(RECORDS + "/")]
        made = json.loads(cached(outs[record], project).read_text())
        assert made["instance"] == name, (name, record)
        assert json.dumps(made["state"], sort_keys=True) == json.dumps(
            {"cmd": entry["cmd"], "deps": deps, "params": params}, sort_keys=True), \
            f"{name}: dvc.lock records a state its run record says its outputs were not made from"
        checked += 1
    return checked


def snakemake_jobs(project: Path, target: str = "all") -> dict[str, list[str]]:
    """Stage instance -> its reasons, for each job `snakemake -n target` would run; {} only where
    Snakemake itself says there is nothing to be done."""
    out = sh(project, "snakemake", "-n", target).stdout
    if "Nothing to be done" in out:
        return {}
    jobs = {}
    for rule, body in re.findall(r"^(?:local)?rule (\w+):\n((?:[ \t]+.*\n?)*)", out, flags=re.M):
        if rule == "all":
            continue
        reason = re.search(r"^\s+reason: (.*)$", body, flags=re.M).group(1)
        wildcards = re.search(r"^\s+wildcards: (.*)$", body, flags=re.M)
        values = dict(kv.split("=", 1) for kv in wildcards.group(1).split(", ")) if wildcards else {}
        jobs[STAGES[rule].instance_name(**values)] = [r.strip() for r in reason.split(";")]
    assert jobs, f"snakemake -n {target} neither ran jobs nor said 'Nothing to be done':\n{out}"
    return jobs


def stale_in_themselves(jobs: dict[str, list[str]]) -> set[str]:
    return {name for name, reasons in jobs.items() if any(not r.startswith(OTHER_JOB) for r in reasons)}


def dvc_stale(project: Path) -> set[str]:
    return set(json.loads(sh(project, "dvc", "status", "--json").stdout))


def check_engines_agree(project: Path) -> set[str]:
    """Both engines see the same stale instances; returns them.

    Snakemake names a job's own reasons only when nothing upstream of it reruns (otherwise it says
    'updated by another job' alone): so what it calls stale in itself is what DVC calls stale, and every
    instance DVC calls stale is a job Snakemake would run."""
    dvc, jobs = dvc_stale(project), snakemake_jobs(project)
    itself = stale_in_themselves(jobs)
    assert itself <= dvc, f"stale to Snakemake, current to DVC: {sorted(itself - dvc)}"
    assert dvc <= set(jobs), f"stale to DVC, current to Snakemake: {sorted(dvc - set(jobs))}"
    return dvc


def check_lineage_agrees(project: Path) -> None:
    """For every output dvc.lock names: lineage describes it as its provenance does, or says it differs."""
    lock = read_dvc_lock(project / "dvc.lock")
    traced = trace_many([o["path"] for entry in lock.values() for o in entry.get("outs", [])], root=project)
    for name, entry in lock.items():
        for out in entry.get("outs", []):
            path = out["path"]
            node = traced[path]["artifact"]
            assert node["stage"] == name and node["params"] == lock_params(entry)
            assert node["environment"] and node["environment"]["torch"], f"lineage of {path} names no software"
            workspace = project / path
            if not workspace.is_file():
                continue
            same = hashlib.md5(workspace.read_bytes()).hexdigest() == out["md5"]
            assert ("warning" not in node) == same, f"lineage of {path}: workspace {'same' if same else 'differs'}"
            prov = provenance_of(workspace)
            if same and prov is not None:
                assert node["environment"] == prov["environment"]
                assert nested(node["params"]) == prov["params"], path
