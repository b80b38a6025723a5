"""The benchmarks still run (seconds, smoke mode). Nothing here asserts a speed: speeds are measured by
`make benchmark` and reported in docs/performance.md, never tested."""
import subprocess
import sys

from .conftest import ROOT


def test_the_pgd_benchmark_runs_and_prints_its_table():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/pgd.py"), "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for row in ("| featdefense PGD |", "| featdefense PGD, plain LeNet (the code before) |",
                "| ART ProjectedGradientDescentPyTorch |", "| torchattacks PGD |",
                "fp32 matrix-product peak measured here", "device: cpu"):
        assert row in out.stdout, out.stdout


def test_the_denoiser_benchmark_runs_and_prints_its_table():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/denoiser.py"), "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for row in ("| naive: clean features every step |", "| ours: clean features once (the stage) |", "device: cpu"):
        assert row in out.stdout, out.stdout


def test_the_attack_memory_benchmark_runs_and_prints_its_table():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/attack_memory.py"), "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line for line in out.stdout.splitlines() if line.startswith(("| fgsm |", "| pgd |"))]
    assert len(rows) == 4, out.stdout  # two attacks on two sizes, each measured in its own process


def test_the_autoattack_benchmark_runs_and_prints_its_table():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/autoattack.py"), "--smoke"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for row in ("| PGD-100 (the peer) |", "| standard FAB-T |", "| plus FAB |", "| plus APGD-T |",
                "a rerun at the configured budget without FAB-T"):
        assert row in out.stdout, out.stdout
