"""download: the canonical raw files of one dataset, checksum-verified, from a URL prefix or a directory."""
from __future__ import annotations

import logging

from ..data import MANIFEST
from ..data.sources import fetch
from ..datasets import DATASETS
from ..io import atomic_path, write_json
from ..locations import location

log = logging.getLogger(__name__)


def run(p, inp, out, dataset):
    spec = p["download"][dataset]
    source = location(dataset)  # where, not what: the checksums say what, and they are the params
    files = {}
    with atomic_path(out["raw"], directory=True) as staging:
        for name in DATASETS[dataset].files:
            log.info("fetching %s from %s", name, source)
            v = fetch(dataset, name, source, staging, spec["checksums"])
            files[name] = {"md5": v.md5, "canonical": v.canonical}
        write_json(staging / MANIFEST, {"dataset": dataset, "files": files,
                                        "canonical": all(f["canonical"] for f in files.values())})
    log.info("%s: %d file(s) verified into %s", dataset, len(files), out["raw"])
