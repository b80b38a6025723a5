#!/usr/bin/env python3
"""Benchmark: PGD throughput, ours against ART's and torchattacks' PGD, on the same model, images and
machine, in one process; with the robust accuracy each reached, peak memory, and GFLOP/s against this
machine's measured fp32 matrix-product peak.

    make benchmark                       # installs torchattacks beside .venv (.bench/), then runs this,
                                         # denoiser.py and attack_memory.py
    python benchmarks/pgd.py --smoke     # seconds: proves it runs (CI); its figures mean nothing

Model and images: the trained target and the first test images of real MNIST when a pipeline run left
them (data/models/mnist/target.pt, data/prepared/mnist.h5), else a random LeNet and random images (said
so). Not a test: nothing here asserts a speed.
"""
from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / ".bench"))  # torchattacks, where `make benchmark` put it

from featdefense.attacks.pgd import PGD  # noqa: E402
from featdefense.targets.lenet import LeNet, OneChannelConv2d  # noqa: E402


# -- the machine -------------------------------------------------------------------------------------

def matmul_peak(threads: int, device: torch.device, seconds: float = 2.0) -> float:
    """The best fp32 matrix-product rate (GFLOP/s) this machine reaches with `threads` threads."""
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
        torch.mm(a, b)
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            torch.mm(a, b)
            reps += 1
        sync(device)
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def status_kb(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM), in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class PeakMemory:
    """Peak resident memory above what the process held when entered (MB in `mb`, the base in `base_mb`):
    the kernel's high-water mark, reset on entry (Linux's /proc/self/clear_refs), read on exit."""

    def __enter__(self):
        self.base = status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS now
        return self

    def __exit__(self, *exc):
        self.base_mb, self.mb = self.base / 1024, (status_kb("VmHWM") - self.base) / 1024


# -- model and data ----------------------------------------------------------------------------------

def model_and_images(n: int, device: torch.device, smoke: bool, project: Path):
    from featdefense.training import load_module, load_split

    target_file, prepared = project / "data/models/mnist/target.pt", project / "data/prepared/mnist.h5"
    if not smoke and target_file.is_file() and prepared.is_file():
        model, _ = load_module(target_file, LeNet(), device)
        x, y = load_split(prepared, "test", np.arange(n))
        what = f"the trained target ({target_file}), the first {n} MNIST test images of {prepared}"
    else:
        torch.manual_seed(0)
        model = LeNet().to(device).eval()
        x = torch.rand(n, 1, 28, 28)
        y = model(x.to(device)).argmax(1).cpu()
        what = f"a random LeNet and {n} random images (no pipeline run here: figures of speed only)"
    return model.requires_grad_(False), x.to(device), y.to(device), what


def flops_per_image_iteration(model, x, y) -> float:
    """What one PGD step costs per image: the forward pass, and the gradient with respect to the input,
    which takes each convolution and matrix product once more, transposed, at the same cost (no weight
    gradients: the model's weights need none). Pointwise work (ReLU, pooling, the loss) is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x[:8])
    return 2 * counter.get_total_flops() / 8


# -- the attacks -------------------------------------------------------------------------------------

def lenet(state_dict: dict, device, channels_last: bool, one_channel_conv: bool, pool_first: bool):
    """The target's network with some of its speed-ups: all three is featdefense's LeNet; none is the
    plain network (NCHW, ReLU before pooling, autograd's own input gradient), the code before them."""
    nn = torch.nn

    def block(conv):
        return [conv, nn.MaxPool2d(2, 2), nn.ReLU()] if pool_first else [conv, nn.ReLU(), nn.MaxPool2d(2, 2)]
    model = nn.Sequential(*block(OneChannelConv2d(20, 5) if one_channel_conv else nn.Conv2d(1, 20, 5)),
                          *block(nn.Conv2d(20, 50, 5)), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                          nn.Linear(500, 10))
    model.load_state_dict(state_dict)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(device).to(memory_format=fmt).eval().requires_grad_(False)


VARIANTS = {  # our PGD on the target's network, the speed-ups added one by one (docs/performance.md)
    "featdefense PGD, plain LeNet (the code before)": (False, False, False),
    "  + channels-last weights": (True, False, False),
    "  + first convolution's input gradient by matmul + col2im": (True, True, False),
}  # and all three, + ReLU after pooling: the LeNet itself, the row "featdefense PGD"


def ours(model, a, variant=None):
    device = next(model.parameters()).device
    net = model if variant is None else lenet(model.state_dict(), device, *variant)
    attack = PGD(net, a.epsilon, a.steps, a.step_size, random_start=True)
    return in_batches(attack, a.batch_size, generator=torch.Generator(device=device).manual_seed(0))


def in_batches(attack, batch_size: int, **kwargs):
    """(x, y) -> the attack on each batch of `batch_size`, concatenated."""
    return lambda x, y: torch.cat([attack(x[s:s + batch_size], y[s:s + batch_size], **kwargs)
                                   for s in range(0, len(x), batch_size)])


def art(model, a):
    try:
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier
    except ImportError as e:
        return f"not installed ({e.name})"
    classifier = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                                   nb_classes=10, clip_values=(0.0, 1.0),
                                   device_type="gpu" if next(model.parameters()).is_cuda else "cpu")
    attack = ProjectedGradientDescentPyTorch(classifier, norm=np.inf, eps=a.epsilon, eps_step=a.step_size,
                                             max_iter=a.steps, num_random_init=1, batch_size=a.batch_size,
                                             verbose=False)
    return lambda x, y: torch.from_numpy(attack.generate(x.cpu().numpy(), y=y.cpu().numpy())).to(x.device)


