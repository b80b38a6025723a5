"""Everything a stage uses is declared in the stage graph: its code (every module it imports, found in the
source by the graph itself), and, as it runs, every file it opens and every environment variable it reads
(the audit the session's Snakemake build wrote, see featdefense.audit). Params: a stage gets only those it
declares (cli.run_stage), and reading params.yaml itself would be an undeclared open."""
from __future__ import annotations

import importlib.util
import json
import re

import pytest

from featdefense import audit, checkpoints
from featdefense.pipeline import PKG, STAGES


def test_a_stage_s_code_is_found_in_its_imports_every_form_of_them():
    """A stage's code is derived from its imports (pipeline.code_of): the finder must see each form the
    package uses, and a defence the evaluation finds by name must be added by the graph."""
    code = set(STAGES["report"].code_paths)
    assert {f"{PKG}/{f}" for f in ("stages/report.py", "defended.py", "targets/lenet.py", "io.py",
                                   "__init__.py", "models/__init__.py", "training.py",
                                   "attacks/__init__.py", "defences/__init__.py", "paper_results.yaml")} <= code
    assert f"{PKG}/stages/evaluate.py" not in code  # the report imports no stage
    assert {f"{PKG}/{f}" for f in ("attacks/autoattack.py", "accuracy.py", "defended.py")} <= \
        set(STAGES["evaluate_hgd"].code_paths)  # from ..attacks.autoattack import, from ..accuracy import
    assert f"{PKG}/defences/median_filter.py" in STAGES["evaluate_median_filter"].code_paths
    assert f"{PKG}/defences/median_filter.py" not in STAGES["evaluate_hgd"].code_paths
    assert f"{PKG}/locations.py" in STAGES["loss_net"].code_paths  # imported by name: from ..locations import
    assert f"{PKG}/data/__init__.py" in STAGES["prepare"].code_paths  # from ..data import MANIFEST
    assert not any("vgg.py" in c for c in STAGES["attack"].code_paths)  # what it does not import is not its code
    assert not any(c.endswith(("cli.py", "pipeline.py", "runs.py")) for s in STAGES.values() for c in s.code_paths)


def allowed_reads(stage, wildcards) -> tuple[set[str], list[str]]:
    """Files and folders a stage instance may open: its code, inputs and outputs (with their temporary
    names), its own checkpoint folder, and sources.local.yaml where the graph says it reads where its
    inputs lie."""
    files = {p.format(**wildcards) for p in stage.code_paths} | {p.format(**wildcards) for p in stage.deps.values()}
    outputs = [p.format(**wildcards) for p in stage.products.values()] + \
              [(checkpoints.ROOT / stage.instance_name(**wildcards)).as_posix()]
    folders = [p.format(**wildcards) for k, p in stage.deps.items() if k in {"raw"}] + \
              [p.format(**wildcards) for k, p in stage.outs.items() if k in stage.directories]
    files |= set(outputs) | ({"sources.local.yaml"} if stage.locations else set())
    return files, folders + outputs


def is_allowed(path: str, files: set[str], folders: list[str]) -> bool:
    source = re.sub(r"__pycache__/(\w+)\.cpython-\d+\.pyc$", r"\1.py", path)  # a module's compiled form
    if source in files or any(path.startswith(f + "/") for f in folders):
        return True
    directory, _, name = path.rpartition("/")  # the temporary file or folder an output is written as
    return any(o.rpartition("/")[0] == directory.split("/.")[0] and re.search(
        rf"/\.{re.escape(o.rpartition('/')[2])}\.[^/]*\.partial(/|$)", "/" + path) for o in folders)


@pytest.mark.pipeline
def test_a_stage_opens_only_what_it_declares_and_reads_no_environment(built):
    from .conftest import BUILDS

    audit = BUILDS[0].audit
    records = {f.stem: json.loads(f.read_text()) for f in audit.glob("*.json")}
    assert set(records) == {s.instance_name(**w) for s in STAGES.values() for w in s.instances()}
    # the recorder sees Python's opens and h5py's: a stage's declared reads are among what it recorded
    assert "data/prepared/mnist.h5" in records["train_target@mnist"]["opened"]
    assert "data/models/mnist/target.pt" in records["attack@mnist-pgd"]["opened"]
    for stage in STAGES.values():
        for w in stage.instances():
            name = stage.instance_name(**w)
            files, folders = allowed_reads(stage, w)
            undeclared = [p for p in records[name]["opened"] if not is_allowed(p, files, folders)]
            assert not undeclared, f"{name} opened what its stage does not declare: {undeclared}"
            assert records[name]["environ"] == [], f"{name} read environment variables {records[name]['environ']}"


def test_the_audit_records_what_a_stage_opens_and_not_the_source_a_traceback_shows(tmp_path, monkeypatch):
    """torch.cuda formats the stack as torch is imported, reading the source of every frame: not a read."""
    (tmp_path / "data.txt").write_text("x")
    (tmp_path / "stack.py").write_text("import traceback\n\ndef show():\n    return traceback.format_stack()\n")
    spec = importlib.util.spec_from_file_location("stack", tmp_path / "stack.py")
    stack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(audit.VARIABLE, str(tmp_path / "audit"))
    with audit.recording("probe"):
        (tmp_path / "data.txt").read_text()
        assert "return traceback.format_stack()" in "".join(stack.show())  # it did read stack.py's source
    assert json.loads((tmp_path / "audit/probe.json").read_text())["opened"] == ["data.txt"]
