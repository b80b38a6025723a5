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


def tolerated(left: int, share: float, min_images: int) -> int:
    """How many of the `left` images a reference attack left a stronger attack may newly break before a
    paired check fails: `share` of them, rounded down (AutoAttack's Square check: 0.2 points), and one image
    from `min_images` images on (one image is then a small share of them: chance, e.g. a processor's other
    rounding). Below `min_images` none: one image newly broken fails the check, so it cannot pass where the
    stronger attack broke a large share of what it ran on (1 of 1, 1 of 2, 1 of 4)."""
    return max(math.floor(share * left), 1) if left >= min_images else 0


def nested(reference: torch.Tensor, after: torch.Tensor, share: float, min_images: int) -> dict:
    """A paired, nested comparison on the same images: `reference` the images a reference attack left,
    `after` those a stronger one (run on them) still leaves. Every image it newly breaks is evidence, not
    sampling noise: the verdict is FAIL when it breaks more than `tolerated` of them, and where it broke no
    more, "pass" only on at least `min_images` images: on fewer (none included) a clean comparison shows too
    little, and the verdict is "n/a"."""
    left, broken = int(reference.sum()), int((reference & ~after).sum())
    tolerance = tolerated(left, share, min_images)
    verdict = "FAIL" if broken > tolerance else "pass" if left >= max(1, min_images) else "n/a"
    why = ("the reference attack left no image" if left == 0 else
           f"{broken} of the {left} images the reference left were broken ({tolerance} tolerated)"
           + (f"; fewer than {min_images} images: too few for a pass" if verdict == "n/a" else ""))
    return {"verdict": verdict, "why": why, "left": left, "broken": broken, "tolerated": tolerance}