def torchattacks_pgd(model, a):
    try:
        import torchattacks
    except ImportError:
        return "not installed (make benchmark installs it into .bench/: its pins clash with .venv's requests)"
    return in_batches(torchattacks.PGD(model, eps=a.epsilon, alpha=a.step_size, steps=a.steps, random_start=True),
                      a.batch_size)


def art_apgd(model, a):
    """ART's APGD-CE (featdefense.attacks.apgd): another attack, for scale; its accuracy is its own."""
    try:
        import art  # noqa: F401
    except ImportError as e:
        return f"not installed ({e.name})"
    from featdefense.attacks.apgd import APGD

    return in_batches(APGD(model, a.epsilon, a.steps), a.batch_size)


def accuracy(model, x_adv, y) -> float:
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--epsilon", type=float, default=0.2)
    ap.add_argument("--step-size", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the cpu configuration's: 1 per job)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--smoke", action="store_true", help="64 images, 3 steps: seconds")
    ap.add_argument("--project", type=Path, default=ROOT, help="where a pipeline run left data/ (this repository)")
    ap.add_argument("--amp", default="none", choices=("none", "bf16", "fp16"),
                    help="run every attack under torch.autocast with this precision (GPU mostly)")
    ap.add_argument("--memory-format", default="channels_last", choices=("channels_last", "nchw"),
                    help="the target's weights for every attack but the variant rows (featdefense: channels_last)")
    a = ap.parse_args()
    if a.smoke:
        a.images, a.steps, a.batch_size = 64, 3, 32
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          "cpu" if a.device == "auto" else a.device)
    model, x, y, what = model_and_images(a.images, device, a.smoke, a.project)
    formats = {"channels_last": torch.channels_last, "nchw": torch.contiguous_format}
    model = model.to(memory_format=formats[a.memory_format])
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.amp)
    peak = matmul_peak(a.threads, device, 0.3 if a.smoke else 3.0)
    flops = flops_per_image_iteration(model, x, y)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{cpu_name()}, {a.threads} thread(s)")
    print(f"device: {device.type} ({where}); torch {torch.__version__}")
    print(f"model and data: {what}")
    print(f"PGD: epsilon {a.epsilon}, {a.steps} steps of {a.step_size}, random start, batches of {a.batch_size}; "
          "every attack on the target (featdefense's LeNet), ours also on its network without its speed-ups")
    print(f"options: weights {a.memory_format}, mixed precision {a.amp}")
    print(f"one step = {flops / 1e6:.2f} MFLOP per image (forward + input gradient); "
          f"fp32 matrix-product peak measured here: {peak:.1f} GFLOP/s\n")

    peers = {**{name: ours(model, a, variant) for name, variant in VARIANTS.items()},
             "featdefense PGD": ours(model, a),
             "ART ProjectedGradientDescentPyTorch": art(model, a),
             "torchattacks PGD": torchattacks_pgd(model, a),
             "ART AutoProjectedGradientDescent (APGD-CE, another attack)": art_apgd(model, a)}
    measured = {}
    for name, run in peers.items():
        if isinstance(run, str):
            measured[name] = run
            continue
        precision = torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None)
        try:
            if not a.smoke:  # warm-up
                with precision:
                    run(x[: a.batch_size], y[: a.batch_size])
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with PeakMemory() as mem, precision:
                start = time.perf_counter()
                x_adv = run(x, y)
                sync(device)
                seconds = time.perf_counter() - start
        except Exception as e:  # a peer that cannot run under these options: say so, measure the others
            measured[name] = f"failed with these options: {type(e).__name__}: {e}"
            continue
        mb = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else mem.mb
        measured[name] = (a.images * a.steps / seconds, accuracy(model, x_adv, y), mb)
    base = measured["featdefense PGD"][0]
    rows = []
    for name, m in measured.items():
        if isinstance(m, str):
            rows.append(f"| {name} | {m} | | | | | |")
            continue
        rate, acc, mb = m
        gflops = rate * flops / 1e9
        rows.append(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {100 * acc:.1f} | {gflops:.1f} | "
                    f"{100 * gflops / peak:.0f}% | {mb:.0f} |")
    memory = "peak GPU memory (MB)" if device.type == "cuda" else "peak memory (MB)"
    print(f"| attack | image-iterations/s | vs ours | robust accuracy (%) | GFLOP/s | of peak | {memory} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(max resident memory of this process: {maxrss:.0f} MB)")


if __name__ == "__main__":
    main()
