"""The tiny pipeline through a real SLURM (scripts/local_slurm.py: one node, this machine) with the project's
own profile, workflow/profiles/slurm, MNIST's whole chain (every rule): a job killed by the scheduler
mid-stage leaves nothing either engine takes as valid, the next run finishes, and what it made is byte for
byte what the local Snakemake build made.

Needs root and Debian's slurm-wlm and munge; skipped with the reason where SLURM cannot start, except where
FEATDEFENSE_REQUIRE_SLURM is set (CI: .ci/run installs them), where that is a failure."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from featdefense import checkpoints
from featdefense.cli import STOPPED
from featdefense.io import read_dvc_lock
from featdefense.pipeline import STAGES, STOP_SIGNAL

from .conftest import ROOT, env_for, make_project, process_in, set_param, sh
from .test_pipeline import MNIST_CHAIN as CHAIN
from .truth import check_engines_agree, check_lock_tells_the_truth, snakemake_jobs

pytestmark = pytest.mark.pipeline

_spec = importlib.util.spec_from_file_location("local_slurm", ROOT / "scripts" / "local_slurm.py")
local_slurm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local_slurm)

# README's command for the local cluster: the profile, with the cluster's partition and no account; squeue
# for job states (no accounting here: sacct has nothing to say) and a first status check after 2 s
SLURM_RUN = ["snakemake", "--profile", "workflow/profiles/slurm",
             "--default-resources", f"slurm_partition={local_slurm.PARTITION}", "--slurm-no-account",
             "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"]
VICTIM = ("train_target", {"dataset": "mnist"})  # killed mid-stage: everything of MNIST depends on it
# MNIST's whole chain (CHAIN), as the DVC build does (every rule, 15 jobs; CIFAR-10's half adds no rule)
TARGETS = [p.format(dataset="mnist") for p in STAGES["report"].products.values()]


@pytest.fixture(scope="module")
def cluster():
    reason = local_slurm.unavailable()
    if reason:
        if os.environ.get("FEATDEFENSE_REQUIRE_SLURM"):
            pytest.fail(f"SLURM is required here (FEATDEFENSE_REQUIRE_SLURM) but cannot start: {reason}")
        pytest.skip(f"SLURM cannot start here: {reason}")
    root = Path(tempfile.mkdtemp(prefix="featdefense-slurm-", dir="/tmp"))  # munged: folders open to all
    root.chmod(0o755)
    try:
        yield local_slurm.start(root)
    finally:
        local_slurm.stop(root)
        shutil.rmtree(root, ignore_errors=True)


def slurm_job_of(pid: int) -> str:
    environ = dict(v.split(b"=", 1) for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in v)
    return environ[b"SLURM_JOB_ID"].decode()


def kill_mid_stage(project: Path, run: subprocess.Popen, command: str, seconds: float = 240) -> str:
    """scancel the SLURM job in which the stage `command` is running, once its process is seen."""
    deadline = time.time() + seconds
    while time.time() < deadline and run.poll() is None:
        pid = process_in(project, command)
        if pid is not None:
            job = slurm_job_of(pid)
            subprocess.run(["scancel", job], check=True)
            return job
        time.sleep(0.05)
    raise AssertionError(f"never saw `{command}` run within {seconds} s (the run ended: {run.poll() is not None})")


def test_slurm_run_killed_mid_stage_then_rerun_matches_the_local_build(cluster, builds, tmp_path):
    project = make_project(tmp_path / "project", builds.raw)
    env = {**env_for(project), **cluster}
    stage, wildcards = STAGES[VICTIM[0]], VICTIM[1]
    victim = stage.instance_name(**wildcards)

    # 1. a run in which the scheduler kills one job mid-stage (no retry, so the run ends with it)
    with open(tmp_path / "run1.log", "w") as log:
        run = subprocess.Popen(SLURM_RUN + ["--retries", "0", *TARGETS], cwd=project, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
        job = kill_mid_stage(project, run, stage.cmd.format(**wildcards))
        assert run.wait(timeout=600) != 0
    log1 = (tmp_path / "run1.log").read_text()
    assert re.search(rf"SLURM-job '{job}' failed, SLURM status is: 'CANCELLED'", log1), log1[-3000:]
    assert re.search(r"Job \d+ has been submitted with SLURM jobid \d+", log1)

    products = [p.format(**wildcards) for p in stage.products.values()]
    assert not [p for p in products if (project / p).exists()], "a killed job left outputs"
    lock = read_dvc_lock(project / "dvc.lock") if (project / "dvc.lock").exists() else {}
    assert victim not in lock and lock, "dvc.lock must record what finished, and not the killed stage"
    shutil.copy(project / "dvc.lock", tmp_path / "after-kill.lock")
    check_lock_tells_the_truth(project)
    stale = check_engines_agree(project)  # DVC and Snakemake both see it (and all below it) still to make
    assert victim in stale and victim in snakemake_jobs(project)
    assert f"{victim}: stale, outputs missing" in sh(project, "featdefense", "status").stdout

    # 2. the next run with the profile as it is finishes the chain (--verbose: the log shows each sbatch call)
    with open(tmp_path / "run2.log", "w") as log:
        assert subprocess.run(SLURM_RUN + ["--verbose", *TARGETS], cwd=project, env=env, stdout=log,
                              stderr=subprocess.STDOUT, timeout=900).returncode == 0, \
            (tmp_path / "run2.log").read_text()[-3000:]
    log2 = (tmp_path / "run2.log").read_text()
    # each job asked for what params.yaml `resources` and `threads` say (the tiny configuration's)
    calls = re.findall(r"^sbatch call: (sbatch .*)$", log2, flags=re.M)
    assert len(calls) == len(CHAIN) - len(set(read_dvc_lock(tmp_path / "after-kill.lock")))
    for call in calls:
        assert f"-p {local_slurm.PARTITION}" in call and " -t 10 " in call and " --mem 1000 " in call, call
        assert "--cpus-per-task=1" in call, call
    jobs = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i %T %k"], env=env,
                          capture_output=True, text=True, check=True).stdout
    (tmp_path / "jobs.txt").write_text(jobs)  # README quotes this and the logs
    assert re.search(rf"^{job} CANCELLED rule_train_target_wildcards_mnist", jobs, flags=re.M), jobs

    # what it made is what the local Snakemake build made: every dvc.lock entry (command, the MD5 of every
    # code file, input and output, the params) is the same, so every output is byte for byte the same
    local = read_dvc_lock(builds.wait()["snakemake"] / "dvc.lock")
    on_slurm = read_dvc_lock(project / "dvc.lock")
    assert set(on_slurm) == CHAIN and len(CHAIN) == 15
    for name in CHAIN:
        assert on_slurm[name] == local[name], name
    assert check_engines_agree(project) == set(local) - CHAIN  # only CIFAR-10's half is left to make
    check_lock_tells_the_truth(project)

    # and it is shared as DVC shares anything
    sh(project, "dvc", "remote", "modify", "local", "url", str(tmp_path / "remote"))
    sh(project, "dvc", "push")
    assert "in sync" in sh(project, "dvc", "status", "--cloud").stdout


# `featdefense` as a job runs it, but waiting argv[1] seconds after each checkpoint save: the tiny
# train_target (4 epochs) then outlasts a one-minute time limit with the same bytes. Each stage run appends
# its exit status to $ATTEMPTS.
SLOW_SAVES = """
import os, sys, time
from featdefense import checkpoints, cli
save = checkpoints.Checkpoint.save
def save_then_wait(self, name, value):
    save(self, name, value)
    time.sleep(float(sys.argv[1]))
