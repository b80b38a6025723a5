"""MNIST (LeCun et al.): handwritten digits, 28x28 grayscale, the paper's Table 1."""
from ..data.formats import read_idx_split
from . import Dataset

FILES = {  # the canonical files (method.md; torchvision knows the same MD5s)
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


def read(raw_dir, split):
    return read_idx_split(raw_dir, split, "MNIST")


DATASET = Dataset(name="mnist", label="MNIST", files=FILES, source="https://ossci-datasets.s3.amazonaws.com/mnist",
                  read=read, shape=(1, 28, 28), classes=10, paper_table="Table 1", order=0,
                  description="handwritten digits, 60,000 train and 10,000 test images")
