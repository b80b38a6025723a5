"""A verified download of a dataset's raw files (their canonical MD5s: the dataset's module) from a URL
prefix or a local directory."""
from __future__ import annotations

import logging
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .. import FeatdefenseError
from ..datasets import DATASETS
from ..io import atomic_path, file_digest

log = logging.getLogger(__name__)



class DownloadError(FeatdefenseError):
    pass


@dataclass(frozen=True)
class Verified:
    name: str
    md5: str
    canonical: bool


def expected_md5(dataset: str, name: str, overrides: dict[str, str]) -> tuple[str, bool]:
    """The MD5 a file must have, and whether that is the canonical one."""
    canonical = DATASETS[dataset].files[name]
    if name in overrides and overrides[name] != canonical:
        return overrides[name], False
    return canonical, True


def _is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https", "file", "ftp")


def _fetch_url(url: str, dest: Path, retries: int, backoff: float) -> None:
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            return
        except urllib.error.HTTPError as e:
            if e.code < 500 or attempt == retries:  # 4xx: the file is not there; retrying won't help
                raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            if attempt == retries:
                raise DownloadError(
                    f"{url}: could not download after {retries} attempts ({e}). Without network, name a "
                    f"local directory holding the canonical files in sources.local.yaml (see docs/run.md, "
                    f"'Offline sources')") from None
        wait = backoff * 2 ** (attempt - 1)
        log.warning("download of %s failed (attempt %d/%d); retrying in %.0fs", url, attempt, retries, wait)
        time.sleep(wait)


def fetch(dataset: str, name: str, source: str, dest_dir: Path, overrides: dict[str, str],
          retries: int = 4, backoff: float = 2.0) -> Verified:
    """Copy or download `name` from `source` into `dest_dir`, verified; a bad file is never kept."""
    want, canonical = expected_md5(dataset, name, overrides)
    dest = Path(dest_dir) / name
    with atomic_path(dest) as tmp:
        if _is_url(source):
            _fetch_url(source.rstrip("/") + "/" + name, tmp, retries, backoff)
        else:
            src = Path(source) / name
            if not src.is_file():
                raise DownloadError(f"{src}: not found ({dataset}: {source} in sources.local.yaml is a "
                                    f"local directory that must hold the canonical file {name})")
            shutil.copyfile(src, tmp)
        found = file_digest(tmp, "md5")
        if found != want:
            hint = ("" if canonical else " (the MD5 named in download.%s.checksums)" % dataset)
            raise DownloadError(
                f"{name} from {source}: checksum mismatch: expected MD5 {want}{hint}, found {found}. "
                f"The file was not kept. A re-packaged copy is accepted only when params.yaml names "
                f"its MD5 under download.{dataset}.checksums.")
    if not canonical:
        log.warning("%s is NOT the canonical file (MD5 %s, canonical %s); results will say so",
                    name, want, DATASETS[dataset].files[name])
    return Verified(name, want, canonical)
