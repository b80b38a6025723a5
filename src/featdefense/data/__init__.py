"""The two datasets: canonical raw files, their parsers, and the grayscale-resize of CIFAR-10."""
