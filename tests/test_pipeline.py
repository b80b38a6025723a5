"""The whole pipeline on tiny canonical-format fixtures, through both engines, from temporary copies."""
from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from featdefense.defences import DEFENCES
from featdefense.pipeline import STAGES, final_products

from .conftest import TINY, make_project, set_param, sh

pytestmark = pytest.mark.pipeline
DATASETS = ("mnist", "cifar10")
FIRST_LOCK = "dvc.lock.first-run"
METRIC_KEYS = {"dataset", "defence", "threat_model", "accuracy", "whitebox_pgd_cascade", "robustness", "data",
               "target", "attacks"}
EVALUATIONS = {f"evaluate_{name}" for name in DEFENCES}


@pytest.fixture(scope="module")
def snakemake_project(tmp_path_factory, raw_fixtures):
    project = make_project(tmp_path_factory.mktemp("snakemake"), raw_fixtures)
    sh(project, "snakemake", "--cores", "4", "all")
    shutil.copy(project / "dvc.lock", project / FIRST_LOCK)  # as the first run left it
    return project


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory, raw_fixtures):
    project = make_project(tmp_path_factory.mktemp("dvc"), raw_fixtures)
    sh(project, "dvc", "repro")
    shutil.copy(project / "dvc.lock", project / FIRST_LOCK)
    return project


