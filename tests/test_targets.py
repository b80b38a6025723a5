"""Targets as plug-ins: a module per architecture, chosen by target.architecture, recorded in the model file."""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import pytest
import torch

from featdefense import locations, targets
from featdefense.io import ArtifactError
from featdefense.params import ParamsError, validate
from featdefense.stages import attack, download, prepare, train_target
from featdefense.targets import TARGETS, Target
from featdefense.targets.cnn import CNN
from featdefense.targets.lenet import LeNet

from . import fixtures
from .conftest import PAPER, set_dotted, set_param, sh

RUN = {"seed": 0, "device": "cpu", "threads": 1}


def test_the_papers_lenet_is_the_default_and_a_larger_cnn_is_declared():
    assert PAPER["target"]["architecture"] == "lenet"
    assert list(TARGETS) == ["lenet", "cnn"]
    assert all(t.input_shape == (1, 28, 28) and t.classes == 10 for t in TARGETS.values())


@pytest.mark.parametrize("name", list(TARGETS))
def test_a_target_builds_the_network_it_declares(name):  # its declaration as read: tests/test_plugins.py
    read = TARGETS[name]
    made = importlib.import_module(f"featdefense.targets.{Path(read.module).stem}").TARGET
    net = read.build(read.classes)
    assert type(net) is type(made.build(made.classes)) and net(torch.rand(2, *read.input_shape)).shape == (2, 10)


def test_an_architecture_that_is_not_a_module_is_refused_naming_those_that_are():
    p = set_dotted(dict(PAPER, target=dict(PAPER["target"])), "target.architecture", "resnet")
    with pytest.raises(ParamsError) as e:
        validate(p)
    assert "target.architecture" in str(e.value) and "'resnet'" in str(e.value) and "lenet" in str(e.value)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("targets")
    fixtures.write_mnist(tmp / "src")
    locations.write({"mnist": str(tmp / "src")}, tmp / locations.LOCAL_FILE)
    with contextlib.chdir(tmp):
        download.run({"download": {"mnist": {"checksums": fixtures.md5s(tmp / "src")}}}, {}, {"raw": tmp / "raw"},
                     "mnist")
    prepare.run({}, {"raw": tmp / "raw"}, {"prepared": tmp / "prepared.h5"}, "mnist")
    return tmp


def test_the_target_file_names_its_architecture_and_every_stage_builds_that_one(prepared, tmp_path):
    # a CNN target: params say cnn at training, then lenet again; the attack stage reads the file, not the params
    out = {"target": tmp_path / "target.pt", "metrics": tmp_path / "t.json", "log": tmp_path / "t.csv"}
    cfg = {"architecture": "cnn", "epochs": 1, "batch_size": 32, "lr": 0.001}
    train_target.run({**RUN, "target": cfg}, {"prepared": str(prepared / "prepared.h5")}, out, "mnist")
    module, meta, t = targets.load(out["target"], "cpu")
    assert type(module) is CNN and t.name == "cnn" and meta["architecture"] == "cnn"
    attack.run({**RUN, "target": {**cfg, "architecture": "lenet"},
                "attack": {"train_size": 20, "test_size": 20, "test_sample_seed": 1, "batch_size": 10,
                           "fgsm": {"epsilon": 0.2}}},
               {"prepared": str(prepared / "prepared.h5"), "target": str(out["target"])},
               {"adversarial": tmp_path / "fgsm.h5"}, "mnist", "fgsm")
    assert (tmp_path / "fgsm.h5").is_file()
    # a file from before targets were plug-ins has no architecture: it was the paper's LeNet
    blob = torch.load(out["target"], weights_only=True)
    assert targets.architecture({k: v for k, v in blob["meta"].items() if k != "architecture"}).name == "lenet"


def test_data_a_target_cannot_take_is_refused_before_training_naming_the_file_and_what_is_allowed(prepared):
    wide = Target(name="wide", label="wide", input_shape=(3, 32, 32), classes=10, build=lambda c: LeNet(c))
    x, y = torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    with pytest.raises(ArtifactError) as e:
        targets.check_data(wide, x.shape, y, "prepared.h5 (train split)")
    assert all(w in str(e.value) for w in ("prepared.h5 (train split)", "(1, 28, 28)", "(3, 32, 32)", "wide"))
    few = Target(name="few", label="few", input_shape=(1, 28, 28), classes=3, build=lambda c: LeNet(c))
    with pytest.raises(ArtifactError) as e:
        targets.check_data(few, x.shape, y, "prepared.h5 (test split)")
    assert "labels 0 .. 3" in str(e.value) and "allowed: 0 .. 2" in str(e.value)
    targets.check_data(TARGETS["lenet"], x.shape, y, "fits")  # what fits passes
    with pytest.raises(ValueError, match="input_shape"):
        Target(name="flat", label="flat", input_shape=(784,), classes=10, build=lambda c: None)


def test_stages_that_build_a_target_have_every_target_module_as_code():
    from featdefense.pipeline import STAGES

    for stage in ("train_target", "attack", "evaluate_unsecured", "evaluate_madry", "train_madry", "train_hgd",
                  "report"):
        code = STAGES[stage].code_paths
        assert {f"src/featdefense/{m}" for m in targets.modules()} <= set(code), stage
    assert not any("targets/" in c for c in STAGES["prepare"].code_paths + STAGES["train_denoiser"].code_paths)


TINY_NET = '''"""tiny: a one-layer target (a test's target)."""
from torch import nn

from . import Target

TARGET = Target(name="tiny", label="tiny", input_shape=(1, 28, 28), classes=10,
                build=lambda classes: nn.Sequential(nn.Flatten(), nn.Linear(784, classes)))
'''


def test_a_new_target_module_chosen_reruns_what_uses_a_target_and_nothing_else(snakemake_copy):
    project = snakemake_copy
    (project / "src/featdefense/targets/tiny.py").write_text(TINY_NET)
    set_param(project, "target.architecture", "tiny")
    sh(project, "featdefense", "params", "check")
    (project / "dvc.yaml").write_text(sh(project, "featdefense", "dvc-yaml").stdout)  # every target module is code
    plan = sh(project, "snakemake", "-n", "all").stdout
    # the denoiser learns from the attack files, crafted on the target: it reruns too
    for rule in ("train_target", "attack", "train_denoiser", "train_madry", "train_hgd", "evaluate_unsecured",
                 "evaluate_ours", "report"):
        assert f"rule {rule}:" in plan, rule
    for rule in ("download", "prepare", "loss_net"):  # none of them uses a target
        assert f"rule {rule}:" not in plan, rule
    ran = sh(project, "snakemake", "--cores", "2", "data/models/mnist/target.pt")
    assert "rule train_target:" in ran.stderr
    blob = torch.load(project / "data/models/mnist/target.pt", weights_only=True)  # (tiny is the copy's alone)
    assert blob["meta"]["architecture"] == "tiny" and blob["state_dict"]["1.weight"].shape == (10, 784)
