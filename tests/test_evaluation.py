"""The white-box evaluation a reviewer accepts: best iterates, AutoAttack, intervals, sanity checks.

Each test is built so that it fails when the accounting it guards is missing: a model fooled only at a
middle step, a defence whose gradient is zero, a constant classifier, a hand-computed interval."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from featdefense.accuracy import degenerate, summary, wilson
from featdefense.attacks import PGD
from featdefense.attacks.autoattack import AutoAttack
from featdefense.models.lenet import Target
from featdefense.stages.evaluate import seeded, still_correct, whitebox

from .conftest import PAPER


def test_wilson_interval_against_hand_computed_values():
    # 8 of 10: p = 0.8, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71675, half 0.22656 (by hand)
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.49016, abs=1e-5) and high == pytest.approx(0.94332, abs=1e-5)
    assert wilson(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)  # none right: still not certainly zero
    assert summary(torch.tensor([True] * 8 + [False] * 2)) == {
        "accuracy": 0.8, "correct": 8, "images": 10, "interval_95": [0.490162, 0.943318]}


def test_a_constant_classifier_is_flagged_degenerate_and_a_real_one_is_not():
    constant = torch.full((200,), 3)
    flag = degenerate(constant, 10, share=0.5)
    assert flag["degenerate"] and flag["majority_class"] == 3 and flag["majority_share"] == 1.0
    assert not degenerate(torch.arange(200) % 10, 10, share=0.5)["degenerate"]


class _Band(nn.Module):
    """Two classes on an image's mean brightness m: class 1 only while 0.32 < m < 0.38; the loss of the
    true class 0 grows with m, so PGD walks m up through the band and out of it."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        band = ((m > 0.32) & (m < 0.38)).float()
        return torch.stack([torch.zeros_like(m), 10 * m - 20 + 30 * band], dim=1)


def test_an_image_fooled_at_a_middle_step_counts_as_broken():
    model, y = _Band(), torch.zeros(3, dtype=torch.long)
    x = torch.stack([torch.full((1, 4, 4), v) for v in (0.2, 0.2, 0.6)])  # the third never enters the band
    spec = dict(epsilon=0.3, steps=6, step_size=0.05, random_start=False)  # m: 0.2, 0.25, ..., 0.5
    last = PGD(model, **spec)(x, y)
    assert (model(last).argmax(1) == y).all()  # the last iterate (m = 0.5) is classified right again
    robust = torch.ones(3, dtype=torch.bool)
    assert still_correct(model, PGD(model, **spec), x, y, robust, 3, "cpu", "last").all()
    best = still_correct(model, PGD(model, **spec, best=True), x, y, robust, 3, "cpu", "best")
    assert best.tolist() == [False, False, True]
    found = PGD(model, **spec, best=True)(x, y)
    assert (found - x).abs().max() <= 0.3 + 1e-6 and model(found).argmax(1).tolist() == [1, 1, 0]