def check_artifacts(project) -> None:
    for path in final_products():
        assert (project / path).exists(), path
    eps = {"fgsm": 0.2, "pgd": 0.2}
    for ds in DATASETS:
        with h5py.File(project / f"data/prepared/{ds}.h5") as f:
            for split, n in (("train", 300), ("test", 100)):
                assert f[split]["x"].shape == (n, 28, 28) and f[split]["x"].dtype == np.uint8
                assert f[split]["y"].shape == (n,) and f[split]["y"].dtype == np.int64
            assert not f.attrs["canonical"]  # the fixtures are named by checksum override
            clean = {s: f[s]["x"][()].astype(np.float32)[:, None] / 255 for s in ("train", "test")}
        for attack in ("fgsm", "pgd"):
            with h5py.File(project / f"data/adversarial/{ds}/{attack}.h5") as f:
                assert json.loads(f.attrs["params"])["epsilon"] == eps[attack]
                for split in ("train", "test"):
                    g = f[split]
                    x_adv, index = g["x_adv"][()], g["index"][()]
                    assert x_adv.dtype == np.float32 and x_adv.shape == (len(index), 1, 28, 28)
                    assert g["pred"].dtype == np.int64 and g["y"].shape == (len(index),)
                    assert x_adv.min() >= 0 and x_adv.max() <= 1
                    assert np.abs(x_adv - clean[split][index]).max() <= eps[attack] + 1e-6
        for name, d in DEFENCES.items():
            metrics = json.loads((project / f"data/metrics/{ds}/evaluate_{name}.json").read_text())
            assert set(metrics) == METRIC_KEYS and metrics["defence"]["name"] == name
            acc = metrics["accuracy"]
            assert set(acc) == {"clean", "fgsm", "pgd", "whitebox_fgsm", "whitebox_pgd"}
            # white-box is the per-image minimum over every attack, the grey-box ones included: never weaker
            assert acc["whitebox_fgsm"] <= min(acc["clean"], acc["fgsm"])
            assert acc["whitebox_pgd"] <= min(acc["clean"], acc["fgsm"], acc["pgd"], acc["whitebox_fgsm"])
            names, cascade = list(metrics["whitebox_pgd_cascade"]), list(metrics["whitebox_pgd_cascade"].values())
            bpda = ["5. + white-box BPDA-PGD step 0.1"] if d.kind == "preprocessor" and name != "unsecured" else []
            assert names == ["1. clean, grey-box PGD", "2. + grey-box and white-box FGSM",
                             "3. + white-box PGD step 0.1", "4. + white-box PGD step 0.01", *bpda,
                             f"{5 + len(bpda)}. + white-box APGD-CE"]
            assert cascade == sorted(cascade, reverse=True) and cascade[-1] == acc["whitebox_pgd"]
            curve = metrics["robustness"]
            assert curve["epsilon"] == [0, 0.05, 0.1, 0.15, 0.2, 0.3] and curve["accuracy"][0] == acc["clean"]
            assert curve["accuracy"] == sorted(curve["accuracy"], reverse=True)
            assert metrics["data"] == {"canonical": False, "test_images": 100, "target_train_images": 300}
            assert metrics["defence"]["trained"] == d.trains
        acc = json.loads((project / f"data/metrics/{ds}/evaluate_unsecured.json").read_text())["accuracy"]
        assert acc["clean"] > 0.5 and acc["pgd"] < acc["clean"]
        ours = json.loads((project / f"data/metrics/{ds}/evaluate_ours.json").read_text())["defence"]
        assert ours["training"]["train_examples"] == 600 and ours["training"]["loss_net"]["random"] is True
        report = (project / f"data/reports/{ds}/table.md").read_text()
        assert "NON-canonical" in report and "RANDOM weights" in report
        table = pd.read_csv(project / f"data/reports/{ds}/table.csv")
        assert list(table.columns) == ["attack", "defence", "accuracy_%", "paper_%", "white-box_%", "paper_says_broken"]
        assert len(table) == 3 * len(DEFENCES) and set(table["defence"]) == {d.label for d in DEFENCES.values()}
        assert table["white-box_%"].isna().sum() == len(DEFENCES)  # clean rows only
        curves = pd.read_csv(project / f"data/plots/{ds}/robustness.csv")
        assert list(curves.columns) == ["epsilon", *DEFENCES]
        for figure in ("examples", "feature_noise", "robustness"):
            assert (project / f"data/reports/{ds}/{figure}.png").read_bytes()[:4] == b"\x89PNG"
    denoiser = torch.load(project / "data/models/mnist/denoiser.pt", weights_only=True)
    assert denoiser["meta"]["params"]["denoiser"]["epochs"] == TINY["denoiser"]["epochs"]
    for baseline in ("madry", "hgd"):  # the baselines trained on the tiny data, one log row per epoch
        log = pd.read_csv(project / f"data/plots/mnist/{baseline}_train.csv")
        assert list(log["epoch"]) == [1] and np.isfinite(log.drop(columns="epoch").to_numpy()).all()
    # every HDF5 and model file tells where it came from, even found alone
    for path in project.glob("data/**/*.h5"):
        with h5py.File(path) as f:
            prov = json.loads(f.attrs["provenance"])
        assert {"stage", "params", "inputs", "featdefense_version"} <= set(prov), path
        assert all(len(i["sha256"]) == 64 for i in prov["inputs"].values())
    for path in project.glob("data/models/**/*.pt"):
        meta = torch.load(path, weights_only=True)["meta"]
        assert {"stage", "params", "inputs", "featdefense_version"} <= set(meta), path


def snakemake_plan(project) -> dict[str, int]:
    """Rule -> number of jobs that `snakemake -n all` would run."""
    out = sh(project, "snakemake", "-n", "all").stdout
    table = out.split("Job stats:")[1] if "Job stats:" in out else ""
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M))
    jobs.pop("total", None)
    jobs.pop("all", None)
    return {k: int(v) for k, v in jobs.items()}


def dvc_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


DENOISER_AND_DOWNSTREAM = {"train_denoiser", "evaluate_ours", "report"}
HGD_AND_DOWNSTREAM = {"train_hgd", "evaluate_hgd", "report"}


def test_snakemake_builds_every_artifact(snakemake_project):
    check_artifacts(snakemake_project)


def test_snakemake_run_is_recorded_in_dvc_lock_and_pushes(snakemake_project):
    status = sh(snakemake_project, "dvc", "status", "--json").stdout
    assert json.loads(status) == {}
    sh(snakemake_project, "dvc", "push")
    assert snakemake_plan(snakemake_project) == {}


