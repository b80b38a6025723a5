"""Accuracies as a reviewer reads them: a count of images, an interval, and whether the classifier is one.

Pure functions on boolean masks and predictions; the evaluation stage and the report use them."""
from __future__ import annotations

import math

import torch

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95%


def wilson(correct: int, images: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion (95% by default); (0, 1) for no images."""
    if images == 0:
        return 0.0, 1.0
    p = correct / images
    centre = (p + z * z / (2 * images)) / (1 + z * z / images)
    half = z / (1 + z * z / images) * math.sqrt(p * (1 - p) / images + z * z / (4 * images * images))
    return max(0.0, centre - half), min(1.0, centre + half)


def summary(mask: torch.Tensor) -> dict:
    """An accuracy from the mask of images counted correct: the share, the counts, its 95% interval."""
    images, correct = int(mask.numel()), int(mask.sum())
    low, high = wilson(correct, images)
    return {"accuracy": correct / images if images else 0.0, "correct": correct, "images": images,
            "interval_95": [round(low, 6), round(high, 6)]}


def degenerate(predictions: torch.Tensor, num_classes: int, share: float) -> dict:
    """Whether a classifier predicts one class for more than `share` of its inputs (a constant classifier
    scores about 1/num_classes under any attack: its 'robustness' means nothing)."""
    counts = torch.bincount(predictions.flatten().long(), minlength=num_classes)
    top = int(counts.argmax())
    most = float(counts[top]) / max(1, predictions.numel())
    return {"degenerate": most > share, "majority_class": top, "majority_share": round(most, 6), "threshold": share}


def tolerated(images: int, count: int, share: float) -> int:
    """How many images a stronger attack may newly break before a paired check fails: `count`, or `share`
    of the images the check looks at where that is more (AutoAttack's Square check: 0.2 points)."""
    return max(count, math.floor(share * images))


def nested(reference: torch.Tensor, after: torch.Tensor, tolerance: int) -> dict:
    """A paired, nested comparison on the same images: `reference` the images a reference attack left,
    `after` those a stronger one (run on them) still leaves. Every image it newly breaks is evidence, not
    sampling noise: the verdict is FAIL when more than `tolerance` are, "n/a" when the reference left
    none (nothing to compare)."""
    left, broken = int(reference.sum()), int((reference & ~after).sum())
    verdict = "n/a" if left == 0 else "pass" if broken <= tolerance else "FAIL"
    why = ("the reference attack left no image" if left == 0 else
           f"{broken} of the {left} images the reference left were broken ({tolerance} tolerated)")
    return {"verdict": verdict, "why": why, "left": left, "broken": broken, "tolerated": tolerance}
