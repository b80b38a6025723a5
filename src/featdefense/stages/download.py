"""download: the canonical raw files of one dataset, checksum-verified, from a URL prefix or a directory."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from ..data.sources import CANONICAL_MD5, fetch
from ..io import publishable, write_json

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def run(p, inp, out, dataset):
    spec = p["download"][dataset]
    raw = Path(out["raw"])
    raw.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{raw.name}.", suffix=".partial", dir=raw.parent))
    try:
        files = {}
        for name in CANONICAL_MD5[dataset]:
            log.info("fetching %s from %s", name, spec["source"])
            v = fetch(dataset, name, spec["source"], staging, spec["checksums"])
            files[name] = {"md5": v.md5, "canonical": v.canonical}
        write_json(staging / MANIFEST, {"dataset": dataset, "files": files,
                                        "canonical": all(f["canonical"] for f in files.values())})
        publishable(staging, directory=True)
        if raw.exists():
            shutil.rmtree(raw)
        staging.rename(raw)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("%s: %d file(s) verified into %s", dataset, len(files), raw)
