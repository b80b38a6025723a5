"""Resumable long stages: what a stage has done so far, kept where neither engine looks.

`featdefense run` opens a checkpoint for the stage instance it runs, keyed by the instance's state (its
code, inputs and params: runs.state) and the software and device that run it. The stage saves into it as
it goes: a training loop at each epoch's end (`epochs`), an attack after each batch and an evaluation
after each attack of its cascade (`Checkpoint.step`). A rerun of the same state picks up where the last
one stopped and makes the same bytes as a run never stopped: everything the rest of the run depends on is
restored, the random generators included.

Files live under .featdefense/checkpoints/<instance>/<key>/, each written atomically (a stage killed
while saving leaves the previous checkpoint). A checkpoint of any other state is removed unread, one that
cannot be read is reported and ignored, and the whole directory goes once the stage's outputs are written.
Outside `featdefense run` (a test or script calling a stage's function) checkpoints are off.

A stop can be asked for (`ask_to_stop`, the handler `featdefense run` installs for the signal SLURM sends
before a job's time limit, pipeline.STOP_SIGNAL): the stage then stops at its next save, once that piece
is written, by raising `Stopped`; its checkpoint stays for the next run.

One run of an instance at a time (`exclusive`): two runs of one stage instance would write the same outputs
and the same checkpoint (a second Snakemake started in the same folder after `--unlock`, a job a scheduler
started again while the first still ran); the second is refused, naming the first's process, and nothing of
the first's is touched. The lock is the operating system's (flock), so it goes with the process that held it.
"""
from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import os
import io
import json
import logging
import random
import shutil
import signal
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from . import FeatdefenseError
from .io import atomic_path

log = logging.getLogger(__name__)
ROOT = Path(".featdefense/checkpoints")
_stop: list[str] = []  # the signal that asked the stage to stop, once one did


class Stopped(Exception):
    """A stop was asked for and the stage's progress so far is saved: a rerun resumes from it."""


class Busy(FeatdefenseError):
    """Another process is running the same stage instance."""


@contextlib.contextmanager
def exclusive(instance: str, root: Path = ROOT) -> Iterator[None]:
    """Hold the instance's lock (`<root>/<instance>.lock`) for the block, or raise Busy at once if another
    process holds it."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{instance}.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise Busy(f"stage {instance} is already running (process {holder} holds {path}): two runs of one "
                       "stage would write the same outputs; wait for it, or stop it first") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)


def ask_to_stop(signum: int, _frame=None) -> None:
    """A signal handler: stop at the next save (the piece is written first)."""
    log.warning("%s received: stopping once the piece of work in progress is saved", signal.Signals(signum).name)
    _stop.append(signal.Signals(signum).name)


class Checkpoint:
    """Named pieces of a stage's progress in one directory (None: checkpoints off)."""

    def __init__(self, directory: Path | None = None, label: str = ""):
        self.directory, self.label = directory, label
        self.resumed: list[str] = []  # what was taken from it in this run
        self.named: set[str] = set()

    def _path(self, name: str) -> Path:
        return self.directory / (hashlib.sha256(name.encode()).hexdigest()[:16] + ".pt")

    def load(self, name: str) -> Any | None:
        """The piece saved under `name`, or None (none saved, checkpoints off, or unreadable: reported)."""
        if self.directory is None or not self._path(name).is_file():
            return None
        try:
            blob = torch.load(self._path(name), map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or blob.get("name") != name:
                raise ValueError("not a piece of this checkpoint")
        except Exception as e:  # torch raises many kinds on bad bytes
            log.warning("%s: checkpoint %s (%s) cannot be read (%s): ignored, computed again", self.label,
                        self._path(name), name, e)
            return None
        self.resumed.append(name)
        return blob["value"]

    def save(self, name: str, value: Any) -> None:
        if self.directory is None:
            return
        buffer = io.BytesIO()
        torch.save({"name": name, "value": value}, buffer)
        with atomic_path(self._path(name)) as tmp:
            tmp.write_bytes(buffer.getvalue())
        if _stop:
            raise Stopped(f"{self.label}: stopped on {_stop[0]} with {name!r} saved in its checkpoint "
                          f"{self.directory}; run the stage again to resume from it")

    def step(self, name: str, compute: Callable[[], Any], *stateful) -> Any:
        """compute(), or what it returned in a stopped run of the same state (saved when it returned). Each
        of `stateful` (a generator, module or optimiser, or anything with get_state/set_state) and the global random
        generators are left as compute() left them. What compute returns must be tensors, numbers, strings
        and lists or dicts of them. Each name once per run: a piece is found by its name."""
        if self.directory is None:
            return compute()
        if name in self.named:
            raise ValueError(f"checkpoint step {name!r} named twice in one run")
        self.named.add(name)
        saved = self.load(name)
        objects = dict(enumerate(stateful))
        if saved is not None:
            restore(objects, saved)
            return saved["value"]
        value = compute()
        self.save(name, {"value": value, **snapshot(objects)})
        return value


_current: contextvars.ContextVar[Checkpoint] = contextvars.ContextVar("checkpoint", default=Checkpoint())


def current() -> Checkpoint:
    """The checkpoint of the stage `featdefense run` is running (off outside it)."""
    return _current.get()


def key(state: dict, environment: dict) -> str:
    return hashlib.sha256(json.dumps({"state": state, "environment": environment}, sort_keys=True).encode()
                          ).hexdigest()[:20]


@contextlib.contextmanager
def opened(instance: str, state_key: str, root: Path = ROOT) -> Iterator[Checkpoint]:
    """The checkpoint of one instance in one state, current inside the block; removed when the block ends
    without an error (the stage wrote its outputs). Checkpoints of the instance's other states are removed:
    they can never be resumed."""
    directory = root / instance / state_key
    for other in (root / instance).glob("*"):
        if other != directory:
            log.info("%s: a checkpoint from other code, inputs or params (%s) ignored and removed", instance,
                     other.name)
            shutil.rmtree(other, ignore_errors=True)
    if directory.is_dir() and any(directory.iterdir()):
        log.info("%s: resuming from its checkpoint %s", instance, directory)
    directory.mkdir(parents=True, exist_ok=True)
    ck = Checkpoint(directory, instance)
    token = _current.set(ck)
    try:
        yield ck
    finally:
        _current.reset(token)
    if ck.resumed:
        log.info("%s: %d piece(s) of its work read back from its checkpoint, the rest computed", instance,
                 len(ck.resumed))
    shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):
        (root / instance).rmdir()


