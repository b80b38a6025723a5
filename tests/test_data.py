import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest

from featdefense.data import sources
from featdefense.data.formats import FormatError, read_cifar10, read_idx, read_idx_split
from featdefense.datasets import DATASETS
from featdefense.data.transforms import grayscale_resize

from . import fixtures


def test_grayscale_uses_itu_601_luma_weights():
    rgb = np.zeros((3, 28, 28, 3), np.uint8)
    rgb[0, ..., 0] = 200  # pure red, green, blue images of the target size: no resize involved
    rgb[1, ..., 1] = 200
    rgb[2, ..., 2] = 200
    grey = grayscale_resize(rgb, 28)
    assert [int(g[0, 0]) for g in grey] == [round(200 * w) for w in (0.299, 0.587, 0.114)]


def test_grayscale_resize_shape_determinism_and_antialiasing():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    a, b = grayscale_resize(rgb, 28), grayscale_resize(rgb.copy(), 28)
    assert a.shape == (4, 28, 28) and a.dtype == np.uint8 and a.tobytes() == b.tobytes()
    # a 1-pixel checkerboard averages out when shrunk with antialiasing (no aliasing moire)
    checker = ((np.indices((32, 32)).sum(0) % 2) * 255).astype(np.uint8)
    grey = grayscale_resize(np.repeat(checker[None, ..., None], 3, axis=3), 28)[0]
    assert abs(int(grey[4:24, 4:24].mean()) - 127) < 20 and grey[4:24, 4:24].std() < 40


def test_grayscale_rejects_non_rgb_input():
    with pytest.raises(ValueError):
        grayscale_resize(np.zeros((2, 32, 32), np.uint8), 28)


def test_idx_and_cifar_parsers_read_the_canonical_formats(tmp_path):
    fixtures.write_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    x, y = read_idx_split(tmp_path / "mnist", "train")
    assert x.shape == (20, 1, 28, 28) and x.dtype == np.uint8 and y.tolist() == [i % 10 for i in range(20)]
    fixtures.write_cifar10(tmp_path / "cifar10", n_train=50, n_test=10)
    x, y = read_cifar10(tmp_path / "cifar10", "train")
    assert x.shape == (50, 32, 32, 3) and y.shape == (50,)
    grey, _ = fixtures.images(10, 32, 10 + 1)  # first batch's red channel, back in HWC order
    assert np.array_equal(x[:10, ..., 0], grey)


def test_idx_parser_names_a_truncated_file(tmp_path):
    path = tmp_path / "bad-idx.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + (100).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\x00" * 50)
    with pytest.raises(FormatError, match="bad-idx.gz.*declares shape"):
        read_idx(path)


def test_download_from_a_local_directory_verifies_canonical_md5(tmp_path, monkeypatch):
    src = tmp_path / "src"
    md5 = fixtures.write_mnist(src, 20, 10)
    name = "train-labels-idx1-ubyte.gz"
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], files=dict(md5)))  # as canonical
    v = sources.fetch("mnist", name, str(src), tmp_path / "out", {})
    assert v.canonical and (tmp_path / "out" / name).read_bytes() == (src / name).read_bytes()


def test_download_with_a_wrong_checksum_keeps_nothing_and_says_why(tmp_path):
    src = tmp_path / "src"
    found = fixtures.write_mnist(src, 20, 10)["t10k-images-idx3-ubyte.gz"]
    with pytest.raises(sources.DownloadError) as err:
        sources.fetch("mnist", "t10k-images-idx3-ubyte.gz", str(src), tmp_path / "out", {})
    msg = str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and DATASETS["mnist"].files["t10k-images-idx3-ubyte.gz"] in msg
    assert found in msg and "download.mnist.checksums" in msg
    assert list((tmp_path / "out").iterdir()) == []


def test_a_named_non_canonical_checksum_is_accepted_and_flagged(tmp_path):
    src = tmp_path / "src"
    md5 = fixtures.write_cifar10(src, 50, 10)
    v = sources.fetch("cifar10", "cifar-10-python.tar.gz", str(src), tmp_path / "out", md5)
    assert not v.canonical and v.md5 == md5["cifar-10-python.tar.gz"]


def test_download_over_a_url_prefix(tmp_path):
    src = tmp_path / "src"
    md5 = fixtures.write_cifar10(src, 50, 10)
    v = sources.fetch("cifar10", "cifar-10-python.tar.gz", src.as_uri(), tmp_path / "out", md5, retries=1)
    assert v.md5 == md5["cifar-10-python.tar.gz"]


def test_missing_local_file_names_the_source_option(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(sources.DownloadError, match="sources.local.yaml"):
        sources.fetch("mnist", "train-images-idx3-ubyte.gz", str(tmp_path / "empty"), tmp_path / "out", {})


def test_unreachable_url_names_the_offline_option(tmp_path):
    with pytest.raises(sources.DownloadError, match="local directory"):
        sources.fetch("mnist", "train-images-idx3-ubyte.gz", "http://127.0.0.1:9/nothing", tmp_path / "out", {},
                      retries=2, backoff=0.01)
    assert not any((tmp_path / "out").iterdir())


def test_canonical_md5s_match_the_offline_copy_of_mnist():
    # the MD5s are written once, in the dataset's module; the offline copies (when present) match
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
    if not shared.is_dir():
        pytest.skip("../shared/data not present")
    assert fixtures.md5s(shared) == DATASETS["mnist"].files
