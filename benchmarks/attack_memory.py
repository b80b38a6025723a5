#!/usr/bin/env python3
"""Benchmark: the attack stage's peak memory on 10,000 and 60,000 images. The stage streams batches from the
prepared HDF5 file to the adversarial one, so what it holds should not grow with the dataset.

    python benchmarks/attack_memory.py [--sizes 10000 60000] [--batch-size 500] [--pgd-steps 5]
    python benchmarks/attack_memory.py --smoke     # seconds: proves it runs (CI)

Each (attack, size) runs the stage's loop (featdefense.stages.attack.attack_split) in a fresh process, so
no allocator cache carries over from the size before. That process resets its resident-memory high-water
mark (Linux's /proc/self/clear_refs) once the model is built and the files are open, runs the loop, and
reports the high-water mark above its resident memory before the loop: the loop's own peak. Random LeNet,
random images (memory does not depend on them). Not a test: nothing here asserts a size.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def loop_peak(prepared: Path, out: Path, attack: str, batch_size: int, pgd_steps: int) -> dict:
    """In this process: the attack stage's loop over every image of `prepared`; its peak memory."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import h5py
    import torch
    from pgd import PeakMemory  # puts src/ on the path too

    from featdefense.attacks.fgsm import FGSM
    from featdefense.attacks.pgd import PGD
    from featdefense.targets.lenet import LeNet
    from featdefense.stages.attack import attack_split

    torch.set_num_threads(1)
    model = LeNet().eval().requires_grad_(False)
    attacker = FGSM(model, 0.2) if attack == "fgsm" else PGD(model, epsilon=0.2, steps=pgd_steps, step_size=0.1)
    with h5py.File(prepared, "r") as f, h5py.File(out, "w") as o:
        labels = f["y"][()]
        index = np.arange(len(labels))
        with PeakMemory() as mem:
            attack_split(o.create_group("test"), attacker, model, f["x"], labels, index, batch_size,
                         torch.Generator().manual_seed(0), torch.device("cpu"), f"{attack} {len(labels)} images")
    return {"before_mb": mem.base_mb, "loop_peak_mb": mem.mb, "output_mb": out.stat().st_size / 2 ** 20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 60_000])
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--pgd-steps", type=int, default=5, help="memory does not grow with the steps")
    ap.add_argument("--smoke", action="store_true", help="500 and 1,500 images: seconds")
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)  # prepared, out: one measurement
    ap.add_argument("--attack", default="fgsm", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(loop_peak(*a.child, a.attack, a.batch_size, a.pgd_steps)))
        return
    if a.smoke:
        a.sizes, a.batch_size, a.pgd_steps = [500, 1500], 250, 2
    import h5py

    print(f"attack stage loop (featdefense.stages.attack.attack_split), batches of {a.batch_size}, one thread, "
          f"each in a fresh process; FGSM and PGD ({a.pgd_steps} steps)\n")
    print("| attack | images | resident before the loop (MB) | loop's peak above it (MB) | adversarial file (MB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.sizes:
            prepared = Path(tmp) / f"prepared{n}.h5"
            with h5py.File(prepared, "w") as f:
                f.create_dataset("x", data=np.random.default_rng(0).integers(0, 256, (n, 1, 28, 28), dtype=np.uint8))
                f.create_dataset("y", data=np.random.default_rng(1).integers(0, 10, n))
            for attack in ("fgsm", "pgd"):
                out = Path(tmp) / f"{attack}{n}.h5"
                run = subprocess.run([sys.executable, __file__, "--child", str(prepared), str(out), "--attack", attack,
                                      "--batch-size", str(a.batch_size), "--pgd-steps", str(a.pgd_steps)],
                                     capture_output=True, text=True)
                if run.returncode != 0:
                    sys.exit(f"the {attack} measurement on {n} images failed:\n{run.stderr[-3000:]}")
                m = json.loads(run.stdout.strip().splitlines()[-1])
                print(f"| {attack} | {n:,} | {m['before_mb']:.0f} | {m['loop_peak_mb']:.1f} | {m['output_mb']:.0f} |",
                      flush=True)
                out.unlink()


if __name__ == "__main__":
    main()
