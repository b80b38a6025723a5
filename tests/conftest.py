from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from featdefense import audit, locations
from featdefense.params import merge

from . import fixtures

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # featdefense, snakemake and dvc live beside this python


def committed_params_text() -> str:
    """params.yaml as committed (the paper's recipe), even after `make pipeline` applied a configuration."""
    shown = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=ROOT, capture_output=True, text=True)
    return shown.stdout if shown.returncode == 0 else (ROOT / "params.yaml").read_text()


PAPER_TEXT = committed_params_text()
PAPER = yaml.safe_load(PAPER_TEXT)
# What a run leaves in the working tree that a fresh copy of the project must not start with.
RUN_STATE = ("dvc.lock", "params.yaml")

# The tiny configuration: every stage runs in seconds on the fixtures.
TINY = {
    "threads": 1,  # two stages at once on 2 cores
    # what a SLURM job asks for; its warning a minute before the limit (the default 600 s is all of it)
    "resources": {"mem_mb": 1000, "runtime": 10, "gpus": 0, "warn_before_limit": 60, "stages": {}},
    "target": {"epochs": 4, "batch_size": 32},
    "attack": {"train_size": None, "test_size": None, "batch_size": 64, "pgd": {"steps": 10}},
    "loss_net": {"weights": "random"},
    "denoiser": {"epochs": 1, "batch_size": 64},
    "defences": {"madry": {"epochs": 1, "steps": 3, "step_size": 0.1, "batch_size": 64, "ramp_epochs": 1},
                 "hgd": {"epochs": 1, "batch_size": 64}},
    # AutoAttack's plus version and its reruns are tested on their own (test_evaluation): here they would run
    # in every build
    "whitebox": {"autoattack": {"iterations": 3, "square_queries": 10, "plus_above": None, "reruns": 0}},
    "sanity": {"test_size": 20, "restarts": 1},
    "robustness": {"steps": 5},
}


def set_dotted(tree: dict, dotted: str, value) -> dict:
    """Set (or, with value KeyError, delete) a dotted key in a nested params mapping; returns it."""
    *parents, last = dotted.split(".")
    node = tree
    for part in parents:
        node = node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return tree


def set_param(project: Path, dotted: str, value) -> None:
    """Change one key of a project copy's params.yaml."""
    params = set_dotted(yaml.safe_load((project / "params.yaml").read_text()), dotted, value)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    return [f for f in out if (ROOT / f).is_file() and f not in RUN_STATE]


def make_project(dest: Path, raw: Path) -> Path:
    """A copy of the project (what git would clone) in `dest`, with params for the tiny raw files."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in tracked_files():
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dest / f)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    checksums = {"download": {ds: {"checksums": fixtures.md5s(raw / ds)} for ds in ("mnist", "cifar10")}}
    params = merge(merge(PAPER, TINY), checksums)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    locations.write({ds: str(raw / ds) for ds in ("mnist", "cifar10")}, dest / locations.LOCAL_FILE)
    return dest


def env_for(project: Path) -> dict:
    """Run the copy's own code (its src/), with this environment's tools on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(project / "src"), "DVC_NO_ANALYTICS": "1"}


SH_TIMEOUT = 600  # seconds a command a test starts may run (the slowest, `featdefense seeds`, about 3 minutes)


def sh(project: Path, *cmd: str, check: bool = True, timeout: float = SH_TIMEOUT) -> subprocess.CompletedProcess:
    """Run a command in `project` as a user would, its output to files (a daemon it leaves behind holding its
    stdout, e.g. a DVC queue worker, cannot keep the test waiting on a pipe) and in a session of its own, which
    is killed whole when the command runs past `timeout`: the test then fails naming it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(list(cmd), cwd=project, env=env_for(project), stdout=out, stderr=err, text=True,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.seek(0)
            err.seek(0)
            raise AssertionError(f"{' '.join(cmd)} ran past {timeout} s: killed with its process group\n"
                                 f"{out.read()[-4000:]}\n{err.read()[-4000:]}") from None
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(list(cmd), code, out.read(), err.read())
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def process_in(project: Path, command: str) -> int | None:
    """The pid of a process running in `project` whose command line holds `command`, if one runs now."""
    for proc in Path("/proc").iterdir():
        try:
            if command.encode() in (proc / "cmdline").read_bytes().replace(b"\0", b" ") \
                    and (proc / "cwd").resolve() == project.resolve():
                return int(proc.name)
        except (OSError, ValueError):
            continue
    return None


def copy_project(built: Path, dest: Path) -> Path:
    """A copy of a built project, with its DVC cache, Snakemake's metadata, run records and file times:
    what a test that changes things starts from, leaving the session's build as it was."""
    shutil.copytree(built, dest, symlinks=True)
    return dest


