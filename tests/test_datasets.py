"""Datasets as plug-ins: a module each, its files, reader, shape and classes declared once; a run lists its own."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from featdefense import locations
from featdefense.datasets import DATASETS, checked, listed
from featdefense.io import ArtifactError
from featdefense.params import ParamsError, validate
from featdefense.stages import download, prepare
from featdefense.stages.report import paper_results, table

from . import fixtures
from .conftest import PAPER, ROOT, sh


def test_the_papers_two_datasets_run_by_default_and_fashion_mnist_is_declared():
    assert PAPER["datasets"] == ["mnist", "cifar10"] and listed(ROOT / "params.yaml") == ["mnist", "cifar10"]
    assert list(DATASETS) == ["mnist", "cifar10", "fashion_mnist"]
    assert [d.paper_table for d in DATASETS.values()] == ["Table 1", "Table 2", None]


def test_a_run_lists_only_dataset_modules(tmp_path):
    # the graph leaves out a name that is no module; params.validate refuses it, naming what is allowed (so the
    # CLI still starts, and `featdefense params apply` can mend the file)
    (tmp_path / "params.yaml").write_text("datasets: [mnist, svhn]\n")
    assert listed(tmp_path / "params.yaml") == ["mnist"]
    p = dict(PAPER, datasets=["mnist", "svhn"])
    with pytest.raises(ParamsError, match=r"datasets.1: 'svhn' is not allowed; allowed: \['mnist', 'cifar10'"):
        validate(p)
    assert listed(tmp_path / "none.yaml") == list(DATASETS)  # no params: the graph of every dataset


def test_what_a_reader_returns_is_refused_unless_it_is_what_the_module_declares():
    d = DATASETS["mnist"]
    x, y = np.zeros((3, 1, 28, 28), np.uint8), np.array([0, 9, 4])
    assert checked(d, x, y, "raw") == (x, y)
    for bad_x, bad_y, words in [
        (x.astype(np.float32), y, ["raw", "datasets/mnist.py", "float32", "allowed: a uint8"]),
        (x[:, 0], y, ["shape (3, 28, 28)", "allowed: (N, 1, 28, 28)"]),
        (x, y.astype(np.int32), ["int32", "allowed: int64 of shape (3,)"]),
        (x, y[:2], ["shape (2,)", "one per image"]),
        (x, np.array([0, 10, 4]), ["labels 0 .. 10", "allowed: 0 .. 9"]),
    ]:
        with pytest.raises(ArtifactError) as e:
            checked(d, bad_x, bad_y, "raw")
        assert all(w in str(e.value) for w in words), (str(e.value), words)


def test_fashion_mnist_downloads_and_prepares_through_its_module_alone(tmp_path):
    # the fixture files in MNIST's IDX format, named as a non-canonical copy (as configs/fashion-mnist.yaml
    # names Debian's re-gzipped files)
    md5 = fixtures.write_mnist(tmp_path / "src", 30, 20)
    locations.write({"fashion_mnist": str(tmp_path / "src")}, tmp_path / locations.LOCAL_FILE)
    with contextlib.chdir(tmp_path):
        download.run({"download": {"fashion_mnist": {"checksums": md5}}}, {}, {"raw": tmp_path / "raw"},
                     "fashion_mnist")
    manifest = json.loads((tmp_path / "raw" / "manifest.json").read_text())
    assert manifest["dataset"] == "fashion_mnist" and not manifest["canonical"]
    assert set(manifest["files"]) == set(DATASETS["fashion_mnist"].files)
    prepare.run({}, {"raw": tmp_path / "raw"}, {"prepared": tmp_path / "prepared.h5"}, "fashion_mnist")
    with h5py.File(tmp_path / "prepared.h5") as f:
        assert f["train"]["x"].shape == (30, 1, 28, 28) and f["test"]["y"].shape == (20,)
        assert f.attrs["dataset"] == "fashion_mnist"


def test_a_dataset_the_paper_did_not_cover_has_no_paper_column():
    archive = ROOT / "results" / "cpu-real-hgd-unclipped" / "metrics" / "mnist"
    evaluations = {p.stem.removeprefix("evaluate_"): json.loads(p.read_text()) for p in archive.glob("evaluate_*.json")}
    paper = table(evaluations, paper_results())
    assert {"paper_%", "paper_says_broken"} <= set(paper.columns) and paper["paper_%"].notna().any()
    for m in evaluations.values():
        m["dataset"] = "fashion_mnist"
    ours = table(evaluations, paper_results())
    assert "paper_%" not in ours and "paper_says_broken" not in ours
    assert ours.drop(columns="flags").equals(paper.drop(columns=["paper_%", "paper_says_broken", "flags"]))


def test_a_stage_of_one_dataset_has_that_datasets_module_as_code():
    from featdefense.pipeline import STAGES

    for name in ("download", "prepare"):
        code = STAGES[name].code_paths
        assert "src/featdefense/datasets/{dataset}.py" in code
        assert not any(c.startswith("src/featdefense/datasets/") and "{" not in c and not c.endswith("__init__.py")
                       for c in code), code  # no other dataset's module: adding one reruns none of these
    assert not any("{dataset}" in c for c in STAGES["loss_net"].code_paths)


DIGITS = '''"""digits: the fixture's MNIST files under another name (a test's dataset)."""
from ..data.formats import read_idx_split
from . import Dataset


def read(raw_dir, split):
    return read_idx_split(raw_dir, split, "digits")


DATASET = Dataset(name="digits", label="digits", files={files!r}, source="https://example.invalid/digits",
                  read=read, shape=(1, 28, 28), classes=10)
'''


def test_a_new_dataset_module_and_params_section_run_its_stages_and_no_other(snakemake_copy):
    project = snakemake_copy
    raw = locations.configured(project / locations.LOCAL_FILE)["mnist"]
    (project / "src/featdefense/datasets/digits.py").write_text(DIGITS.format(files=fixtures.md5s(Path(raw))))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["datasets"] = [*params["datasets"], "digits"]
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    missing = sh(project, "featdefense", "params", "check", check=False)
    assert missing.returncode == 2 and "download: 'digits' is a required property" in missing.stderr
    params["download"]["digits"] = {"checksums": {}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    sh(project, "featdefense", "params", "check")
    locations.write({"digits": raw}, project / locations.LOCAL_FILE)
    (project / "dvc.yaml").write_text(sh(project, "featdefense", "dvc-yaml").stdout)  # its plot
    plan = sh(project, "snakemake", "-n", "all").stdout
    assert "dataset=digits" in plan and "rule report:" in plan
    assert "dataset=mnist" not in plan and "dataset=cifar10" not in plan, plan  # nothing built reruns
    assert "rule loss_net:" not in plan
    ran = sh(project, "snakemake", "--cores", "2", "data/prepared/digits.h5")
    assert "rule prepare:" in ran.stderr
    with h5py.File(project / "data/prepared/digits.h5") as f:
        assert f["train"]["x"].shape == (300, 1, 28, 28) and f.attrs["canonical"]  # its own MD5s: canonical