def _templates(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes of binary 28x28 templates at grey levels 0.4 / 0.8, with 5% of the pixels flipped."""
    templates = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0)) < 0.3
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    flips = torch.rand(n, 1, 28, 28, generator=g) < 0.05
    return 0.4 + 0.4 * (templates[y] ^ flips).float(), y


@pytest.fixture(scope="module")
def target():
    torch.manual_seed(0)
    x, y = _templates(1000, seed=1)
    model = Target()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(3):
        for s in range(0, len(y), 100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[s:s + 100]), y[s:s + 100]).backward()
            opt.step()
    return model.eval().requires_grad_(False)


class _Quantiser(nn.Module):
    """A deliberately masked defence: snaps each pixel to a grey level (0.4 below 0.5, else 0.8); its
    gradient is zero everywhere. Random noise of 0.1 flips a dark pixel: restarts and Square find what
    the gradient cannot."""

    def forward(self, x):
        return 0.4 + 0.4 * torch.round(x)


def _params(epsilon: float) -> dict:
    p = copy.deepcopy(PAPER)
    p["seed"] = 0
    p["attack"]["fgsm"]["epsilon"] = epsilon
    p["attack"]["pgd"].update(epsilon=epsilon, steps=20, step_size=epsilon / 4)
    p["whitebox"].update(step_sizes=[epsilon / 4], batch_size=200,
                         autoattack={"version": "standard", "iterations": 10, "square_queries": 300})
    p["robustness"].update(epsilons=[0, epsilon], steps=10, test_size=None)
    p["sanity"].update(test_size=None, restarts=3)
    return p


def _evaluate(model, x, y, p, grey_pgd: torch.Tensor):
    predictions = model(x).argmax(1)
    clean = predictions == y
    correct = {"clean": clean, "fgsm": clean, "pgd": grey_pgd, "whitebox_fgsm": clean}
    return whitebox(model, x, y, predictions, correct, p, "cpu", seeded(0, "cpu"), "test")


def test_sanity_checks_pass_on_the_plain_target_and_fail_on_a_masked_defence(target):
    x, y = _templates(200, seed=2)
    masked = nn.Sequential(_Quantiser(), target).eval()
    for model in (target, masked):
        assert (model(x).argmax(1) == y).float().mean() > 0.9  # the masked defence loses nothing clean

    def grey(model, epsilon):  # grey-box PGD: crafted on the plain target (for the target, its own attack)
        transfer = PGD(target, epsilon=epsilon, steps=20, step_size=epsilon / 4)(x, y)
        return model(transfer).argmax(1) == y

    robust, cascade, curve, sanity = _evaluate(target, x, y, _params(0.03), grey(target, 0.03))
    assert {k: v["pass"] for k, v in sanity.items()} == {k: True for k in sanity}, sanity
    assert set(sanity) == {"not_degenerate", "unbounded_budget", "converged", "gradient_free_not_stronger",
                           "whitebox_not_above_greybox"}
    assert 0 < summary(robust)["correct"]  # some images survive: the checks compare something
    assert curve["accuracy"][-1] == summary(robust)["accuracy"]  # the curve at the table's epsilon

    robust, cascade, curve, sanity = _evaluate(masked, x, y, _params(0.25), grey(masked, 0.25))
    failed = {k for k, v in sanity.items() if not v["pass"]}
    assert failed == {"unbounded_budget", "converged", "gradient_free_not_stronger", "whitebox_not_above_greybox"}, \
        sanity
    assert curve["accuracy"][-1] == summary(robust)["accuracy"]


def test_the_autoattack_wrapper_agrees_with_the_library_image_for_image(target):
    from pyautoattack import AutoAttack as Reference

    x, y = _templates(60, seed=3)
    model = target  # at epsilon 0.03 some images survive: a comparison that means something
    clean = model(x).argmax(1) == y
    ours = AutoAttack(model, epsilon=0.03, seed=0, iterations=10, square_queries=300)
    robust = clean
    for name, attack in ours.attacks():
        robust = still_correct(model, attack, x, y, robust, 60, "cpu", name)
    reference = Reference(model, eps=0.03, seed=0, version="standard")
    for a in (reference.apgd, reference.apgd_targeted, reference.fab):
        a.n_iter = 10
    reference.square.n_queries = 300
    x_adv, _ = reference.run_standard_evaluation(x, y, batch_size=60)
    theirs = model(x_adv).argmax(1) == y
    assert [name for name, _ in ours.attacks()] == ["APGD-CE", "APGD-T", "FAB-T", "Square (gradient-free)"]
    assert 0 < int(robust.sum()) < int(clean.sum())  # the attacks broke some images, not all
    assert torch.equal(robust, theirs)


def test_seeds_are_summarised_by_mean_and_sample_sd():
    from featdefense.seeds import aggregate, markdown, mean_sd

    assert mean_sd([0.8, 0.9, 1.0]) == pytest.approx((0.9, 0.1))  # sample sd: sqrt(0.02 / 2)
    assert mean_sd([0.5]) == (0.5, 0.0)
    accuracy = lambda v: {k: v for k in ("clean", "fgsm", "pgd", "whitebox_fgsm", "whitebox_pgd")}  # noqa: E731
    runs = {seed: {"Madry": {"accuracy": accuracy(v), "degenerate": seed == 2}} for seed, v in
            [(0, 0.8), (1, 0.9), (2, 1.0)]}
    table = aggregate(runs)
    assert table["Madry"]["pgd"]["seeds"] == [0.8, 0.9, 1.0] and table["Madry"]["degenerate_in"] == [2]
    assert "| Madry | 90.0 ± 10.0 |" in markdown("mnist", [0, 1, 2], table, 100)
