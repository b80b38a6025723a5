#!/usr/bin/env python3
"""Point params at offline copies of the raw data and the VGG-16 weights (a machine without network).

usage: python scripts/offline_sources.py SHARED_DATA_DIR   (e.g. ../shared/data)

Builds cifar-10-python.tar.gz from the JPEG copy into offline/cifar10/ (with the copy's own build
script) and writes configs/local-sources.yaml, an overlay to apply after any configuration:
    featdefense params apply configs/cpu.yaml configs/local-sources.yaml
MNIST there is canonical; the CIFAR-10 archive is a re-encoded copy whose MD5 is named explicitly, so
the metrics and reports say the data is not canonical. The VGG-16 file holds the Caffe (Oxford)
ImageNet weights, so it gets Caffe preprocessing.
"""
import subprocess
import sys
from pathlib import Path

import yaml

CIFAR_COPY_MD5 = "7fe290c444cab2992eabacf41cd0463d"  # the deterministic rebuild (shared/data/README.md)
VGG_FILE = "vgg16/vgg16_features_imagenet_caffe.pth"
VGG_SHA256 = "83b37a14f627e86dc26463e67984f412abd038b1a405c157b5c2089e82645b51"


def main(shared: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    cifar_dir = root / "offline" / "cifar10"
    if not (cifar_dir / "cifar-10-python.tar.gz").is_file():
        subprocess.run([sys.executable, str(shared / "cifar10" / "build_cifar10_python.py"), str(cifar_dir)],
                       check=True)
    overlay = {
        "download": {
            "mnist": {"source": str(shared / "mnist"), "checksums": {}},
            "cifar10": {"source": str(cifar_dir), "checksums": {"cifar-10-python.tar.gz": CIFAR_COPY_MD5}},
        },
        "loss_net": {"weights": "file", "file": str(shared / VGG_FILE), "sha256": VGG_SHA256,
                     "preprocessing": "caffe"},
    }
    out = root / "configs" / "local-sources.yaml"
    out.write_text("# Written by scripts/offline_sources.py: offline sources on this machine.\n"
                   + yaml.safe_dump(overlay, sort_keys=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]).resolve())
