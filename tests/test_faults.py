"""Bad input and faults: a clear error naming the problem, and no artifact lost or half-written."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import yaml

from featdefense import cli, locations
from featdefense.io import ArtifactError, atomic_path, resolve_device
from featdefense.stages.attack import in_halves_on_oom

from . import fixtures
from .conftest import env_for, make_project, set_param, sh



def digest(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


@pytest.fixture
def workdir(snakemake_copy, monkeypatch):
    """A built project: every stage's inputs and outputs are there, so a stage that ran would change some."""
    monkeypatch.chdir(snakemake_copy)
    return snakemake_copy


@pytest.mark.parametrize("stage, edit, words", [
    ("train_target", "target: {epochs: 0}", ["target.epochs", "0", "minimum"]),
    ("train_target", "target: {batch_size: 0}", ["target.batch_size", "0"]),
    ("attack", "attack: {fgsm: {epsilon: 1.5}}", ["attack.fgsm.epsilon", "1.5", "maximum"]),
    ("attack", "attack: {pgd: {step_size: 0.5}}", ["attack.pgd.step_size", "larger than attack.pgd.epsilon"]),
    ("attack", "attack: {pgd: {stepz: 3}}", ["attack.pgd", "unknown key", "stepz"]),
    ("train_denoiser", "device: gpu", ["device", "'gpu'", "cuda"]),
    ("train_denoiser", "denoiser: {train_on: [fgsm, deepfool]}", ["denoiser.train_on", "deepfool"]),
    ("loss_net", "loss_net: {weights: file}", ["loss_net.sha256", "null"]),
    ("loss_net", "loss_net: {file: /no/such/vgg.pth}", ["loss_net", "unknown key", "file"]),
    ("download", "download: {mnist: {source: /data/mnist}}", ["download.mnist", "unknown key", "source"]),
    ("download", "datasets: [svhn]", ["datasets.0", "'svhn'", "allowed", "fashion_mnist"]),
])
def test_bad_params_stop_a_stage_before_it_touches_anything(workdir, capsys, stage, edit, words):
    from featdefense.params import merge

    params = merge(yaml.safe_load((workdir / "params.yaml").read_text()), yaml.safe_load(edit))
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    before = {p: digest(p) for p in (workdir / "data").rglob("*") if p.is_file()}
    assert len(before) > 40
    wildcards = {"train_target": ["--dataset", "mnist"], "attack": ["--dataset", "mnist", "--attack", "pgd"],
                 "train_denoiser": ["--dataset", "mnist"], "download": ["--dataset", "mnist"], "loss_net": []}
    assert cli.main(["run", stage, *wildcards[stage]]) == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err
    assert "Traceback" not in err
    assert {p: digest(p) for p in (workdir / "data").rglob("*") if p.is_file()} == before


def test_snakemake_refuses_bad_params_at_start_up(tmp_path, raw_fixtures):
    project = make_project(tmp_path / "p", raw_fixtures)
    set_param(project, "attack.pgd.epsilon", 0)
    result = sh(project, "snakemake", "-n", "all", check=False)
    assert result.returncode != 0
    assert "attack.pgd.epsilon: 0 is not allowed" in result.stdout + result.stderr


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def corrupt_source(project, name, data):
    """A download source holding one bad file (and the other fixtures unchanged)."""
    src = project.parent / "bad-source"
    if not src.exists():
        shutil.copytree(locations.configured(project / locations.LOCAL_FILE)["mnist"], src)
    (src / name).write_bytes(data)
    locations.write({"mnist": str(src)}, project / locations.LOCAL_FILE)
    return src


def write_bad_checksum_override(project, name, data):
    src = corrupt_source(project, name, data)
    set_param(project, "download.mnist.checksums", fixtures.md5s(src))