def test_snakemake_reruns_only_what_a_param_change_touches(snakemake_project):
    set_param(snakemake_project, "defences.hgd.epochs", 2)  # a baseline's recipe: nothing of ours reruns
    assert snakemake_plan(snakemake_project) == dict.fromkeys(HGD_AND_DOWNSTREAM, 2)
    set_param(snakemake_project, "denoiser.epochs", 2)
    assert snakemake_plan(snakemake_project) == dict.fromkeys(HGD_AND_DOWNSTREAM | DENOISER_AND_DOWNSTREAM, 2)
    set_param(snakemake_project, "attack.pgd.steps", 5)
    plan = snakemake_plan(snakemake_project)
    assert plan == {"attack": 2, "train_denoiser": 2, "train_hgd": 2, **dict.fromkeys(EVALUATIONS, 2), "report": 2}


def test_dvc_repro_builds_every_artifact(dvc_project):
    check_artifacts(dvc_project)
    assert json.loads(sh(dvc_project, "dvc", "status", "--json").stdout) == {}


def test_dvc_repro_reruns_only_what_a_param_change_touches(dvc_project):
    set_param(dvc_project, "denoiser.epochs", 2)
    ran = dvc_ran(sh(dvc_project, "dvc", "repro").stdout)
    assert ran == {f"{stage}@{ds}" for stage in DENOISER_AND_DOWNSTREAM for ds in DATASETS}
    set_param(dvc_project, "defences.hgd.lr", 0.002)  # a baseline's recipe: nothing of ours reruns
    ran = dvc_ran(sh(dvc_project, "dvc", "repro").stdout)
    assert ran == {f"{stage}@{ds}" for stage in HGD_AND_DOWNSTREAM for ds in DATASETS}
    set_param(dvc_project, "report.examples", 4)
    ran = dvc_ran(sh(dvc_project, "dvc", "repro").stdout)
    assert ran == {f"report@{ds}" for ds in DATASETS}


def test_both_engines_run_the_same_commands_on_the_same_files(snakemake_project, dvc_project):
    names = {s.instance_name(**w) for s in STAGES.values() for w in s.instances()}
    locks = [yaml.safe_load((p / FIRST_LOCK).read_text())["stages"] for p in (snakemake_project, dvc_project)]
    assert set(locks[0]) == set(locks[1]) == names
    for name in names:  # same deps, params and outs recorded, whichever engine ran the stage
        for key in ("deps", "outs"):
            assert [e["path"] for e in locks[0][name].get(key, [])] == [e["path"] for e in locks[1][name].get(key, [])]
        assert locks[0][name].get("params", {}).keys() == locks[1][name].get("params", {}).keys()
    # both ran from the same params and seed on CPU: byte-identical artifacts
    hashes = [{o["path"]: o["md5"] for s in lock.values() for o in s.get("outs", [])} for lock in locks]
    assert hashes[0] == hashes[1]
    snakemake_cmds = set(re.findall(r"^Shell command: (featdefense run .*?) > logs/", sh(
        snakemake_project, "snakemake", "-n", "-p", "--forceall", "all").stdout, flags=re.M))
    dvc_cmds = {lock["cmd"] for lock in locks[1].values()}
    assert snakemake_cmds == dvc_cmds and len(dvc_cmds) == len(names)


def test_snakemake_report_collects_tables_plots_and_figures(snakemake_project):
    sh(snakemake_project, "snakemake", "--report", "report.html", "all")
    html = (snakemake_project / "report.html").read_text(errors="replace")
    for name in ("examples.png", "feature_noise.png", "robustness.png", "table.csv", "evaluate_ours.json",
                 "evaluate_madry.json", "denoiser_train.csv", "madry_train.csv", "hgd_train.csv"):
        assert name in html