def write_raw(folder: Path) -> Path:
    fixtures.write_mnist(folder / "mnist")
    fixtures.write_cifar10(folder / "cifar10")
    return folder


class Builds:
    """The tiny pipeline built once per test run by each engine, from its own copy of the project.

    The builds start in the background as soon as tests are collected that need them
    (pytest_collection_modifyitems), so that they run beside the unit tests. Under pytest-xdist the
    first worker starts them and the others find them (a lock and builds.json in the run's temporary
    folder); each build writes its exit status to a file that every worker waits for."""

    COMMANDS = {"snakemake": "snakemake --cores 2 all",
                # DVC builds one dataset's chain from scratch (half the graph: it runs one stage at a time)
                "dvc": "dvc repro report@mnist"}

    def __init__(self, base: Path):
        self.base = base
        self.raw = base / "raw"
        self.projects = {engine: base / f"{engine}-built" for engine in self.COMMANDS}
        self.audit = base / "audit"  # what each stage of the Snakemake build opened (featdefense.audit)

    def start(self) -> None:
        write_raw(self.raw)
        for engine, project in self.projects.items():
            make_project(project, self.raw)
            env = {**env_for(project), **({audit.VARIABLE: str(self.audit)} if engine == "snakemake" else {})}
            log, status = self.base / f"{engine}-build.log", self.base / f"{engine}-build.status"
            subprocess.Popen(["bash", "-c", f"{self.COMMANDS[engine]} > {log} 2>&1; echo $? > {status}.tmp; "
                                            f"mv {status}.tmp {status}"], cwd=project, env=env)

    DEADLINE = 840  # seconds a test waits for the builds (under pytest-timeout's 900 s, to say why)

    def wait(self) -> dict[str, Path]:
        deadline = time.monotonic() + self.DEADLINE
        for engine in self.projects:
            status = self.base / f"{engine}-build.status"
            while not status.exists():
                if time.monotonic() > deadline:
                    log = (self.base / f"{engine}-build.log").read_text()[-4000:]
                    raise AssertionError(f"the {engine} build is not done after {self.DEADLINE} s:\n{log}")
                time.sleep(0.5)
            assert status.read_text().strip() == "0", \
                f"the {engine} build failed:\n{(self.base / f'{engine}-build.log').read_text()}"
        return self.projects


BUILDS: list[Builds] = []


@pytest.hookimpl(trylast=True)  # after -k/-m deselection: builds start only for tests that will run
def pytest_collection_modifyitems(session, config, items):
    """Tests that need the built pipeline run last, and their builds start now, beside the others. The
    SLURM test runs first (it compares with the Snakemake build only at its end: `builds` fixture)."""
    needs = [item for item in items if "built" in getattr(item, "fixturenames", ())]
    first = [item for item in items if "builds" in getattr(item, "fixturenames", ())]
    if not needs and not first:
        return
    items[:] = first + [item for item in items if item not in needs and item not in first] + needs
    from filelock import FileLock

    basetemp = config._tmp_path_factory.getbasetemp()
    shared = basetemp.parent if hasattr(config, "workerinput") else basetemp  # xdist: one per run
    builds = Builds(shared / "builds")
    with FileLock(shared / "builds.lock"):
        if not builds.base.exists():
            builds.base.mkdir()
            builds.start()
    BUILDS.append(builds)


@pytest.fixture(scope="session")
def raw_fixtures(tmp_path_factory) -> Path:
    return BUILDS[0].raw if BUILDS else write_raw(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="session")
def built() -> dict[str, Path]:
    return BUILDS[0].wait()


@pytest.fixture(scope="session")
def builds() -> Builds:
    """The session's builds, started and maybe not finished: `.wait()` when a test needs them."""
    return BUILDS[0]


@pytest.fixture
def snakemake_copy(built, tmp_path) -> Path:
    return copy_project(built["snakemake"], tmp_path / "snakemake")