# -- the state of a training loop -----------------------------------------------------------------

def _global_generators() -> dict:
    np_state, py_state = np.random.get_state(), random.getstate()
    states = {"torch": torch.get_rng_state(), "python": list(py_state[1]),
              "python_gauss": py_state[2], "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
              "numpy_pos": int(np_state[2]), "numpy_gauss": [int(np_state[3]), float(np_state[4])]}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_global_generators(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate((3, tuple(s["python"]), s["python_gauss"]))
    np.random.set_state(("MT19937", s["numpy"].numpy().astype(np.uint32), s["numpy_pos"], *s["numpy_gauss"]))
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


def _state_of(obj: Any):
    """A generator's state, or a module's or optimiser's state dict."""
    return obj.get_state() if hasattr(obj, "get_state") else obj.state_dict()


def _set_state(obj: Any, state) -> None:
    if hasattr(obj, "set_state"):
        obj.set_state(state)
    else:
        obj.load_state_dict(state)


def snapshot(objects: dict[str, Any]) -> dict:
    """The state of each module, optimiser and generator, and of the global random generators."""
    return {"objects": {name: _state_of(obj) for name, obj in objects.items()}, "global": _global_generators()}


def restore(objects: dict[str, Any], saved: dict) -> None:
    for name, obj in objects.items():
        _set_state(obj, saved["objects"][name])
    _set_global_generators(saved["global"])


def epochs(total: int, objects: dict[str, Any], rows: list, label: str) -> Iterator[int]:
    """The epochs 1..total a training loop still has to run. After each one it ran, the state of `objects`
    (modules, optimisers, generators), the global random generators and the training log `rows` are saved
    in the stage's checkpoint; a rerun of the same state starts after the last saved epoch from exactly
    that state, `rows` filled in.

        for epoch in checkpoints.epochs(cfg["epochs"], {"model": model, "opt": opt, "gen": gen}, rows, label):
            ...
    """
    ck, start = current(), 1
    saved = ck.load("epochs")
    if saved is not None and set(saved["objects"]) == set(objects):
        restore(objects, saved)
        rows[:] = saved["rows"]
        start = saved["epoch"] + 1
        log.info("%s: resumed after epoch %d of %d (from its checkpoint)", label, saved["epoch"], total)
    for epoch in range(start, total + 1):
        yield epoch
        ck.save("epochs", {"epoch": epoch, "rows": rows, **snapshot(objects)})