checkpoints.Checkpoint.save = save_then_wait
status = cli.main(sys.argv[2:])
if sys.argv[2] == "run":  # not the submitting node's dvc-commit
    with open(os.environ["ATTEMPTS"], "a") as f:
        f.write(f"{status}\\n")
sys.exit(status)
"""


def test_a_job_warned_before_its_time_limit_stops_at_a_checkpoint_and_its_retry_resumes(cluster, builds, tmp_path):
    project = make_project(tmp_path / "project", builds.raw)
    shim = tmp_path / "bin" / "featdefense"
    shim.parent.mkdir()
    (tmp_path / "slow.py").write_text(SLOW_SAVES)
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} {tmp_path / "slow.py"} 40 "$@"\n')
    shim.chmod(0o755)
    attempts = tmp_path / "attempts.txt"
    env = {**env_for(project), **cluster, "ATTEMPTS": str(attempts)}
    env["PATH"] = f"{shim.parent}{os.pathsep}{env['PATH']}"
    target = STAGES["train_target"].made["target"].format(dataset="mnist")
    prepared = STAGES["prepare"].made["prepared"].format(dataset="mnist")
    assert subprocess.run(["snakemake", "--cores", "1", prepared], cwd=project, env=env_for(project),
                          capture_output=True).returncode == 0
    # a three-minute limit for a stage of four 40-s epochs, SLURM's warning 60 s before it. SLURM may send the
    # warning up to 60 s early (sbatch --signal: "the resolution of event handling"), so it comes 60-120 s into
    # the job: never before `featdefense run` has installed its handler (with a one-minute limit and a 30-s
    # warning it could come at the job's start, be lost, and the job run into its limit)
    set_param(project, "resources.stages", {"train_target": {"runtime": 3, "warn_before_limit": 60}})

    with open(tmp_path / "run.log", "w") as log:
        assert subprocess.run(SLURM_RUN + ["--retries", "4", "--verbose", target], cwd=project, env=env,
                              stdout=log, stderr=subprocess.STDOUT, timeout=600).returncode == 0, \
            (tmp_path / "run.log").read_text()[-3000:]
    run_log = (tmp_path / "run.log").read_text()
    calls = re.findall(r"^sbatch call: (sbatch .*)$", run_log, flags=re.M)
    assert calls and all(" -t 3 " in c and f"--signal={STOP_SIGNAL}@60" in c for c in calls), calls
    # a job that did not finish stopped its stage on the warning, with the checkpoint saved (its status, and
    # so the job FAILED), or was killed at the limit where the warning came before the stage could hear it
    statuses = attempts.read_text().split()
    assert statuses[-1] == "0" and set(statuses[:-1]) == {str(STOPPED)}, statuses  # at least one stop
    jobs = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i %T %k"], env=env,
                          capture_output=True, text=True, check=True).stdout
    state = dict(re.findall(r"^(\d+) (\w+) ", jobs, flags=re.M))
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", run_log)  # this run's, in order
    states = [state[j] for j in job_ids]
    assert states[-1] == "COMPLETED" and states.count("FAILED") == len(statuses) - 1, jobs
    assert set(states[:-1]) <= {"FAILED", "TIMEOUT"}, jobs
    # Snakemake's own process in a stopped job outlived the signal and reported the stage's failure
    for job in (j for j, s in zip(job_ids, states) if s == "FAILED"):
        said = (project / f".snakemake/slurm_logs/rule_train_target/mnist/{job}.log").read_text()
        assert "(command exited with non-zero exit code)" in said, said[-2000:]
        assert re.search(r"srun: error: .*task 0: Exited with exit code", said), said[-2000:]  # not a signal
    log = (project / "logs/train_target/mnist.log").read_text()  # the last job's
    assert "resuming from its checkpoint" in log and re.search(r"resumed after epoch \d of 4", log), log
    # and it made what the local build made, and left no checkpoint
    local = builds.wait()["snakemake"]
    assert (project / target).read_bytes() == (local / target).read_bytes()
    assert not (project / checkpoints.ROOT / "train_target@mnist").exists()
