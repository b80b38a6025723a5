#!/usr/bin/env python3
"""Read the raw data and the VGG-16 weights from offline copies (a machine without network).

usage: python scripts/offline_sources.py SHARED_DATA_DIR   (e.g. ../shared/data)

Builds cifar-10-python.tar.gz from the JPEG copy into offline/cifar10/ (with the copy's own build
script) and names the locations in sources.local.yaml (Fashion-MNIST too where Debian's
dataset-fashion-mnist is installed) (untracked: where, never what). What the copies
are, their checksums, is the committed overlay configs/offline.yaml, applied after any configuration:
    featdefense params apply configs/cpu.yaml configs/offline.yaml
"""
import subprocess
import sys
from pathlib import Path

from featdefense import locations

VGG_FILE = "vgg16/vgg16_features_imagenet_caffe.pth"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist (configs/fashion-mnist.yaml)


def main(shared: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    cifar_dir = root / "offline" / "cifar10"
    if not (cifar_dir / "cifar-10-python.tar.gz").is_file():
        subprocess.run([sys.executable, str(shared / "cifar10" / "build_cifar10_python.py"), str(cifar_dir)],
                       check=True)
    out = root / locations.LOCAL_FILE
    found = {"mnist": str(shared / "mnist"), "cifar10": str(cifar_dir), "loss_net": str(shared / VGG_FILE)}
    if FASHION_MNIST.is_dir():
        found["fashion_mnist"] = str(FASHION_MNIST)
    locations.write(found, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]).resolve())
