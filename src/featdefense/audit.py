"""What a stage really reads, for the tests: with FEATDEFENSE_AUDIT=<folder> in its environment,
`featdefense run` records, while the stage computes, every file it opens under the working directory
(Python's own opens, through the interpreter's audit hook, and HDF5 files, which h5py opens in C) and
every environment variable the package's code reads, into <folder>/<stage instance>.json.
tests/test_pipeline.py compares them with what the stage graph declares."""
from __future__ import annotations

import contextlib
import json
import linecache
import os
import sys
from pathlib import Path

VARIABLE = "FEATDEFENSE_AUDIT"
PACKAGE = str(Path(__file__).resolve().parent)


def for_a_traceback(frame) -> bool:
    """An open by linecache, reading source to format a stack (torch.cuda does as torch is imported, for
    every frame of the stack): not something a stage reads."""
    while frame is not None:
        if frame.f_code is linecache.updatecache.__code__:
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def recording(instance: str):
    folder = os.environ.get(VARIABLE)
    if not folder:
        yield
        return
    import h5py

    root, opened, variables, active = Path.cwd().resolve(), set(), set(), [True]

    def note(path) -> None:
        if isinstance(path, (str, bytes, os.PathLike)):
            full = (root / os.fsdecode(path)).resolve()
            if full.is_relative_to(root):
                opened.add(full.relative_to(root).as_posix())

    def hook(event: str, args: tuple) -> None:
        if active[0] and event == "open" and not for_a_traceback(sys._getframe(1)):
            note(args[0])

    sys.addaudithook(hook)  # hooks cannot be removed: `active` switches it off
    real_getitem, real_h5 = os._Environ.__getitem__, h5py.File.__init__

    def getitem(self, key):
        frame = sys._getframe(1)
        while frame and frame.f_code.co_filename.endswith(("os.py", "_collections_abc.py")):
            frame = frame.f_back
        if frame and frame.f_code.co_filename.startswith(PACKAGE):
            variables.add(key)
        return real_getitem(self, key)

    def h5_init(self, name, *args, **kwargs):
        note(name)
        real_h5(self, name, *args, **kwargs)

    os._Environ.__getitem__, h5py.File.__init__ = getitem, h5_init
    try:
        yield
    finally:
        active[0] = False
        os._Environ.__getitem__, h5py.File.__init__ = real_getitem, real_h5
        out = Path(folder) / f"{instance}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"opened": sorted(opened), "environ": sorted(variables)}, indent=1))
