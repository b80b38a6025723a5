"""The whole pipeline on tiny canonical-format fixtures, through both engines.

The session builds it once by each engine (conftest.built: Snakemake all of it, DVC one dataset's chain);
a test that changes anything works on its own copy of the Snakemake build (snakemake_copy), running
either engine there."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from featdefense import locations
from featdefense.defences import DEFENCES
from featdefense.io import ISA_PINS, environment, platform_cpu, read_dvc_lock
from featdefense.pipeline import STAGES, final_products

from . import fixtures
from .conftest import TINY, copy_project, env_for, process_in, set_param, sh
from .counts import agree_with_counts
from .truth import (check_engines_agree, check_lineage_agrees, check_lock_tells_the_truth, dvc_stale,
                    snakemake_jobs, stale_in_themselves)

pytestmark = pytest.mark.pipeline
DATASETS = ("mnist", "cifar10")
METRIC_KEYS = {"dataset", "defence", "threat_model", "accuracy", "intervals", "robust", "whitebox_pgd_cascade", "sanity",
               "sanity_failed", "whitebox_robust_index",
               "degenerate", "robustness", "data",
               "target", "attacks"}
EVALUATIONS = {f"evaluate_{name}" for name in DEFENCES}
INSTANCES = {s.instance_name(**w) for s in STAGES.values() for w in s.instances()}


def check_artifacts(project, datasets=DATASETS) -> None:
    for path in final_products():
        assert (project / path).exists() or not any(ds in path for ds in datasets), path
    eps = {"fgsm": 0.2, "pgd": 0.2}
    for ds in datasets:
        with h5py.File(project / f"data/prepared/{ds}.h5") as f:
            for split, n in (("train", 300), ("test", 100)):
                assert f[split]["x"].shape == (n, 1, 28, 28) and f[split]["x"].dtype == np.uint8
                assert f[split]["y"].shape == (n,) and f[split]["y"].dtype == np.int64
            assert not f.attrs["canonical"]  # the fixtures are named by checksum override
            clean = {s: f[s]["x"][()].astype(np.float32) / 255 for s in ("train", "test")}
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
        with h5py.File(project / f"data/adversarial/{ds}/pgd.h5") as f:  # the test images every evaluation uses
            test_index = hashlib.sha256(f["test"]["index"][()].astype("<i8").tobytes()).hexdigest()
        for name, d in DEFENCES.items():
            metrics = json.loads((project / f"data/metrics/{ds}/evaluate_{name}.json").read_text())
            assert set(metrics) == METRIC_KEYS and metrics["defence"]["name"] == name
            acc = metrics["accuracy"]
            assert set(acc) == {"clean", "fgsm", "pgd", "whitebox_fgsm", "whitebox_pgd"}
            # white-box is the per-image minimum over every attack, the grey-box ones included: never weaker
            assert acc["whitebox_fgsm"] <= min(acc["clean"], acc["fgsm"])
            assert acc["whitebox_pgd"] <= min(acc["clean"], acc["fgsm"], acc["pgd"], acc["whitebox_fgsm"])
            names = list(metrics["whitebox_pgd_cascade"])
            cascade = [line["accuracy"] for line in metrics["whitebox_pgd_cascade"].values()]
            bpda = ["white-box BPDA-PGD step 0.1"] if d.kind == "preprocessor" and name != "unsecured" else []
            attacks = ["clean, grey-box PGD", "grey-box and white-box FGSM", "white-box PGD step 0.1",
                       "white-box PGD step 0.01", *bpda, "white-box AutoAttack APGD-CE", "white-box AutoAttack APGD-T",
                       "white-box AutoAttack FAB-T", "white-box AutoAttack Square (gradient-free)",
                       "white-box PGD of the robustness curve (first 100 images)",
                       "white-box PGD of the convergence check (first 20 images)"]  # (no plus: TINY's plus_above)
            assert names == [f"{i:02d}. {'+ ' if i > 1 else ''}{a}" for i, a in enumerate(attacks, 1)]
            assert cascade == sorted(cascade, reverse=True) and cascade[-1] == acc["whitebox_pgd"]
            for key, line in [*metrics["intervals"].items(), *metrics["whitebox_pgd_cascade"].items()]:
                low, high = line["interval_95"]
                assert line["images"] == 100 and low <= line["correct"] / 100 <= high, (name, key, line)
            assert {k: v["accuracy"] for k, v in metrics["intervals"].items()} == acc
            curve = metrics["robustness"]
            assert curve["epsilon"] == [0, 0.05, 0.1, 0.15, 0.2, 0.3] and curve["accuracy"][0] == acc["clean"]
            assert curve["accuracy"] == sorted(curve["accuracy"], reverse=True)
            # the curve at the table's epsilon is the table's white-box number, on the same (all 100) images
            assert curve["accuracy"][curve["epsilon"].index(0.2)] == acc["whitebox_pgd"]
            assert set(metrics["sanity"]) == {"not_degenerate", "keeps_clean_accuracy", "unbounded_budget",
                                              "converged", "whitebox_not_above_greybox", "autoattack_plus", "autoattack_rerun",
                                              "gradient_free_not_stronger", "autoattack_checks", "single_step_not_masked"}
            assert metrics["degenerate"] == (metrics["sanity"]["not_degenerate"]["verdict"] == "FAIL")
            agree_with_counts(metrics)
            assert len(metrics["whitebox_robust_index"]) == metrics["intervals"]["whitebox_pgd"]["correct"]
            assert metrics["data"] == {"canonical": False, "test_images": 100, "target_train_images": 300,
                                       "test_index_sha256": test_index}
            assert metrics["defence"]["trained"] == d.trains
        acc = json.loads((project / f"data/metrics/{ds}/evaluate_unsecured.json").read_text())["accuracy"]
        assert acc["clean"] > 0.5 and acc["pgd"] < acc["clean"]
        ours = json.loads((project / f"data/metrics/{ds}/evaluate_ours.json").read_text())["defence"]
        assert ours["training"]["train_examples"] == 600 and ours["training"]["loss_net"]["random"] is True
        report = (project / f"data/reports/{ds}/table.md").read_text()
        assert "NON-canonical" in report and "RANDOM weights" in report
        table = pd.read_csv(project / f"data/reports/{ds}/table.csv")
        assert list(table.columns) == ["attack", "defence", "accuracy_%", "95%_interval", "robust_%",
                                       "robust_95%_interval", "paper_%", "white-box_%", "white-box_95%_interval",
                                       "paper_says_broken", "flags"]
        # a defence is flagged exactly where its metrics call it degenerate or a sanity check failed
        evaluations = {d.label: json.loads((project / f"data/metrics/{ds}/evaluate_{n}.json").read_text())
                       for n, d in DEFENCES.items()}
        flagged = {label for label, m in evaluations.items()
                   if m["degenerate"] or any(c["verdict"] == "FAIL" for c in m["sanity"].values())}
        assert set(table.loc[table["flags"].notna(), "defence"]) == flagged
        assert ("| degenerate " in report) == any(m["degenerate"] for m in evaluations.values())
        assert f"### {ds}: sanity checks" in report
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
    # every HDF5 and model file tells where it came from, and with what software, even found alone
    for path in [*project.glob("data/**/*.h5"), *project.glob("data/**/*.pt")]:
        assert any(ds in str(path) for ds in datasets) or path.name == "loss_net.pt", path
        prov = (json.loads(h5py.File(path).attrs["provenance"]) if path.suffix == ".h5"
                else torch.load(path, weights_only=True)["meta"])
        assert {"stage", "params", "inputs", "featdefense_version", "environment"} <= set(prov), path
        assert prov["environment"]["torch"] == str(torch.__version__) and prov["environment"]["device"] == "cpu"
        assert all(len(i["sha256"]) == 64 for i in prov["inputs"].values())


def plan(project, target: str = "all") -> dict[str, int]:
    """Stage -> number of jobs `snakemake -n target` would run."""
    counts: dict[str, int] = {}
    for instance in snakemake_jobs(project, target):
        counts[instance.split("@")[0]] = counts.get(instance.split("@")[0], 0) + 1
    return counts


def dvc_ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def computed(project, since: int = 0) -> set[str]:
    """Instances whose stage command computed (was not restored) after the first `since` timing lines."""
    rows = [json.loads(line) for line in (project / "logs/timings.jsonl").read_text().splitlines()[since:]]
    return {r["stage"] for r in rows if not r["restored"]}


def timing_lines(project) -> int:
    return len((project / "logs/timings.jsonl").read_text().splitlines())


def both(*stages: str) -> set[str]:
    return {f"{s}@{ds}" for s in stages for ds in DATASETS}


DENOISER_AND_DOWNSTREAM = ("train_denoiser", "evaluate_ours", "report")
HGD_AND_DOWNSTREAM = ("train_hgd", "evaluate_hgd", "report")


def test_snakemake_builds_every_artifact_and_records_exactly_that(built):
    project = built["snakemake"]
    check_artifacts(project)
    assert set(read_dvc_lock(project / "dvc.lock")) == INSTANCES
    assert check_lock_tells_the_truth(project) >= len(INSTANCES)
    assert dvc_stale(project) == set() and snakemake_jobs(project) == {}
    check_lineage_agrees(project)


MNIST_CHAIN = {i for i in INSTANCES if "cifar10" not in i}  # what `dvc repro report@mnist` builds


def test_dvc_repro_builds_a_datasets_whole_chain(built):
    project = built["dvc"]  # from scratch: `dvc repro report@mnist`
    check_artifacts(project, datasets=("mnist",))
    assert set(read_dvc_lock(project / "dvc.lock")) == MNIST_CHAIN
    assert check_lock_tells_the_truth(project) >= len(MNIST_CHAIN)
    # what DVC made, Snakemake takes as current; the rest is still to make, for both
    assert check_engines_agree(project) == INSTANCES - MNIST_CHAIN


def test_both_engines_run_the_same_commands_on_the_same_files(built):
    locks = [read_dvc_lock(built[engine] / "dvc.lock") for engine in ("snakemake", "dvc")]
    assert set(locks[0]) == INSTANCES and set(locks[1]) == MNIST_CHAIN
    for name in MNIST_CHAIN:  # the same command, code, inputs, params and outputs, byte for byte
        assert locks[0][name] == locks[1][name], name
    snakemake_cmds = set(re.findall(r"^Shell command: (featdefense run .*?) > logs/", sh(
        built["snakemake"], "snakemake", "-n", "-p", "--forceall", "all").stdout, flags=re.M))
    graph_cmds = {s.cmd.format(**w) for s in STAGES.values() for w in s.instances()}
    assert snakemake_cmds == graph_cmds and len(graph_cmds) == len(INSTANCES)
    assert {locks[1][name]["cmd"] for name in MNIST_CHAIN} <= graph_cmds


def test_a_partial_snakemake_run_records_only_what_it_made(snakemake_copy):
    project = snakemake_copy
    lock_before = read_dvc_lock(project / "dvc.lock")
    set_param(project, "denoiser.epochs", 2)
    set_param(project, "report.examples", 8)
    since = timing_lines(project)
    sh(project, "snakemake", "--cores", "2", "data/reports/mnist/table.md")
    assert computed(project, since) == {"train_denoiser@mnist", "evaluate_ours@mnist", "report@mnist"}
    lock = read_dvc_lock(project / "dvc.lock")
    for name in ("train_denoiser@cifar10", "evaluate_ours@cifar10", "report@cifar10"):
        assert lock[name] == lock_before[name], f"{name} was not remade, yet dvc.lock changed"
    assert lock["train_denoiser@mnist"]["params"]["params.yaml"]["denoiser"]["epochs"] == 2
    # what it did not make is stale to both engines, for the same reason
    assert check_engines_agree(project) == {"train_denoiser@cifar10", "report@cifar10"}
    check_lock_tells_the_truth(project)
    check_lineage_agrees(project)
    cifar = json.loads(sh(project, "featdefense", "lineage", "--json", "data/models/cifar10/denoiser.pt").stdout)
    assert cifar["artifact"]["params"]["denoiser"]["epochs"] == 1
    assert torch.load(project / "data/models/cifar10/denoiser.pt", weights_only=True)["meta"]["params"][
        "denoiser"]["epochs"] == 1
    status = sh(project, "featdefense", "status").stdout
    assert "train_denoiser@cifar10: stale, changed: params denoiser" in status


def test_dvc_commit_waits_for_another_dvc_command_instead_of_failing(snakemake_copy):
    """Two runs ending at once (or a `dvc push` during a run's end) never run two DVC commands at once."""
    from dvc.repo import Repo

    project = snakemake_copy
    recorded = read_dvc_lock(project / "dvc.lock")
    (project / "dvc.lock").unlink()  # every instance is now current but unrecorded: one `dvc commit` of all
    with Repo(str(project)).lock:  # another DVC command holds the repository
        commit = subprocess.Popen(["featdefense", "dvc-commit"], cwd=project, env=env_for(project), text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while process_in(project, "commit --force") is None and commit.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(8)  # DVC alone gives up after 3 s
        assert commit.poll() is None, f"dvc commit did not wait for the lock:\n{commit.communicate()[0]}"
    out = commit.communicate(timeout=300)[0]
    assert commit.returncode == 0, out
    assert read_dvc_lock(project / "dvc.lock") == recorded


def test_snakemake_reruns_only_what_a_param_change_touches(snakemake_copy):
    set_param(snakemake_copy, "defences.hgd.epochs", 2)  # a baseline's recipe: nothing of ours reruns
    assert plan(snakemake_copy) == dict.fromkeys(HGD_AND_DOWNSTREAM, 2)
    set_param(snakemake_copy, "denoiser.epochs", 2)
    assert plan(snakemake_copy) == dict.fromkeys(HGD_AND_DOWNSTREAM + DENOISER_AND_DOWNSTREAM, 2)
    set_param(snakemake_copy, "attack.pgd.steps", 5)
    assert plan(snakemake_copy) == {"attack": 2, "train_denoiser": 2, "train_hgd": 2, **dict.fromkeys(EVALUATIONS, 2),
                                    "report": 2}
    check_engines_agree(snakemake_copy)


def test_dvc_repro_reruns_only_what_a_param_change_touches(snakemake_copy):
    set_param(snakemake_copy, "defences.median_filter.kernel_size", 5)  # its evaluation, and the report
    assert dvc_ran(sh(snakemake_copy, "dvc", "repro").stdout) == both("evaluate_median_filter", "report")
    assert check_engines_agree(snakemake_copy) == set()  # DVC's runs are current to Snakemake too
    check_lock_tells_the_truth(snakemake_copy)
    set_param(snakemake_copy, "defences.hgd.lr", 0.002)  # a baseline's recipe: nothing of ours is stale
    set_param(snakemake_copy, "report.examples", 4)
    assert check_engines_agree(snakemake_copy) == both("train_hgd", "evaluate_hgd", "report")


def test_snakemake_report_collects_tables_plots_and_figures(snakemake_copy):
    sh(snakemake_copy, "snakemake", "--report", "report.html", "all")
    html = (snakemake_copy / "report.html").read_text(errors="replace")
    for name in ("examples.png", "feature_noise.png", "robustness.png", "table.csv", "evaluate_ours.json",
                 "evaluate_madry.json", "denoiser_train.csv", "madry_train.csv", "hgd_train.csv"):
        assert name in html


def fresh_clone(project, dest):
    """What `git clone` of the project gives: its tracked files, dvc.lock and params.yaml; no data."""
    for f in sh(project, "git", "ls-files", "--others", "--cached", "--exclude-standard").stdout.split():
        if (project / f).is_file() and not f.startswith(("data/", "logs/", ".snakemake/")):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(project / f, dest / f)
    sh(dest, "git", "init", "-q")
    return dest


def test_push_then_pull_keeps_what_is_current_and_names_what_is_stale(snakemake_copy, tmp_path):
    project = snakemake_copy
    sh(project, "dvc", "remote", "modify", "local", "url", str(tmp_path / "remote"))
    sh(project, "dvc", "push")
    clone = fresh_clone(project, tmp_path / "clone")
    assert not (clone / "data").exists() and not (clone / locations.LOCAL_FILE).exists()
    lock = (clone / "dvc.lock").read_bytes()
    out = sh(clone, "featdefense", "pull").stdout
    assert f"{len(INSTANCES)} stage(s) current" in out and "stale" not in out
    assert (clone / "dvc.lock").read_bytes() == lock  # pulling records nothing
    assert dvc_stale(clone) == set() and snakemake_jobs(clone) == {}
    for ds in DATASETS:
        path = f"data/metrics/{ds}/evaluate_ours.json"
        assert (clone / path).read_bytes() == (project / path).read_bytes()
    check_lock_tells_the_truth(clone)
    check_lineage_agrees(clone)

    # a colleague whose params differ from the pulled dvc.lock: the pull says what is stale, never marks it
    second = fresh_clone(project, tmp_path / "second")
    set_param(second, "denoiser.epochs", 3)
    out = sh(second, "featdefense", "pull").stdout
    assert "train_denoiser@mnist: changed: params denoiser" in out
    assert not (second / "data/models/mnist/denoiser.pt").exists()  # in DVC's cache, not taken as current
    assert (second / "dvc.lock").read_bytes() == lock
    assert check_engines_agree(second) == both("train_denoiser", "evaluate_ours", "report")


def test_lineage_traces_a_metric_back_to_the_downloaded_files_and_the_software(snakemake_copy):
    sh(snakemake_copy, "git", "add", "-A")
    sh(snakemake_copy, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "run")
    tree = json.loads(sh(snakemake_copy, "featdefense", "lineage", "data/metrics/mnist/evaluate_ours.json",
                         "--json").stdout)
    node = tree["artifact"]
    assert node["stage"] == "evaluate_ours@mnist"
    assert set(node["params"]) == {"seed", "device", "threads", "attack.fgsm", "attack.pgd", "whitebox", "robustness",
                                   "sanity"}
    assert node["params"]["whitebox"]["step_sizes"] == [0.1, 0.01]
    assert node["environment"]["torch"] == str(torch.__version__) and node["environment"]["device"] == "cpu"
    # what the bytes depend on besides the software: the processor and the instruction set of the kernels
    assert node["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert node["environment"]["cpu"] == platform_cpu()
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
    assert stages["train_denoiser@mnist"]["params"]["denoiser"]["epochs"] == TINY["denoiser"]["epochs"]
    assert any(c["path"] == "src/featdefense/defences/ours.py" for c in stages["train_denoiser@mnist"]["code"])
    assert set(downloads[0]["files"]) == {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}
    head = sh(snakemake_copy, "git", "rev-parse", "HEAD").stdout.strip()
    assert tree["git"] == {"commit": head, "uncommitted_changes": False}
    text = sh(snakemake_copy, "featdefense", "lineage", "data/metrics/mnist/evaluate_ours.json").stdout
    assert "made by download@mnist" in text and "NOT canonical" in text and f"torch {torch.__version__}" in text
    assert f"cpu_capability {torch.backends.cpu.get_cpu_capability()}" in text


def test_the_environment_names_any_variable_that_pins_an_instruction_set(monkeypatch):
    for pin in ISA_PINS:
        monkeypatch.delenv(pin, raising=False)
    assert "isa_pins" not in environment()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert environment()["isa_pins"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}


def test_a_comment_only_code_edit_recomputes_one_stage_under_either_engine(built, tmp_path):
    for engine, run in (("dvc", ["dvc", "repro"]), ("snakemake", ["snakemake", "--cores", "2", "all"])):
        project = copy_project(built["snakemake"], tmp_path / engine)
        code = project / "src/featdefense/stages/train_target.py"
        code.write_text(code.read_text() + "\n# a comment changes the code's hash, not what it computes\n")
        since = timing_lines(project)
        sh(project, *run)
        assert computed(project, since) == both("train_target"), engine  # the rest: the same bytes, not rerun
        assert check_engines_agree(project) == set()
        check_lock_tells_the_truth(project)


def test_reverting_a_param_restores_outputs_from_the_cache_under_either_engine(built, tmp_path):
    for engine, run in (("dvc", ["dvc", "repro"]), ("snakemake", ["snakemake", "--cores", "2", "all"])):
        project = copy_project(built["snakemake"], tmp_path / engine)
        before = (project / "data/reports/mnist/examples.png").read_bytes()
        set_param(project, "report.examples", 4)
        sh(project, *run)
        assert (project / "data/reports/mnist/examples.png").read_bytes() != before
        set_param(project, "report.examples", TINY.get("report", {}).get("examples", 10))
        since = timing_lines(project)
        out = sh(project, *run).stdout
        assert computed(project, since) == set(), engine  # no stage command computed again
        if engine == "dvc":
            assert dvc_ran(out) == set() and "report@mnist' is cached" in out
        assert (project / "data/reports/mnist/examples.png").read_bytes() == before
        assert check_engines_agree(project) == set()


def test_moving_the_data_source_reruns_nothing_and_a_checksum_change_reruns_everything_below(snakemake_copy,
                                                                                              raw_fixtures):
    project = snakemake_copy
    moved = project.parent / "moved-raw"
    shutil.copytree(raw_fixtures, moved)
    locations.write({ds: str(moved / ds) for ds in DATASETS}, project / locations.LOCAL_FILE)
    assert snakemake_jobs(project) == {} and dvc_stale(project) == set()
    set_param(project, "download.mnist.checksums", {**fixtures.md5s(raw_fixtures / "mnist"),
                                                    "t10k-labels-idx1-ubyte.gz": "0" * 32})
    jobs = snakemake_jobs(project)
    assert stale_in_themselves(jobs) == {"download@mnist"} == dvc_stale(project)
    assert set(jobs) == {i for i in INSTANCES if i.endswith("@mnist") or "@mnist-" in i}


def test_a_cache_outside_the_repository_is_where_restores_and_lineage_look(snakemake_copy, tmp_path):
    """`dvc cache dir` elsewhere (a team's shared cache, DVC's documented setup): a deleted output comes back
    from it without recomputing, and lineage reads the software of an output that is only there."""
    shared = tmp_path / "team-cache"
    shutil.move(snakemake_copy / ".dvc/cache", shared)
    sh(snakemake_copy, "dvc", "cache", "dir", str(shared))
    sh(snakemake_copy, "dvc", "config", "cache.shared", "group")
    target = snakemake_copy / "data/models/mnist/target.pt"
    before = target.read_bytes()
    target.unlink()
    since = timing_lines(snakemake_copy)
    out = sh(snakemake_copy, "featdefense", "run", "train_target", "--dataset", "mnist")
    assert "restored them, nothing recomputed" in out.stderr
    assert computed(snakemake_copy, since) == set() and target.read_bytes() == before
    for made in ("data/models/mnist/denoiser.pt", "data/runs/train_denoiser@mnist.json"):
        (snakemake_copy / made).unlink()  # not in the workspace: only the cache has what made it
    tree = json.loads(sh(snakemake_copy, "featdefense", "lineage", "data/models/mnist/denoiser.pt", "--json").stdout)
    assert tree["artifact"]["environment"]["torch"] == str(torch.__version__)


def test_seeds_side_by_side_and_run_again_replace_their_experiments_and_summarise_the_same(snakemake_copy):
    project = snakemake_copy
    sh(project, "git", "add", "-A")
    sh(project, "git", "-c", "user.name=test", "-c", "user.email=test@example.org", "commit", "-qm", "built")
    seeds = ["featdefense", "seeds", "--seeds", "0", "1", "--dataset", "mnist"]
    workspace = {f: (project / f).read_bytes() for f in ("params.yaml", "data/models/mnist/target.pt")}
    side_by_side = sh(project, *seeds, "--jobs", "2")  # DVC's queue: two workers, each in a copy of the workspace
    assert "2 experiments, 2 at a time" in side_by_side.stdout
    assert "Running stage 'train_target@mnist'" in side_by_side.stdout  # seed 1 computed there, not here
    assert {f: (project / f).read_bytes() for f in workspace} == workspace
    summary = (project / "data/seeds/mnist.md").read_text()
    assert "seed-1-mnist" in sh(project, "dvc", "exp", "list", "--name-only").stdout
    sh(project, *seeds)  # one after another in the workspace: each experiment of the queue replaced
    assert (project / "data/seeds/mnist.md").read_text() == summary
    since = timing_lines(project)
    again = sh(project, *seeds)  # DVC refuses an experiment name twice: the second run replaces them
    assert "experiment seed-1-mnist exists: replaced" in again.stdout
    assert computed(project, since) == set()  # every seed's outputs restored from the run records
    assert (project / "data/seeds/mnist.md").read_text() == summary
