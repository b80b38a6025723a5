"""Where an artifact came from, read from dvc.lock: the stage that made it, the exact param values
it read, the hashes of its code and inputs, the software and device that made it, recursively up to
the downloaded files, and the git commit."""
from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

from . import FeatdefenseError
from .io import file_digest, read_dvc_lock


def _lock(path: Path) -> dict:
    if not path.is_file():
        raise FeatdefenseError(f"{path}: missing: run the pipeline (dvc repro or snakemake) first")
    return read_dvc_lock(path)


def _producers(stages: dict) -> dict[str, tuple[str, dict]]:
    return {out["path"]: (name, out) for name, s in stages.items() for out in s.get("outs", [])}


def _git_commit(root: Path) -> dict:
    def git(*args):
        r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    return {"commit": git("rev-parse", "HEAD"),
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no"))}


def provenance_of(path: Path, name: str | None = None) -> dict | None:
    """The provenance a model or HDF5 file carries inside itself (None for other files). `name`: the
    artifact's own name, when `path` is its copy in DVC's cache."""
    from .io import h5_attrs_json, load_model_file, open_h5

    suffix = Path(name or path).suffix
    if suffix == ".pt":
        return load_model_file(path)["meta"]
    if suffix == ".h5":
        with open_h5(path) as f:
            return h5_attrs_json(f)
    return None


def _made_with(root: Path, stage: dict, path: str, md5: str | None) -> dict | None:
    """The software and device that made the version of `path` dvc.lock names: from the provenance inside
    it, else from its stage's run record (data/runs/, an output beside it); each read from DVC's cache,
    or the workspace where it is that version. None when neither is here (not pulled)."""
    from .pipeline import RECORDS
    from .runs import cached

    def copy(p: str, h: str | None) -> Path | None:
        if h and (root / p).is_file() and file_digest(root / p, "md5") == h:
            return root / p
        return cached(h, root) if h and cached(h, root).is_file() else None

    if (found := copy(path, md5)) is not None:
        prov = provenance_of(found, path)
        if prov and "environment" in prov:
            return prov["environment"]
    for out in stage.get("outs", []):
        if out["path"].startswith(RECORDS + "/") and (found := copy(out["path"], out.get("md5"))) is not None:
            return json.loads(found.read_text()).get("environment")
    return None


def trace(artifact: str, root: Path = Path("."), lock: str = "dvc.lock") -> dict:
    return trace_many([artifact], root, lock)[Path(artifact).as_posix()]


def trace_many(artifacts: list[str], root: Path = Path("."), lock: str = "dvc.lock") -> dict[str, dict]:
    """trace() of each artifact, each shared input traced once."""
    stages = _lock(root / lock)
    producers = _producers(stages)

    @functools.cache
    def node(path: str) -> dict:
        entry: dict = {"path": path}
        if path not in producers:
            return {**entry, "source": "not made by a stage (code, or outside the pipeline)"}
        name, out = producers[path]
        s = stages[name]
        entry.update(md5=out.get("md5"), stage=name, cmd=s["cmd"])
        full = root / path
        if full.is_file() and file_digest(full, "md5") != out.get("md5"):
            entry["warning"] = "the file in the workspace differs from what dvc.lock recorded"
        entry["params"] = {k: v for f in s.get("params", {}).values() for k, v in f.items()}
        entry["environment"] = _made_with(root, s, path, out.get("md5"))
        entry["code"] = [{"path": d["path"], "md5": d.get("md5")} for d in s.get("deps", [])
                         if d["path"] not in producers]
        entry["inputs"] = [node(d["path"]) for d in s.get("deps", []) if d["path"] in producers]
        manifest = full / "manifest.json"
        if full.is_dir() and manifest.is_file():  # a download: the files and their verified checksums
            entry["files"] = json.loads(manifest.read_text())["files"]
        return entry

    artifacts = [Path(a).as_posix() for a in artifacts]
    for artifact in artifacts:
        if artifact not in producers:
            known = "\n  ".join(sorted(producers))
            raise FeatdefenseError(f"{artifact}: no stage in dvc.lock outputs it; known outputs:\n  {known}")
    git = _git_commit(root)
    return {a: {"artifact": node(a), "git": git, "lock": lock} for a in artifacts}


_ENV_ORDER = ["python", "torch", "numpy", "h5py", "machine", "device", "cpu", "cpu_capability", "blas",
              "isa_pins", "gpu", "cuda"]  # io.environment's keys


def render(tree: dict) -> str:
    lines, seen = [], set()

    def walk(n: dict, depth: int) -> None:
        pad = "  " * depth
        if "stage" not in n:
            lines.append(f"{pad}{n['path']}: {n['source']}")
            return
        lines.append(f"{pad}{n['path']}  md5 {n['md5']}")
        if "warning" in n:
            lines.append(f"{pad}  WARNING: {n['warning']}")
        if n["stage"] in seen:
            lines.append(f"{pad}  made by {n['stage']} (see above)")
            return
        seen.add(n["stage"])
        lines.append(f"{pad}  made by {n['stage']}: {n['cmd']}")
        for key, value in n["params"].items():
            lines.append(f"{pad}  param {key} = {json.dumps(value, sort_keys=True)}")
        env = n.get("environment")
        lines.append(f"{pad}  made with " + (", ".join(f"{k} {env[k]}" for k in sorted(env, key=_ENV_ORDER.index))
                                             if env else
                                             "software not recorded here (neither it nor its run record pulled: "
                                             "dvc pull)"))
        for c in n["code"]:
            lines.append(f"{pad}  code {c['path']}  md5 {c['md5']}")
        for name, f in n.get("files", {}).items():
            lines.append(f"{pad}  file {name}  md5 {f['md5']} ({'canonical' if f['canonical'] else 'NOT canonical'})")
        for child in n["inputs"]:
            walk(child, depth + 1)

    walk(tree["artifact"], 0)
    git = tree["git"]
    lines.append(f"git commit {git['commit']}" + (" (with uncommitted changes)" if git["uncommitted_changes"] else ""))
    return "\n".join(lines)
