#!/usr/bin/env python3
"""CIFAR-10 in the python layout, every image JPEG-encoded and decoded once more (issue 20, experiment 7).

usage: python scripts/jpeg_once_more.py IN_ARCHIVE OUT_DIR [QUALITY]

IN_ARCHIVE: a cifar-10-python.tar.gz (the offline copy, itself one JPEG pass from the canonical images).
Writes OUT_DIR/cifar-10-python.tar.gz, the same batches, labels and file names, each image's pixels after
one more lossy pass (Pillow, QUALITY, default 75: Pillow's own default; 4:2:0 chroma subsampling), and
prints its MD5 and how far the pass moved the pixels. Deterministic: the same input gives the same bytes.
The pass bounds what one lossy pass does to the results: run the CIFAR-10 stages on both copies (name the
new one in sources.local.yaml and its MD5 in download.cifar10.checksums).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

BATCHES = "cifar-10-batches-py"


def once_more(rows: np.ndarray, quality: int) -> np.ndarray:
    """(N, 3072) uint8 rows (CHW, CIFAR's layout) -> the same after one JPEG encode and decode."""
    out = np.empty_like(rows)
    for i, row in enumerate(rows):
        buf = io.BytesIO()
        Image.fromarray(row.reshape(3, 32, 32).transpose(1, 2, 0), mode="RGB").save(buf, "JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buf).convert("RGB"), dtype=np.uint8).transpose(2, 0, 1).reshape(-1)
    return out


def main(archive: Path, out_dir: Path, quality: int = 75) -> None:
    members, moved = {}, []
    with tarfile.open(archive) as tar:
        for m in sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name):
            data = tar.extractfile(m).read()
            name = m.name.split("/", 1)[1]
            if name.startswith(("data_batch_", "test_batch")):
                batch = pickle.loads(data, encoding="bytes")
                key = b"data" if b"data" in batch else "data"
                before = np.asarray(batch[key], dtype=np.uint8)
                batch[key] = once_more(before, quality)
                moved.append(np.abs(batch[key].astype(np.int16) - before).mean())
                data = pickle.dumps(batch, protocol=2)
            members[name] = data
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{BATCHES}/{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    out = out_dir / "cifar-10-python.tar.gz"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz:
        gz.write(raw.getvalue())
    tmp.replace(out)
    print(f"{out} {hashlib.md5(out.read_bytes()).hexdigest()}; quality {quality}; mean absolute pixel change "
          f"{np.mean(moved):.2f} of 255")


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(Path(sys.argv[1]), Path(sys.argv[2]), *(int(a) for a in sys.argv[3:]))
