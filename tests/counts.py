"""What an evaluation's own counts say of its verdicts: the rules the unit tests (tests/test_evaluation.py),
the pipeline test (every evaluation it builds) and the archive README shows (tests/test_readme.py) are all
checked by. They read the evaluation's rules back from its files: they catch a file edited by hand, copied from
another run or cut short; a wrong rule is what the unit tests' models built to trip each check catch."""
from __future__ import annotations

import torch

from featdefense.accuracy import summary


def tolerated(name: str, check: dict, metrics: dict) -> int:
    """The images a paired check tolerates by the rule its params name: a share of the images it ran on
    (`min_images` beside it), or before that rule, max(images, share x the test images its kind of check
    looked at: the costly checks' first sanity.test_size, the cascade's all)."""
    tol = metrics["attacks"]["sanity"]["tolerance"]
    if "min_images" in tol:
        return max(int(tol["share"] * check["left"]), 1) if check["left"] >= tol["min_images"] else 0
    costly = metrics["sanity"]["converged"]["pgd"]["images"]
    images = costly if name in ("converged", "whitebox_not_above_greybox") else metrics["data"]["test_images"]
    return max(tol["images"], int(tol["share"] * images))


def verdict(check: dict, tol: dict) -> str:
    """A paired check's verdict from its counts, by the rule its params name."""
    if check["broken"] > check["tolerated"]:
        return "FAIL"
    least = tol.get("min_images", 1)
    return "pass" if check["left"] >= least else "n/a"


def agree_with_counts(metrics: dict) -> None:
    """Each paired check's verdict follows from its counts; Square's check counts the cascade's Square step,
    AutoAttack plus's the steps of its attacks, each reseeded AutoAttack run its own (and the rerun check's
    verdict follows from them); a defence that is its own grey-box attacker says n/a."""
    for name, check in metrics["sanity"].items():
        assert check["verdict"] in ("pass", "FAIL", "n/a"), (name, check)
        if "broken" in check:
            assert check["verdict"] == verdict(check, metrics["attacks"]["sanity"]["tolerance"]), (name, check)
    sanity = metrics["sanity"]
    converged = sanity["converged"]
    assert converged["left"] == converged["pgd"]["correct"], converged  # the reference's own count
    assert converged["broken"] == converged["pgd"]["correct"] - converged["stronger"]["correct"], converged
    for name, check in sanity.items():
        if "tolerated" in check:
            assert check["tolerated"] == tolerated(name, check, metrics), (name, check)
    cascade = list(metrics["whitebox_pgd_cascade"].items())
    if "robust" in metrics:  # right clean and attacked: at most either, and PGD's the cascade's first step
        for attack, line in metrics["robust"].items():
            assert line["correct"] <= min(metrics["intervals"]["clean"]["correct"],
                                          metrics["intervals"][attack]["correct"]), (attack, line)
        assert metrics["robust"]["clean"] == metrics["intervals"]["clean"]
        assert metrics["robust"]["pgd"]["correct"] == cascade[0][1]["correct"], cascade[0]
    single = sanity.get("single_step_not_masked", {})
    if "iterative_broke" in single:  # the masking check's verdict from its counts and its params
        rule = metrics["attacks"]["sanity"]["single_step"]
        n, missed = single["iterative_broke"], single["single_step_left"]
        assert 0 <= missed <= n <= converged["pgd"]["images"] - converged["pgd"]["correct"], single
        assert single["verdict"] == ("n/a" if n < rule["min_images"] else
                                     "FAIL" if missed > rule["max_missed"] * n else "pass"), single
    grey = sanity["whitebox_not_above_greybox"]
    if "broken" in grey:
        assert grey["left"] == converged["stronger"]["correct"] == grey["whitebox"]["correct"], grey
    square = [i for i, (k, _) in enumerate(cascade) if k.endswith("AutoAttack Square (gradient-free)")]
    check = metrics["sanity"]["gradient_free_not_stronger"]
    if square:
        (i,) = square
        assert check["left"] == cascade[i - 1][1]["correct"], check
        assert check["broken"] == cascade[i - 1][1]["correct"] - cascade[i][1]["correct"], check
    plus = [i for i, (k, _) in enumerate(cascade) if "AutoAttack plus" in k]
    check = metrics["sanity"]["autoattack_plus"]
    if plus:
        assert check["left"] == cascade[plus[0] - 1][1]["correct"] and \
            check["broken"] == cascade[plus[0] - 1][1]["correct"] - cascade[plus[-1]][1]["correct"], check
    else:
        assert check["verdict"] == "n/a"
    if metrics["defence"]["kind"] == "classifier" or metrics["defence"]["name"] == "unsecured":
        assert metrics["sanity"]["whitebox_not_above_greybox"]["verdict"] == "n/a"
    reruns_agree_with_counts(metrics["sanity"]["autoattack_rerun"], metrics["whitebox_pgd_cascade"],
                             len(metrics["whitebox_robust_index"]), metrics["attacks"]["whitebox"]["autoattack"])


