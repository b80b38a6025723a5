"""The suite's own harness cannot hang: a command a test starts is bounded (conftest.sh), and a daemon it leaves
behind holding its output does not keep the test waiting."""
import time

import pytest

from .conftest import sh


def test_a_command_past_its_timeout_is_killed_with_its_children_and_named(tmp_path):
    start = time.monotonic()
    with pytest.raises(AssertionError, match="ran past 1 s: killed with its process group"):
        sh(tmp_path, "bash", "-c", f"(sleep 3; touch {tmp_path}/child-lived) & echo started; sleep 60", timeout=1)
    assert time.monotonic() - start < 20
    time.sleep(4)  # past the moment the child would have written, had it lived
    assert not (tmp_path / "child-lived").exists()


def test_a_daemon_holding_the_commands_output_does_not_keep_the_test_waiting(tmp_path):
    # as a DVC queue worker that outlives `dvc exp run --run-all`: the command is done, its child is not
    start = time.monotonic()
    done = sh(tmp_path, "bash", "-c", "setsid sleep 30 & echo done", timeout=20)
    assert done.stdout.strip() == "done" and time.monotonic() - start < 10


def test_every_test_has_a_time_limit(pytestconfig):
    assert pytestconfig.pluginmanager.hasplugin("timeout"), "pytest-timeout is not installed (requirements.lock)"
    assert 0 < float(pytestconfig.getini("timeout")) <= 900  # pyproject.toml: a hang fails its test, not the run
