"""The two datasets: canonical raw files, their parsers, and the grayscale-resize of CIFAR-10."""

MANIFEST = "manifest.json"  # written by download beside the raw files: each file's MD5, canonical or not
