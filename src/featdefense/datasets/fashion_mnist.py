"""Fashion-MNIST (Xiao et al. 2017): clothing, 28x28 grayscale, MNIST's IDX format and sizes; not in the paper.
docs/add-a-dataset.md's example of adding a dataset: this module and the section download.fashion_mnist."""
from ..data.formats import read_idx_split
from . import Dataset

FILES = {  # the canonical files (github.com/zalandoresearch/fashion-mnist; torchvision knows the same MD5s)
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def read(raw_dir, split):
    return read_idx_split(raw_dir, split, "Fashion-MNIST")


DATASET = Dataset(name="fashion_mnist", label="Fashion-MNIST", files=FILES,
                  source="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com", read=read, shape=(1, 28, 28),
                  classes=10, order=20, description="Zalando's clothing images, 60,000 train and 10,000 test")
