"""Long stages survive a kill: a stage killed mid-run resumes from its checkpoint to the same bytes as a
run never stopped; a checkpoint of another state, or one that cannot be read, is never trusted."""
from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from featdefense import checkpoints
from featdefense.cli import STOPPED
from featdefense.pipeline import STOP_SIGNAL

from .conftest import env_for, process_in, set_param, sh

# `featdefense ...` that SIGKILLs itself right after its stage saved its checkpoint for the n-th time
# (argv[1]): the moment a machine dies, a scheduler kills or a node is preempted, at a known point.
KILLED_AFTER = """
import os, signal, sys
from featdefense import checkpoints, cli
save, left = checkpoints.Checkpoint.save, [int(sys.argv[1])]
def save_then_die(self, name, value):
    save(self, name, value)
    left[0] -= 1
    if left[0] == 0:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoints.Checkpoint.save = save_then_die
sys.exit(cli.main(sys.argv[2:]))
"""

# `featdefense ...` that sends itself the scheduler's warning signal right after its n-th save (argv[1]):
# SLURM's --signal before a job's time limit (resources.warn_before_limit), at a known point
SIGNALLED_AFTER = KILLED_AFTER.replace("signal.SIGKILL", "signal.SIG" + STOP_SIGNAL)

STAGES = {  # stage instance -> (its command line, the saves after which it is killed)
    "train_target@mnist": (["run", "train_target", "--dataset", "mnist"], 2),    # after its 2nd epoch of 4
    "train_madry@mnist": (["run", "train_madry", "--dataset", "mnist"], 1),      # after its 1st epoch of 2
    "attack@mnist-pgd": (["run", "attack", "--dataset", "mnist", "--attack", "pgd"], 2),  # mid train split
    "evaluate_hgd@mnist": (["run", "evaluate_hgd", "--dataset", "mnist"], 4),    # mid cascade
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def outputs(project: Path, instance: str) -> dict[str, str]:
    from featdefense.pipeline import STAGES as GRAPH

    name, _, values = instance.partition("@")
    stage = GRAPH[name]
    wildcards = dict(zip(stage.wildcards, values.split("-"))) if values else {}
    return {p.format(**wildcards): md5(project / p.format(**wildcards)) for p in stage.made.values()}


def killed(project: Path, instance: str) -> None:
    """Run the instance's stage until its checkpoint has been saved n times, then SIGKILL it."""
    argv, n = STAGES[instance]
    result = sh(project, sys.executable, "-c", KILLED_AFTER, str(n), *argv, "--force", check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert list((project / checkpoints.ROOT / instance).glob("*/*.pt")), "the killed run left no checkpoint"


def last_timing(project: Path) -> dict:
    """The timings log's last line: the stage run that just ended (an archive's timings.md is made from them)."""
    return json.loads((project / "logs/timings.jsonl").read_text().splitlines()[-1])


@pytest.mark.parametrize("instance", list(STAGES))
def test_a_stage_killed_mid_run_resumes_to_the_bytes_of_a_run_never_stopped(snakemake_copy, instance):
    if instance == "train_madry@mnist":  # two epochs, so that it can stop between them
        set_param(snakemake_copy, "defences.madry.epochs", 2)
        sh(snakemake_copy, "featdefense", "run", "train_madry", "--dataset", "mnist", "--force")
    uninterrupted = outputs(snakemake_copy, instance)
    for path in uninterrupted:
        (snakemake_copy / path).unlink()
    killed(snakemake_copy, instance)
    assert not all((snakemake_copy / p).exists() for p in uninterrupted), "a killed run left its outputs"

    resumed = sh(snakemake_copy, "featdefense", *STAGES[instance][0], "--force")
    assert "resuming from its checkpoint" in resumed.stderr
    timed = last_timing(snakemake_copy)
    assert timed["stage"] == instance and timed["resumed"] > 0, timed  # and so an archive's timings.md says
    assert outputs(snakemake_copy, instance) == uninterrupted
    assert not (snakemake_copy / checkpoints.ROOT / instance).exists(), "the checkpoint outlived its stage"


def test_a_training_stage_says_where_it_resumed(snakemake_copy):
    killed(snakemake_copy, "train_target@mnist")
    resumed = sh(snakemake_copy, "featdefense", "run", "train_target", "--dataset", "mnist", "--force")
    assert "mnist target: resumed after epoch 2 of 4" in resumed.stderr
    # the timings log (and so an archive's timings.md) says which run was resumed: its seconds are that run's only
    timed = last_timing(snakemake_copy)
    assert timed["stage"] == "train_target@mnist" and timed["resumed"] == 1, timed  # one piece: the epochs
    sh(snakemake_copy, "featdefense", "run", "train_target", "--dataset", "mnist", "--force")  # no checkpoint left
    assert last_timing(snakemake_copy)["resumed"] == 0, last_timing(snakemake_copy)


def test_the_schedulers_warning_stops_a_stage_at_its_next_save_and_the_rerun_resumes(snakemake_copy):
    uninterrupted = outputs(snakemake_copy, "train_target@mnist")
    for path in uninterrupted:
        (snakemake_copy / path).unlink()
    argv = ["run", "train_target", "--dataset", "mnist", "--force"]
    stopped = sh(snakemake_copy, sys.executable, "-c", SIGNALLED_AFTER, "1", *argv, check=False)
    assert stopped.returncode == STOPPED, stopped.stderr  # the signal came after epoch 1: it stops after epoch 2
    assert f"stopped on SIG{STOP_SIGNAL} with 'epochs' saved" in stopped.stderr, stopped.stderr
    assert not any((snakemake_copy / p).exists() for p in uninterrupted), "a stopped stage wrote outputs"
    resumed = sh(snakemake_copy, "featdefense", *argv)
    assert "mnist target: resumed after epoch 2 of 4" in resumed.stderr
    assert outputs(snakemake_copy, "train_target@mnist") == uninterrupted


def test_a_checkpoint_of_other_params_is_ignored(snakemake_copy):
    killed(snakemake_copy, "train_target@mnist")
    old = list((snakemake_copy / checkpoints.ROOT / "train_target@mnist").iterdir())
    set_param(snakemake_copy, "target.lr", 0.002)
    rerun = sh(snakemake_copy, "featdefense", "run", "train_target", "--dataset", "mnist", "--force")
    assert "from other code, inputs or params" in rerun.stderr and "resumed" not in rerun.stderr
    assert not any(p.exists() for p in old)
    again = outputs(snakemake_copy, "train_target@mnist")
    sh(snakemake_copy, "featdefense", "run", "train_target", "--dataset", "mnist", "--force")  # never stopped
    assert outputs(snakemake_copy, "train_target@mnist") == again


def test_a_corrupt_checkpoint_is_reported_and_never_trusted(snakemake_copy):
    uninterrupted = outputs(snakemake_copy, "train_target@mnist")
    killed(snakemake_copy, "train_target@mnist")
    for piece in (snakemake_copy / checkpoints.ROOT / "train_target@mnist").glob("*/*.pt"):
        piece.write_bytes(piece.read_bytes()[:100])
    rerun = sh(snakemake_copy, "featdefense", "run", "train_target", "--dataset", "mnist", "--force")
    assert "cannot be read" in rerun.stderr and "resumed after" not in rerun.stderr
    assert outputs(snakemake_copy, "train_target@mnist") == uninterrupted


def test_a_step_named_twice_is_refused(tmp_path):
    ck = checkpoints.Checkpoint(tmp_path, "test")
    assert ck.step("a", lambda: 1) == 1
    with pytest.raises(ValueError, match="named twice"):
        ck.step("a", lambda: 2)


def test_a_second_run_of_a_running_stage_is_refused_and_touches_nothing(snakemake_copy, monkeypatch):
    """Two runs of one instance (a second Snakemake after --unlock, a job started again while the first lives)
    would write the same outputs and checkpoint: the second is refused at once, naming the first's process."""
    import os

    before = outputs(snakemake_copy, "train_target@mnist")
    monkeypatch.chdir(snakemake_copy)
    with checkpoints.exclusive("train_target@mnist"):  # this process is the first run
        second = sh(snakemake_copy, "featdefense", "run", "train_target", "--dataset", "mnist", "--force",
                    check=False)
        assert second.returncode == 2, second.stderr
        assert f"stage train_target@mnist is already running (process {os.getpid()} holds" in second.stderr
        other = sh(snakemake_copy, "featdefense", "run", "train_target", "--dataset", "cifar10", "--force")
        assert other.returncode == 0  # another instance runs beside it
    assert outputs(snakemake_copy, "train_target@mnist") == before
    assert not (snakemake_copy / checkpoints.ROOT / "train_target@mnist").exists()
    sh(snakemake_copy, "featdefense", "run", "train_target", "--dataset", "mnist", "--force")  # lock released
    assert outputs(snakemake_copy, "train_target@mnist") == before  # and the same bytes again


def test_snakemake_killed_while_its_job_runs_reruns_that_job_on_its_next_run(snakemake_copy):
    """Snakemake itself killed (a closed terminal, a lost login session) while a job runs: the job's stage
    finishes on its own, but Snakemake has it recorded as incomplete and its lock left behind. After
    `snakemake --unlock` the same command runs that job again (the profiles' rerun-incomplete), to the same
    bytes, instead of stopping at outputs it cannot vouch for (IncompleteFilesException)."""
    instance = "train_madry@mnist"
    set_param(snakemake_copy, "defences.madry.epochs", 2)  # new params: no recorded run to restore, two epochs
    made = list(outputs(snakemake_copy, instance))
    command = ["snakemake", "--profile", "workflow/profiles/local", "--cores", "1", *made]
    first = subprocess.Popen(command, cwd=snakemake_copy, env=env_for(snakemake_copy), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list((snakemake_copy / checkpoints.ROOT / instance).glob("*/*.pt")):  # its first epoch saved
        assert first.poll() is None and time.monotonic() < deadline, "the job never saved a checkpoint"
        time.sleep(0.05)
    first.kill()  # Snakemake alone: its job runs on
    first.wait()
    while process_in(snakemake_copy, "featdefense run train_madry"):
        assert time.monotonic() < deadline, "the job outlived Snakemake by minutes"
        time.sleep(0.2)
    finished = outputs(snakemake_copy, instance)  # the job, left alone, finished
    assert list((snakemake_copy / ".snakemake" / "incomplete").iterdir()), \
        "premise: Snakemake had the job recorded as incomplete"
    locked = sh(snakemake_copy, *command, check=False)
    assert locked.returncode != 0 and "unlock" in locked.stderr, locked.stderr
    sh(snakemake_copy, "snakemake", "--unlock")
    again = sh(snakemake_copy, *command)
    assert "train_madry" in again.stderr, "the job recorded incomplete was not run again"
    assert outputs(snakemake_copy, instance) == finished
    assert not list((snakemake_copy / ".snakemake" / "incomplete").iterdir())
