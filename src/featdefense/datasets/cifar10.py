"""CIFAR-10 (Krizhevsky), grayscale-resized to the target's 28x28 input (the paper's Table 2)."""
from ..data.formats import read_cifar10
from ..data.transforms import grayscale_resize
from . import Dataset


SHAPE = (1, 28, 28)  # the paper's target's input


def read(raw_dir, split):
    rgb, y = read_cifar10(raw_dir, split)
    return grayscale_resize(rgb, SHAPE[-1])[:, None], y


DATASET = Dataset(name="cifar10", label="CIFAR-10", files={"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
                  source="https://www.cs.toronto.edu/~kriz", read=read, shape=SHAPE, classes=10,
                  paper_table="Table 2", order=10,
                  description="32x32 colour images of 10 classes, grayscale (ITU-R 601-2 luma) and resized to 28x28")
