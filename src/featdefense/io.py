"""Side effects at the edges: atomic writes, hashes, HDF5 and model files with provenance, devices."""
from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from . import FeatdefenseError, __version__


class ArtifactError(FeatdefenseError):
    pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publishable(path: Path, directory: bool = False) -> None:
    """Give a temporary file (0600) or directory (0700) the permissions of an ordinary new one."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary file (or directory) beside `path`; rename it onto `path` only if the block
    succeeds. A stage killed mid-write leaves the previous complete output (or none), never a partial
    one; its leftover `.NAME.*.partial` is removed by the next write of the same path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.partial"):  # left by a killed run: never valid
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    names = dict(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    if directory:
        tmp = Path(tempfile.mkdtemp(**names))
    else:
        fd, tmp = tempfile.mkstemp(**names)
        os.close(fd)
        tmp = Path(tmp)
    try:
        yield tmp
        publishable(tmp, directory)
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException as e:
        if directory:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            raise ArtifactError(f"{path}: disk full while writing it ({e}); nothing was written. "
                                f"Free space on {path.parent.resolve()} and rerun.") from None
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_figure(path: str | Path, fig) -> None:
    """A matplotlib figure as PNG (100 dpi), written whole or not at all, then closed."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def environment(device: str | None = None) -> dict:
    """The software and device that make an artifact (part of what it is: other versions, other bytes)."""
    import platform

    import h5py
    import numpy
    import torch

    used = resolve_device(device or "cpu")
    env = {"python": platform.python_version(), "torch": str(torch.__version__), "numpy": numpy.__version__,
           "h5py": h5py.__version__, "machine": platform.machine(), "device": used.type, **processor()}
    if used.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(used), cuda=torch.version.cuda)
    return env


ISA_PINS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")


def processor() -> dict:
    """What float results on a CPU depend on besides the software: the processor, the instruction set
    PyTorch's kernels use (ATen's CPU capability), the BLAS, and any variable pinning an instruction set."""
    pins = {k: os.environ[k] for k in ISA_PINS if k in os.environ}
    return {**_processor(), **({"isa_pins": pins} if pins else {})}


@functools.lru_cache(maxsize=1)
def _processor() -> dict:
    """The part of processor() fixed for a process (each saved file's provenance asks for it)."""
    import torch

    blas = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return {"cpu": platform_cpu(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "blas": blas.group(1) if blas else "unknown"}


def platform_cpu() -> str:
    """The processor's vendor and model name, as the kernel names it."""
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "model name" in fields:
            return f"{fields.get('vendor_id', '?')} {fields['model name']}"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(stage: str, params: dict, inputs: dict[str, str | Path]) -> dict:
    """What a file found alone should tell: the stage, the params it read, its inputs' hashes, and the
    software and device that made it."""
    return {
        "stage": stage,
        "params": params,
        "inputs": {name: {"path": str(p), "sha256": file_digest(p)} for name, p in sorted(inputs.items())},
        "featdefense_version": __version__,
        "environment": environment(params.get("device")),
    }


def read_dvc_lock(path: str | Path) -> dict:
    """dvc.lock's stages ({} when there is none), read as DVC writes it: YAML 1.2 (PyYAML, a YAML 1.1
    reader, would take 1e-05 for a string)."""
    from ruamel.yaml import YAML

    path = Path(path)
    if not path.is_file():
        return {}
    return (YAML(typ="safe", pure=True).load(path.read_text()) or {}).get("stages", {})


# -- HDF5 -------------------------------------------------------------------------------------------

def open_h5(path: str | Path):
    """Open an HDF5 artifact for reading, naming the file if it is missing, truncated or corrupt."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing (run the stage that makes it)")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ArtifactError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from None


def h5_attrs_json(obj, key: str = "provenance"):
    return json.loads(obj.attrs[key])


# -- models ---------------------------------------------------------------------------------------

def save_model(path: str | Path, module, meta: dict) -> None:
    import torch

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    buffer = io.BytesIO()  # torch.save names the archive after a file: a buffer keeps the bytes fixed
    torch.save({"state_dict": state, "meta": meta}, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_model_file(path: str | Path) -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing (run the stage that makes it)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds on bad bytes
        raise ArtifactError(f"{path}: not a readable model file (truncated or corrupt?): {e}") from None
    if not isinstance(blob, dict) or "state_dict" not in blob or "meta" not in blob:
        raise ArtifactError(f"{path}: not a featdefense model file (no state_dict/meta)")
    return blob


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FeatdefenseError("device: cuda was requested but no CUDA device is available; "
                               "set device: auto or device: cpu in params.yaml")
    return torch.device(name)