# (what to break, the stage command that reads it, words its error must contain)
CORRUPT_INPUTS = {
    "truncated prepared HDF5": (lambda p: truncate(p / "data/prepared/mnist.h5"),
                                ["train_target", "--dataset", "mnist"], ["data/prepared/mnist.h5"]),
    "prepared HDF5 of zero bytes": (lambda p: (p / "data/prepared/mnist.h5").write_bytes(b""),
                                    ["attack", "--dataset", "mnist", "--attack", "fgsm"],
                                    ["data/prepared/mnist.h5", "corrupt"]),
    "corrupt target model": (lambda p: (p / "data/models/mnist/target.pt").write_bytes(b"PK\x03\x04 not a zip"),
                             ["attack", "--dataset", "mnist", "--attack", "fgsm"],
                             ["data/models/mnist/target.pt", "corrupt"]),
    "truncated target model": (lambda p: truncate(p / "data/models/mnist/target.pt"),
                               ["attack", "--dataset", "mnist", "--attack", "pgd"], ["data/models/mnist/target.pt"]),
    "download with a wrong checksum": (lambda p: corrupt_source(p, "t10k-labels-idx1-ubyte.gz", b"tampered"),
                                       ["download", "--dataset", "mnist", "--force"],
                                       ["t10k-labels-idx1-ubyte.gz", "checksum mismatch", "not kept"]),
    "download source without the file": (lambda p: (corrupt_source(p, "x", b"") / "train-images-idx3-ubyte.gz").unlink(),
                                         ["download", "--dataset", "mnist", "--force"],
                                         ["train-images-idx3-ubyte.gz", "sources.local.yaml"]),
    "IDX file that is not gzip (checksum named)": (
        lambda p: write_bad_checksum_override(p, "train-labels-idx1-ubyte.gz", b"plain bytes"),
        ["download", "--dataset", "mnist"], None),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_INPUTS))
def test_corrupt_inputs_are_named_and_no_artifact_changes(snakemake_copy, case):
    trained_project = snakemake_copy
    breaker, command, words = CORRUPT_INPUTS[case]
    breaker(trained_project)
    data = trained_project / "data"
    before = {p: digest(p) for p in data.rglob("*") if p.is_file()}
    result = sh(trained_project, "featdefense", "run", *command, check=False)
    if words is None:  # a named checksum lets the bad file through download: prepare must catch it
        assert result.returncode == 0
        before = {p: digest(p) for p in data.rglob("*") if p.is_file()}
        result = sh(trained_project, "featdefense", "run", "prepare", "--dataset", "mnist", check=False)
        words = ["train-labels-idx1-ubyte.gz", "not a readable gzip file"]
    assert result.returncode == 2, result.stderr
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr
    assert {p: digest(p) for p in data.rglob("*") if p.is_file()} == before


def test_hdf5_without_the_expected_data_is_named(tmp_path):
    from featdefense.training import load_split

    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f.create_dataset("train/x", data=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ArtifactError, match="odd.h5.*'test'"):
        load_split(tmp_path / "odd.h5", "test")


KILL_AT_RENAME = """
import os, signal, sys
real = os.replace
def die(src, dst):
    if str(dst).endswith(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)  # the temporary file is complete; the rename never happens
    real(src, dst)
os.replace = die
from featdefense.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_stage_killed_mid_write_leaves_nothing_trusted_and_nothing_recorded(snakemake_copy):
    project = snakemake_copy
    out = project / "data/models/mnist/target.pt"
    records = project / ".featdefense/runs/train_target@mnist"
    run = ["run", "train_target", "--dataset", "mnist"]
    set_param(project, "target.epochs", 2)  # a state no run has recorded: the stage computes
    lock = (project / "dvc.lock").read_bytes()

    def killed_run():
        shutil.rmtree(records)  # no record to restore from: the stage computes, and is killed at the rename
        result = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, "target.pt", *run], cwd=project,
                                env=env_for(project), capture_output=True, text=True)
        assert result.returncode == -signal.SIGKILL, result.stderr

    sh(project, "featdefense", *run)
    reference = digest(out)
    out.unlink()
    killed_run()
    assert not out.exists()  # no output, only a temporary file no stage reads
    assert [p.name.startswith(".target.pt.") for p in out.parent.iterdir() if p.suffix == ".partial"] == [True]
    assert not records.exists()  # and no record says it ran
    sh(project, "featdefense", "dvc-commit")
    assert (project / "dvc.lock").read_bytes() == lock  # nothing to record: dvc.lock unchanged
    sh(project, "featdefense", *run)
    assert digest(out) == reference  # identical to the uninterrupted run
    assert not [p for p in out.parent.iterdir() if p.suffix == ".partial"]

    killed_run()
    assert digest(out) == reference  # the previous complete output stands


def test_disk_full_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(ArtifactError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("{")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_requested_without_a_gpu_says_what_to_do():
    with pytest.raises(Exception, match="no CUDA device is available; set device: auto"):
        resolve_device("cuda")


def test_out_of_memory_retries_in_halves():
    calls = []

    def attacker(x, y, generator=None):
        calls.append(len(x))
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("fake")
        return x + 1

    x = torch.arange(8.0).view(8, 1)
    assert torch.equal(in_halves_on_oom(attacker, x, torch.zeros(8), None), x + 1)
    assert calls[0] == 8 and max(calls[1:]) <= 4