def test_push_then_pull_into_a_fresh_clone_has_nothing_to_run(snakemake_project, tmp_path_factory):
    remote = tmp_path_factory.mktemp("remote")
    sh(snakemake_project, "dvc", "remote", "modify", "local", "url", str(remote))
    sh(snakemake_project, "dvc", "push")
    clone = tmp_path_factory.mktemp("clone")
    for f in sh(snakemake_project, "git", "ls-files", "--others", "--cached", "--exclude-standard").stdout.split():
        if (snakemake_project / f).is_file() and not f.startswith(("data/", "logs/", ".snakemake/")):
            (clone / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(snakemake_project / f, clone / f)
    sh(clone, "git", "init", "-q")
    assert not (clone / "data/metrics").exists()
    sh(clone, "featdefense", "pull")
    assert json.loads(sh(clone, "dvc", "status", "--json").stdout) == {}
    assert snakemake_plan(clone) == {}
    for ds in DATASETS:
        path = f"data/metrics/{ds}/evaluate_ours.json"
        assert (clone / path).read_bytes() == (snakemake_project / path).read_bytes()


def test_lineage_traces_a_metric_back_to_the_downloaded_files(dvc_project):
    tree = json.loads(sh(dvc_project, "featdefense", "lineage", "data/metrics/mnist/evaluate_ours.json",
                         "--json").stdout)
    node = tree["artifact"]
    assert node["stage"] == "evaluate_ours@mnist"
    assert set(node["params"]) == {"seed", "device", "threads", "attack.fgsm", "attack.pgd", "whitebox", "robustness"}
    assert node["params"]["whitebox"]["step_sizes"] == [0.1, 0.01]
    stages, downloads = {}, []

    def walk(n):
        stages[n.get("stage")] = n
        if "files" in n:
            downloads.append(n)
        for child in n.get("inputs", []):
            walk(child)

    walk(node)
    assert {"train_denoiser@mnist", "loss_net", "attack@mnist-pgd", "train_target@mnist", "prepare@mnist",
            "download@mnist"} <= set(stages)
    assert stages["train_denoiser@mnist"]["params"]["denoiser"]["epochs"] >= 1
    assert any(c["path"] == "src/featdefense/stages/train_denoiser.py" for c in stages["train_denoiser@mnist"]["code"])
    assert set(downloads[0]["files"]) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    assert "commit" in tree["git"]
    text = sh(dvc_project, "featdefense", "lineage", "data/metrics/mnist/evaluate_ours.json").stdout
    assert "made by download@mnist" in text and "NOT canonical" in text


def test_a_code_edit_that_computes_the_same_reruns_one_stage_only(dvc_project):
    code = dvc_project / "src/featdefense/stages/train_target.py"
    code.write_text(code.read_text() + "\n# a comment changes the code's hash, not what it computes\n")
    out = sh(dvc_project, "dvc", "repro").stdout
    assert dvc_ran(out) == {"train_target@mnist", "train_target@cifar10"}
    assert json.loads(sh(dvc_project, "dvc", "status", "--json").stdout) == {}


def test_reverting_a_param_restores_outputs_from_the_run_cache(dvc_project):
    set_param(dvc_project, "target.lr", 0.002)
    assert "train_target@mnist" in dvc_ran(sh(dvc_project, "dvc", "repro").stdout)
    set_param(dvc_project, "target.lr", TINY["target"].get("lr", 0.001))
    out = sh(dvc_project, "dvc", "repro").stdout
    assert dvc_ran(out) == set()  # no stage command ran again
    assert "train_target@mnist' is cached" in out
    assert json.loads(sh(dvc_project, "dvc", "status", "--json").stdout) == {}


def test_snakemake_reruns_a_stage_and_all_downstream_after_a_code_edit(snakemake_project):
    # Snakemake's mtime trigger has no content hashes: unlike DVC it cannot tell that outputs stayed the same
    code = snakemake_project / "src/featdefense/stages/train_target.py"
    code.write_text(code.read_text() + "\n# a comment\n")
    assert snakemake_plan(snakemake_project) == {"train_target": 2, "attack": 4, "train_denoiser": 2, "train_hgd": 2,
                                                 **dict.fromkeys(EVALUATIONS, 2), "report": 2}