def reruns_agree_with_counts(check: dict, cascade: dict, robust: torch.Tensor | int, autoattack: dict) -> None:
    """The reseeded AutoAttack runs (the plus version first, where it ran) against the cascade's own counts:
    each run's steps in a row, the images before its first step and after its last; each run on what the one
    before it left; each its own seed, the reruns numbered in order; no plus or rerun step in the cascade that
    no run names; the last count the robust images'. And what the runs' counts say of the rule
    (`whitebox.autoattack`: `clean_runs` runs in a row breaking none, at most `reruns` reruns): no runs exactly
    where AutoAttack or the reruns were not asked for (or no image was left); no run after they settled; pass
    where the last `clean_runs` broke none, FAIL where not (only after every rerun allowed), n/a where no image
    was left."""
    names, counts = list(cascade), [line["correct"] for line in cascade.values()]
    runs, clean = check["runs"], autoattack["clean_runs"]
    named = set()
    for run in runs:
        steps = [i for i, k in enumerate(names) if f"AutoAttack {run['run']} (seed {run['seed']}) " in k
                 or run["run"] == "plus" and "AutoAttack plus " in k]
        assert steps, (run, "no cascade step of this run")
        if run["run"] != "plus" and autoattack["version"] == "standard":
            assert len(steps) == 4, (run, names)  # the standard version's four attacks (FAB-T's not run again)
        assert steps == list(range(steps[0], steps[-1] + 1)), (run, names)  # one run's steps in a row
        assert run["left"] == counts[steps[0] - 1] and run["broken"] == counts[steps[0] - 1] - counts[steps[-1]], run
        named.update(steps)
    if runs:  # (with no reruns asked for, a plus run is the cascade's alone)
        assert {i for i, k in enumerate(names) if "AutoAttack rerun " in k or "AutoAttack plus " in k} <= named, \
            "a plus or rerun step no run names"
    reruns = [r["run"] for r in runs if r["run"] != "plus"]
    assert reruns == [f"rerun {k}" for k in range(1, len(reruns) + 1)], runs  # in order, the plus run first
    assert all(r["run"] != "plus" for r in runs[1:]), runs
    assert len({r["seed"] for r in runs}) == len(runs), runs  # reseeded: no seed twice
    for before, after in zip(runs, runs[1:]):
        assert after["left"] == before["left"] - before["broken"], (before, after)
    assert counts[-1] == (robust if isinstance(robust, int) else summary(robust)["correct"])

    def settled(done: list) -> bool:
        return len(done) >= clean and not any(r["broken"] for r in done[-clean:])

    not_asked = autoattack["version"] == "none" or not autoattack["reruns"]
    if not runs:
        assert not_asked or counts[-1] == 0, check
        assert check["verdict"] == "n/a", check
        return
    assert not not_asked, ("runs where no rerun was asked for", check)
    assert check["last_broken"] == runs[-1]["broken"], check
    for k in range(1, len(runs)):  # a run only where those before it had not settled and left images
        assert not settled(runs[:k]) and runs[k - 1]["left"] > runs[k - 1]["broken"], (k, runs)
    expected = "n/a" if counts[-1] == 0 else "pass" if settled(runs) else "FAIL"
    if expected == "FAIL":  # cut short: not every rerun allowed was run
        assert len(reruns) == autoattack["reruns"], runs
    assert check["verdict"] == expected, (expected, check)
