#!/usr/bin/env python3
"""One stage's outputs under several param overlays, in a built project: each variant reruns only what its
params change (Snakemake decides), and its outputs and params are copied out before the next.

usage: python scripts/sweep.py PROJECT OUT --base CONFIG... --target FILE... -- OVERLAY...

For each OVERLAY (a YAML file like configs/*.yaml): PROJECT's params.yaml becomes the committed recipe with
the --base configurations and the overlay applied (`featdefense params apply`), Snakemake builds the
--target files, and they go to OUT/<overlay's name>/ with that params.yaml. At the end the --base params
are put back (and the targets rebuilt from them, so the project is as it was). One variant at a time.
"""
import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path


def build(project: Path, configs: list[str], targets: list[str]) -> float:
    shown = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=project, capture_output=True, text=True,
                           check=True).stdout
    (project / "params.yaml").write_text(shown)
    subprocess.run(["featdefense", "params", "apply", *configs], cwd=project, check=True)
    start = time.time()
    subprocess.run(["snakemake", "--profile", "workflow/profiles/local", "--cores", "1", *targets], cwd=project,
                   check=True, stdout=subprocess.DEVNULL)
    return time.time() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--base", nargs="+", default=[])
    ap.add_argument("--target", nargs="+", required=True)
    ap.add_argument("overlays", nargs="+", type=Path)
    a = ap.parse_args(argv)
    for overlay in a.overlays:
        seconds = build(a.project, [*a.base, str(overlay.resolve())], a.target)
        dest = a.out / overlay.stem
        dest.mkdir(parents=True, exist_ok=True)
        for t in a.target:
            shutil.copy(a.project / t, dest / Path(t).name)
        shutil.copy(a.project / "params.yaml", dest / "params.yaml")
        shutil.copy(overlay, dest / "overlay.yaml")
        print(f"{overlay.stem}: {seconds:.0f} s -> {dest}", flush=True)
    build(a.project, a.base, a.target)


if __name__ == "__main__":
    sys.exit(main())
