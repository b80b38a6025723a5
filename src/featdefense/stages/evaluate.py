"""evaluate: one defence on one dataset, under every threat model, with the checks a reviewer runs.

- clean: accuracy with the defence in place;
- grey-box, each attack module's (the paper's FGSM and PGD; attacks/): the attack files, crafted on the
  undefended target, fed through the defence; a defence that replaces the classifier (madry) is attacked on
  itself instead;
- white-box (adaptive), all end to end through defence and classifier: each attack module's (its white-box
  column), and for the reference attack's column (`whitebox.attack`: PGD) a cascade: PGD with each
  `whitebox.step_sizes`, BPDA-PGD for image-to-image defences, AutoAttack (APGD-CE, APGD-T, FAB-T,
  Square), the robustness curve's PGD at the table's epsilon, the convergence check's stronger PGD, and
  where the defence still keeps more than `whitebox.autoattack.plus_above`, AutoAttack's plus version; then
  AutoAttack at the configured budget reseeded on the images left until `whitebox.autoattack.clean_runs`
  runs in a row break none (at most `whitebox.autoattack.reruns`). An attack without a random start (FAB-T) that already ran at the same
  budget is not run again on the images it left: it would make the same examples (its cascade step says so).
  Every attack counts an image broken if any of its iterates fooled the model (best iterate), and an
  image counts as robust only if it is classified correctly clean and every attack failed on it, the
  grey-box ones included (the per-image minimum);
- robust accuracy against epsilon: white-box PGD at each `robustness.epsilons`, finished once every attack
  has run (at the table's epsilon and above, the table's breaks count);
- sanity checks (Carlini et al. 2019), each pass, FAIL or n/a with the counts that decided it: paired ones
  run a stronger attack on the images a reference left and fail when it newly breaks more than the
  tolerance (accuracy.nested); n/a where the premise does not hold; AutoAttack's own checks through the
  library;
- every accuracy with its image count and 95% Wilson interval.

Attacks run as a cascade, each on the images still robust: that is the per-image minimum, computed
without attacking images already broken.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time

import numpy as np
import torch
from tqdm import tqdm

from .. import attacks, checkpoints, targets
from ..accuracy import degenerate, nested, summary
from ..attacks.autoattack import CHECKS, AutoAttack
from ..defended import defended_model, load_defence
from ..defences import DEFENCES
from ..io import ArtifactError, open_h5, write_json
from ..training import batches, load_adversarial_test, load_split, predict, setup

log = logging.getLogger(__name__)


class _StraightThrough(torch.nn.Module):
    """target(defence(x)) forward; backward as if the defence were the identity (BPDA, Athalye et al. 2018)."""

    def __init__(self, module: torch.nn.Module, target: torch.nn.Module):
        super().__init__()
        self.module, self.target = module, target

    def forward(self, x):
        return self.target(x + (self.module(x) - x).detach())


def bpda_model(module: torch.nn.Module, target: torch.nn.Module) -> torch.nn.Module:
    """The BPDA surrogate of a preprocessor defence: its predictions, the target's gradients."""
    return _StraightThrough(module, target).eval().requires_grad_(False)


def evaluating(name: str, model, p: dict, **override):
    """Attack `name` against `model` from its section, as an evaluation runs it: an iterative attack judged at
    its best iterate (an image counts as broken if any iterate fooled the model)."""
    a = attacks.declared(name)
    return a.built(model, p["attack"][name], **({"best": True} if a.iterative else {}), **override)


def share(mask: torch.Tensor) -> float:
    """The fraction of True in a boolean mask (in double precision: 0.8 is written as 0.8)."""
    return float(mask.double().mean())


def paired(reference: torch.Tensor, after: torch.Tensor, tol: dict) -> dict:
    """A paired check's counts and verdict under `sanity.tolerance` (accuracy.nested)."""
    return nested(reference, after, tol["share"], tol["min_images"])


def rule(tol: dict) -> str:
    """The rule `paired` applies, as a check's `what` says it."""
    return (f"{tol['share']:.1%} of the images it runs on (rounded down), and one image where it runs on "
            f"{tol['min_images']} or more; on fewer, any image broken fails it and none broken is n/a")


def still_correct(model, attack, x, y, robust: torch.Tensor, batch_size: int, device, label: str,
                  *stateful) -> torch.Tensor:
    """robust & (model is right on attack(x)), attacking only the images still robust. One step of the
    stage's checkpoint, named `label`: a rerun of a stopped evaluation reads it back (with the state of
    `stateful`, e.g. AutoAttack's findings) instead of attacking again."""
    def attacked() -> torch.Tensor:
        out = robust.clone()
        todo = torch.nonzero(robust).flatten()
        for s in tqdm(list(batches(len(todo), batch_size)), desc=label, mininterval=2, leave=False):
            i = todo[s]
            adv = attack(x[i].to(device), y[i].to(device))
            out[i] = predict(model, adv, device).cpu() == y[i]
        return out
    return checkpoints.current().step(label, attacked, *stateful)


def seeded(seed: int, device):
    """gen(i)(attack): the attack with its own seeded generator, number i of an evaluation's runs (a
    rerun repeats byte for byte)."""
    def gen(i: int):
        g = torch.Generator(device=device).manual_seed(seed * 1000 + 100 + i)
        return lambda a: (lambda xb, yb: a(xb, yb, generator=g))
    return gen


def run(p, inp, out, dataset, defence):
    device = setup(p)
    d = DEFENCES[defence]
    target, target_meta, architecture = targets.load(inp["target"], device)
    module, meta = load_defence(d, p, inp.get("model"), device, architecture.input_shape)
    model = defended_model(d, module, target)
    x_files, index, attack_params, attack_prov = {}, None, {}, None
    for attack in attacks.NAMES:
        x_adv, idx, attack_params[attack], attack_prov = load_adversarial_test(inp[attack])
        if index is not None and not np.array_equal(index, idx):
            raise ArtifactError(f"{inp[attack]}: its test images differ from those of the other attack files")
        x_files[attack], index = x_adv, idx
    x, y = load_split(inp["prepared"], "test", index)
    wb, bs = p["whitebox"], p["whitebox"]["batch_size"]
    reference = attacks.declared(wb["attack"])  # the cascade's attack
    everyone = torch.ones(len(y), dtype=torch.bool)

    gen = seeded(p["seed"], device)
    predictions = predict(model, x, device)
    correct = {"clean": predictions == y}
    if d.kind == "preprocessor":   # grey-box: the target's adversarial examples, through the defence
        grey = "crafted on the undefended target (the paper's protocol)"
        for attack in attacks.NAMES:
            correct[attack] = predict(model, x_files[attack], device) == y
    else:                          # the defence is the classifier: attacked on itself
        grey = "crafted on the robust classifier itself (its weights are the defence)"
        for attack, a in attacks.ATTACKS.items():
            correct[attack] = still_correct(model, gen(0)(evaluating(attack, model, p)), x, y, everyone, bs, device,
                                            f"{defence} {a.label}")

    # white-box, adaptive: each attack through defence and classifier; the reference attack's is a cascade,
    # each attack on the images still robust (the per-image minimum)
    for attack, a in attacks.ATTACKS.items():
        if attack == reference.name:
            continue
        robust_one = correct["clean"] & correct[attack]
        if d.kind == "preprocessor":  # a classifier's grey-box attack above was already this white-box one
            robust_one = still_correct(model, gen(0)(evaluating(attack, model, p)), x, y, robust_one, bs, device,
                                       f"{defence} white-box {a.label}")
        correct[attacks.whitebox(attack)] = robust_one
    bpda = bpda_model(module, target) if d.kind == "preprocessor" and not isinstance(module, torch.nn.Identity) \
        else None
    undefended = isinstance(module, torch.nn.Identity)
    same_threat = d.kind == "classifier" or undefended  # the grey-box attack is the white-box one
    reference_clean = None if undefended else predict(target, x, device) == y
    correct[attacks.whitebox(reference.name)], cascade, curve, sanity = whitebox(
        model, x, y, predictions, correct, p, device, gen, defence, bpda, same_threat, reference_clean,
        classes=architecture.classes)

    accuracy = {k: share(v) for k, v in correct.items()}
    with open_h5(inp["prepared"]) as f:
        canonical = bool(f.attrs["canonical"])
    metrics = {
        "dataset": dataset,
        "defence": {"name": d.name, "label": d.label, "kind": d.kind, "description": d.description,
                    "params": d.params_of(p), "trained": d.trains},
        "threat_model": {
            ", ".join(attacks.NAMES): f"grey-box: {grey}",
            **{attacks.whitebox(n): f"white-box, adaptive: {a.label} through defence and classifier end to end; "
                                    f"per image, robust only if clean, grey-box {a.label} and white-box {a.label} "
                                    "all left it correct" for n, a in attacks.ATTACKS.items() if n != reference.name},
            attacks.whitebox(reference.name): "white-box, adaptive: per image, robust only if it is classified "
                                              "correctly clean and after every attack of "
                                              f"whitebox_{reference.name}_cascade (grey-box ones included), each "
                                              "judged at its best iterate",
        },
        "accuracy": accuracy,  # the paper's protocol for an attack: right on its adversarial image
        "intervals": {k: summary(v) for k, v in correct.items()},
        # robust accuracy: right clean *and* on the attack's adversarial image (the white-box ones already are)
        "robust": {k: summary(correct["clean"] & correct[k]) for k in ("clean", *attacks.NAMES)},
        f"whitebox_{reference.name}_cascade": cascade,
        # the test images (their index in the split) that every attack left: what an independent attack checks
        "whitebox_robust_index": index[correct[attacks.whitebox(reference.name)].numpy()].tolist(),
        "sanity": sanity,
        "degenerate": sanity["not_degenerate"]["degenerate"],
        "sanity_failed": [k for k, v in sanity.items() if v["verdict"] == "FAIL"],
        "robustness": curve,
        "data": {"canonical": canonical, "test_images": int(len(index)),
                 # which test images (their index in the split): the same for every training seed
                 "test_index_sha256": hashlib.sha256(np.asarray(index, dtype="<i8").tobytes()).hexdigest(),
                 "target_train_images": target_meta["metrics"]["train_size"]},
        "target": {"architecture": architecture.name, "epochs": target_meta["metrics"]["epochs"],
                   "clean_accuracy_full_test_set": target_meta["metrics"]["clean_test_accuracy"]},
        "attacks": {**attack_params, "subset_sizes": {k: attack_prov["params"]["attack"][k]
                                                      for k in ("train_size", "test_size")},
                    "whitebox": wb, "sanity": p["sanity"]},
    }
    if meta:
        metrics["defence"]["training"] = {k: meta[k] for k in ("params", "train_examples", "final", "final_loss",
                                                               "feature_loss", "loss_net") if k in meta}
    log.info("%s %s: %s", dataset, defence, ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))
    log.info("%s %s: white-box cascade %s", dataset, defence, {k: v["accuracy"] for k, v in cascade.items()})
    for k, v in sanity.items():
        log.info("%s %s: sanity %s: %s%s", dataset, defence, k, v["verdict"], f" ({v['why']})" if "why" in v else "")
    write_json(out["metrics"], metrics)


def whitebox(model, x, y, predictions, correct, p, device, gen, label: str, bpda=None, same_threat: bool = False,
             reference_clean: torch.Tensor | None = None, *, classes: int):
    """The white-box cascade of the reference attack (`whitebox.attack`, PGD), the robustness curve and the
    sanity checks of `model` (defence and classifier end to end) on images x, y, given the masks `correct` of
    clean, every attack grey-box and every other attack white-box.
    `bpda`: the BPDA surrogate of an image-to-image defence, if it has one. `same_threat`: the grey-box
    attack is this white-box one (a defence that is the classifier, or none). `reference_clean`: the
    undefended target's clean mask on the same images (for the clean-accuracy check). `classes`: how many
    the target tells apart (the degenerate check). Returns the per-image
    robust mask (every attack), the cascade (accuracy after each attack), the curve and the checks."""
    wb, bs = p["whitebox"], p["whitebox"]["batch_size"]
    ref = attacks.declared(wb["attack"])
    eps = p["attack"][ref.name]["epsilon"]
    cascade = {}  # "NN. attack" -> accuracy once it and every attack before it ran (NN keeps the order)
    clock = [time.perf_counter()]

    def after(name: str, mask: torch.Tensor) -> torch.Tensor:
        step = f"{len(cascade) + 1:02d}. {'+ ' if cascade else ''}{name}"
        cascade[step] = summary(mask)
        now = time.perf_counter()  # the log's, not the metrics' (which a rerun makes byte for byte)
        log.info("%s cascade %s: %d of %d images left (%.0f s)", label, step, cascade[step]["correct"], len(mask),
                 now - clock[0])
        clock[0] = now
        return mask

    robust = after(f"clean, grey-box {ref.label}", correct["clean"] & correct[ref.name])
    for name, a in attacks.ATTACKS.items():  # an attack whose ball lies inside the reference's counts too
        if name != ref.name and p["attack"][name]["epsilon"] <= eps:
            robust = after(f"grey-box and white-box {a.label}", robust & correct[attacks.whitebox(name)])
    runs = [(f"white-box {ref.label} step {step}", evaluating(ref.name, model, p, step_size=step))
            for step in wb["step_sizes"]]
    if bpda is not None:
        # BPDA: forward through the defence, backward as if it were the identity; in case the defence's
        # own gradient is uninformative (clipping, a median's sparse gradient, saturating outputs)
        step = max(wb["step_sizes"])
        runs.append((f"white-box BPDA-{ref.label} step {step}", evaluating(ref.name, bpda, p, step_size=step)))
    for i, (name, attack) in enumerate(runs):
        robust = after(name, still_correct(model, gen(1 + i)(attack), x, y, robust, bs, device, f"{label} {name}"))

    aa, square = wb["autoattack"], None
    ran = {}  # what decides a deterministic attack's examples (AutoAttack.repeats) -> its cascade step
    library = None if aa["version"] == "none" else built(model, p, aa["version"], p["seed"], device, classes)
    if library is not None:
        library.preflight(x[:bs].to(device), y[:bs].to(device))
        shares = {"clean": share(correct["clean"])}
        for key, name, attack in library.attacks():
            before = robust
            robust = after(f"white-box AutoAttack {name}", still_correct(model, attack, x, y, robust, bs, device,
                                                                         f"{label} AutoAttack {name}",
                                                                         library.findings))
            if same := library.repeats(key):
                ran[same] = f"white-box AutoAttack {name}"
            shares[key] = share(robust)
            if key == "square":  # the gradient-free attack, on the images every gradient attack left
                square = (before, robust)
        if square is not None and square[0].any():
            library.check_square(shares)

    # the robustness curve's PGD at the table's epsilon counts too
    masks, n = robustness_curve(model, x, y, correct["clean"], p, bs, device, gen, label, robust)
    if eps in masks:
        robust = after(f"white-box {ref.label} of the robustness curve (first {n} images)",
                       torch.cat([robust[:n] & masks[eps], robust[n:]]))
    sanity, robust = sanity_checks(model, x, y, predictions, correct, robust, p, gen, device, label, after, classes,
                                   same_threat, reference_clean)
    sanity["gradient_free_not_stronger"] = square_check(square, p["sanity"]["tolerance"])
    robust, plus = convergence(model, x, y, robust, p, device, label, after, sanity, classes, ran)
    robust, reruns = rerun(model, x, y, robust, p, device, label, after, sanity, plus, classes, ran)
    sanity["autoattack_checks"] = library_checks(library, plus, reruns)
    # the curve, with every attack of the table counted at its epsilon and above (an image broken in a
    # smaller ball is broken in a larger one): at the table's epsilon it is the table's number on the
    # curve's images (the first robustness.test_size)
    return robust, cascade, curve_summary(p["robustness"], ref.label, eps, masks, n, robust), sanity


def single_step_check(single: dict[str, torch.Tensor], clean: torch.Tensor, alone: torch.Tensor, label: str,
                      max_missed: float, min_images: int) -> dict:
    """Gradient masking seen from one step: of the images right clean that the iterative attack alone
    (`alone`: what it left) breaks, how many every single-step attack at its epsilon (`single`: each one's
    images left, grey-box and white-box) leaves. A single step in the gradient's sign breaks most of what many
    steps break where the loss is smooth (the target, Madry); one that leaves most of them points at a
    gradient that is useless at the image itself (masked: flat, shattered or saturated) but not a step away.
    FAIL where it leaves more than `max_missed` of them; n/a with no single-step attack, or where the
    iterative attack broke fewer than `min_images`."""
    what = (f"of the images right clean that white-box {label} alone breaks, at most {max_missed:.0%} are left by "
            f"every single-step attack at its epsilon, grey-box and white-box (an image either broke counts as "
            f"broken in one step; else single-step gradient masking)")
    broke = clean & ~alone
    if not single:
        return {"verdict": "n/a", "what": what, "why": f"no single-step attack at {label}'s epsilon"}
    left = torch.stack(list(single.values())).all(0)
    missed, n = int((broke & left).sum()), int(broke.sum())
    names = ", ".join(single)
    said = f"{names} left {missed} of the {n} images {label} alone broke"
    verdict = "n/a" if n < max(1, min_images) else "FAIL" if missed > max_missed * n else "pass"
    return {"verdict": verdict, "what": what, "iterative_broke": n, "single_step_left": missed,
            "why": said + (f"; fewer than {min_images}: too few to judge" if verdict == "n/a" else "")}


def square_check(square: tuple[torch.Tensor, torch.Tensor] | None, tol: dict) -> dict:
    """The gradient-masking check from the cascade's Square step: (robust before it, robust after it)."""
    what = ("of the images every gradient attack before it left, AutoAttack's Square (gradient-free) breaks at "
            f"most {rule(tol)} (else the gradients are likely masked)")
    if square is None:
        return {"verdict": "n/a", "what": what, "why": "AutoAttack (and its Square) not run"}
    check = {"what": what, **paired(*square, tol)}
    if check["left"] == 0:
        check["why"] = "the gradient attacks left no image for Square"
    return check


def library_checks(library: AutoAttack | None, plus: AutoAttack | None = None,
                   reruns: list[AutoAttack] = ()) -> dict:
    """AutoAttack's own checks, of the standard run, (prefixed "plus ") of the plus version's and (prefixed
    "rerun k ") of each rerun's."""
    if library is None:
        return {"verdict": "n/a", "why": "AutoAttack not run", "what": "AutoAttack's own checks", "checks": {}}
    runs = [("", library), *([("plus ", plus)] if plus else []),
            *((f"rerun {k} ", r) for k, r in enumerate(reruns, 1))]
    checks = {f"{prefix}{k}": v for prefix, run in runs for k, v in run.report().items()}
    verdicts = {c["verdict"] for c in checks.values()}
    failed = [k for k, c in checks.items() if c["verdict"] == "FAIL"]
    return {"verdict": "FAIL" if failed else "pass" if "pass" in verdicts else "n/a",
            "what": "AutoAttack's own checks (pyautoattack.checks): " + ", ".join(CHECKS),
            "checks": checks, **({"why": "; ".join(f"{k}: {' '.join(checks[k]['said'])}" for k in failed)}
                                 if failed else {})}


# the checks that say the gradient attacks did not converge: where one fails, AutoAttack's plus version runs
UNCONVERGED = ("converged", "gradient_free_not_stronger")


def convergence(model, x, y, robust, p, device, label, after, sanity, classes: int, ran: dict
                ) -> tuple[torch.Tensor, AutoAttack | None]:
    """AutoAttack's plus version (restarts, APGD-DLR, untargeted FAB) on the images every other attack left,
    for a defence that still keeps more than `whitebox.autoattack.plus_above` of its images, or keeps any
    while a check of the attacks' convergence (`UNCONVERGED`, already in `sanity`) failed: the attacks did not
    converge, so more of them is due. Whether the number moved is the `autoattack_plus` check. Returns the
    robust mask and the plus version (None: not run)."""
    aa, tol, bs = p["whitebox"]["autoattack"], p["sanity"]["tolerance"], p["whitebox"]["batch_size"]
    what = (f"where white-box accuracy stays above {aa['plus_above']} (or above 0 where {' or '.join(UNCONVERGED)}"
            f" failed), AutoAttack's plus version (restarts) on the images every attack left breaks at most "
            f"{rule(tol)}")
    kept = share(robust)
    unconverged = [k for k in UNCONVERGED if sanity.get(k, {}).get("verdict") == "FAIL"]
    why = ("AutoAttack not run" if aa["version"] == "none" else "no threshold set" if aa["plus_above"] is None
           else "no image left" if not robust.any()
           else None if kept > aa["plus_above"] or unconverged
           else f"white-box accuracy {kept:.3f} is not above {aa['plus_above']} and the attacks converged")
    if why is not None:
        sanity["autoattack_plus"] = {"verdict": "n/a", "what": what, "why": why}
        return robust, None
    plus = built(model, p, "plus", p["seed"] + 1, device, classes)
    before = robust
    robust = cascaded(model, plus, "plus", x, y, robust, bs, device, label, after, ran)
    check = paired(before, robust, tol)
    if unconverged:
        check["why"] += f"; run because {' and '.join(unconverged)} failed"
    sanity["autoattack_plus"] = {"what": what, **check}
    return robust, plus


def built(model, p: dict, version: str, seed: int, device, classes: int) -> AutoAttack:
    """AutoAttack's `version` at the configured budget, seeded with `seed`, on a model of `classes` classes."""
    aa = p["whitebox"]["autoattack"]
    return AutoAttack(model, epsilon=p["attack"][p["whitebox"]["attack"]]["epsilon"], version=version, seed=seed,
                      iterations=aa["iterations"], square_queries=aa["square_queries"], device=device,
                      classes=classes)


def cascaded(model, library: AutoAttack, name: str, x, y, robust, bs: int, device, label: str, after,
             ran: dict):
    """Each attack of `library` in turn on the images still robust, a cascade step each ("AutoAttack <name>
    <attack>"); returns the images it left. An attack without a random start that ran before at the same
    budget (in `ran`, by AutoAttack.repeats) on a superset of these images (each step runs on what the
    steps before it left) would make the same examples: its step says so and breaks none."""
    for key, attack_name, attack in library.attacks():
        step = f"AutoAttack {name} {attack_name}"
        same = library.repeats(key)
        if same in ran:
            robust = after(f"white-box {step}: as {ran[same]} (no random start), not run again", robust)
            continue
        robust = after(f"white-box {step}", still_correct(model, attack, x, y, robust, bs, device,
                                                          f"{label} {step}", library.findings))
        if same:
            ran[same] = f"white-box {step}"
    return robust


def rerun(model, x, y, robust, p, device, label, after, sanity, plus: AutoAttack | None, classes: int, ran: dict
          ) -> tuple[torch.Tensor, list[AutoAttack]]:
    """The white-box number rechecked as a reviewer rechecks it: AutoAttack built again at the configured
    version and budget with a new seed on exactly the images every attack left, again and again (at most
    `whitebox.autoattack.reruns` times; 0: no check) until `whitebox.autoattack.clean_runs` runs in a row
    broke none of them. The plus version (its own seed, after every other attack) is the first such run
    where it ran, before those. The `autoattack_rerun` check passes where the last `clean_runs` runs broke
    none (what an independent rebuild at the configured budget would find there is then what each further
    run found: nothing), and fails where they did not: the number is then an upper bound. One clean run is
    thin evidence where a few images fall to one seed in many (the cpu archive's median filter: a run that
    broke none of its 12, then an independent seed one). Each run's breaks count. Returns the robust mask
    and the reruns."""
    aa, bs = p["whitebox"]["autoattack"], p["whitebox"]["batch_size"]
    version = aa["version"]
    clean = aa["clean_runs"]
    what = (f"AutoAttack at the configured budget built again with a new seed on the images every attack left, up "
            f"to {aa['reruns']} times after the plus run (where it ran, the first reseeded run), until {clean} "
            f"run(s) in a row break none: pass where the last {clean} broke none")
    runs = []  # per run: its seed, the images it ran on, how many it broke
    if plus is not None:
        runs.append({"run": "plus", "seed": p["seed"] + 1, "left": sanity["autoattack_plus"]["left"],
                     "broken": sanity["autoattack_plus"]["broken"]})
    why = ("AutoAttack not run" if aa["version"] == "none" else "no rerun set (whitebox.autoattack.reruns 0)"
           if not aa["reruns"] else "no image left" if not robust.any() and not runs else None)
    if why is not None:
        sanity["autoattack_rerun"] = {"verdict": "n/a", "what": what, "why": why, "runs": []}
        return robust, []
    reruns = []

    def settled() -> bool:  # the last `clean` runs broke none
        return len(runs) >= clean and not any(r["broken"] for r in runs[-clean:])

    for k in range(1, aa["reruns"] + 1):
        if settled() or not robust.any():
            break
        library = built(model, p, version, p["seed"] + 1 + k, device, classes)
        before = robust
        robust = cascaded(model, library, f"rerun {k} (seed {library.seed})", x, y, robust, bs, device, label,
                          after, ran)
        reruns.append(library)
        runs.append({"run": f"rerun {k}", "seed": library.seed, "left": int(before.sum()),
                     "broken": int((before & ~robust).sum())})
    last = runs[-1]
    verdict = "n/a" if not robust.any() else "pass" if settled() else "FAIL"
    said = ", ".join(f"{r['run']} (seed {r['seed']}) broke {r['broken']} of {r['left']}" for r in runs)
    why = {"n/a": f"no image left to recheck: {said}",
           "pass": f"the last {clean} run(s) broke none: {said}",
           "FAIL": f"not {clean} run(s) in a row broke none: {said}; the white-box number is an upper bound"}[verdict]
    sanity["autoattack_rerun"] = {"verdict": verdict, "what": what, "why": why, "runs": runs,
                                  "last_broken": last["broken"]}
    return robust, reruns


def robustness_curve(model, x, y, clean, p: dict, batch_size: int, device, gen, defence: str,
                     whitebox: torch.Tensor) -> tuple[dict[float, torch.Tensor], int]:
    """White-box robust images at each epsilon under the cascade's attack (`whitebox.attack`, PGD), on the
    first `robustness.test_size` images. An image broken at a smaller epsilon is broken at every larger one
    (its adversarial example lies in the larger ball too), so each run attacks the rest; from the table's
    epsilon (that attack's) on, only the images the table's attacks so far (`whitebox`) left. Returns
    {epsilon: robust mask} and the image count."""
    cfg, ref = p["robustness"], p["whitebox"]["attack"]
    table_eps = p["attack"][ref]["epsilon"]
    n = len(y) if cfg["test_size"] is None else min(cfg["test_size"], len(y))
    robust = clean[:n].clone()
    masks = {}
    for i, eps in enumerate(sorted(cfg["epsilons"])):
        if math.isclose(eps, table_eps):
            robust = robust & whitebox[:n]
        if eps > 0:
            attack = gen(50 + i)(evaluating(ref, model, p, epsilon=eps, steps=cfg["steps"],
                                            step_size=cfg["relative_step"] * eps))
            robust = still_correct(model, attack, x[:n], y[:n], robust, batch_size, device,
                                   f"{defence} {attacks.declared(ref).label} at eps {eps}")
        masks[table_eps if math.isclose(eps, table_eps) else eps] = robust
    return masks, n


def curve_summary(cfg: dict, label: str, table_eps: float, masks: dict[float, torch.Tensor], n: int,
                  final: torch.Tensor) -> dict:
    """The curve from its masks, once every attack has run: at the table's epsilon and above, an image the
    table's attacks broke counts as broken (so the curve there is the table's number on its images)."""
    accuracy, intervals = [], []
    for eps in sorted(masks):
        mask = masks[eps] & final[:n] if eps >= table_eps or math.isclose(eps, table_eps) else masks[eps]
        accuracy.append(share(mask))
        intervals.append(summary(mask)["interval_95"])
    return {"attack": f"white-box {label}, {cfg['steps']} steps of {cfg['relative_step']} x epsilon (best iterate); "
                      f"at epsilon {table_eps} and above with every attack of the table",
            "test_images": n, "epsilon": sorted(masks), "accuracy": accuracy, "interval_95": intervals}


def sanity_checks(model, x, y, predictions, correct, robust, p, gen, device, label, after, classes: int,
                  same_threat=False,
                  reference_clean=None):
    """The checks a reviewer runs against a robustness claim, each {verdict: pass | FAIL | n/a, what, and
    the figures that decided it}. Paired checks compare attacks on the same images and count the images
    the stronger one newly breaks (`accuracy.nested`); a check whose premise does not hold is "n/a".

    The costly ones run on the first `sanity.test_size` images. The convergence check's stronger PGD
    breaks images too: they count in the white-box number (returned with the checks)."""
    cfg, bs = p["sanity"], p["whitebox"]["batch_size"]
    ref = attacks.declared(p["whitebox"]["attack"])
    tol = cfg["tolerance"]
    m = len(y) if cfg["test_size"] is None else min(cfg["test_size"], len(y))
    xs, ys, clean = x[:m], y[:m], correct["clean"][:m]
    checks = {}
    deg = degenerate(predictions, classes, cfg["degenerate_share"])
    checks["not_degenerate"] = {"verdict": "FAIL" if deg["degenerate"] else "pass", **deg,
                                "why": f"class {deg['majority_class']} for {deg['majority_share']:.1%} of the clean "
                                       "test images",
                                "what": f"no class predicted for more than {cfg['degenerate_share']:.0%} of the clean "
                                        "test images"}
    what = (f"clean accuracy with the defence is at most {cfg['clean_loss']} below the target's alone on the same "
            "images")
    if reference_clean is None:
        checks["keeps_clean_accuracy"] = {"verdict": "n/a", "what": what, "why": "no defence: the target itself"}
    else:
        kept, target = summary(correct["clean"]), summary(reference_clean)
        lost = target["accuracy"] - kept["accuracy"]
        checks["keeps_clean_accuracy"] = {
            "verdict": "FAIL" if lost > cfg["clean_loss"] else "pass", "lost": round(lost, 6), "what": what,
            "why": f"{kept['correct']} of {kept['images']} clean images right with the defence, "
                   f"{target['correct']} without", "defended": kept, "target": target}

    eps = cfg["unbounded_epsilon"]
    steps = p["robustness"]["steps"]
    unbounded = summary(still_correct(model, gen(90)(evaluating(ref.name, model, p, epsilon=eps, steps=steps,
                                                                step_size=eps / 4, random_start=True)),
                                      xs, ys, clean, bs, device, f"{label} sanity: {ref.label} at eps {eps}"))
    checks["unbounded_budget"] = {"verdict": "n/a" if not clean.any() else "pass"
                                  if unbounded["accuracy"] <= cfg["unbounded_max_accuracy"] else "FAIL",
                                  "why": "no image is classified right clean" if not clean.any() else
                                  f"{unbounded['correct']} of {unbounded['images']} images left",
                                  "what": f"accuracy under {ref.label} at epsilon {eps} (any image) is at most "
                                          f"{cfg['unbounded_max_accuracy']}", "accuracy": unbounded}

    step = p["whitebox"]["step_sizes"][0]
    alone = still_correct(model, gen(91)(evaluating(ref.name, model, p, step_size=step)), xs, ys, clean, bs, device,
                          f"{label} sanity: {ref.label} alone")
    stronger = alone
    for r in range(cfg["restarts"]):
        attack = evaluating(ref.name, model, p, step_size=step, steps=2 * p["attack"][ref.name]["steps"],
                            random_start=True)
        stronger = still_correct(model, gen(92 + r)(attack), xs, ys, stronger, bs, device,
                                 f"{label} sanity: {ref.label} x2 steps, restart {r + 1}")
    checks["converged"] = {
        "what": f"of the images {ref.label} alone left, {ref.label} with twice the steps and {cfg['restarts']} "
                "random restarts "
                f"breaks at most {rule(tol)}",
        **paired(alone, stronger, tol),
        ref.name: summary(alone), "stronger": summary(stronger)}
    if checks["converged"]["left"] == 0:
        checks["converged"]["why"] = f"{ref.label} alone already leaves no image: nothing to converge"
    robust = after(f"white-box {ref.label} of the convergence check (first {m} images)",
                   torch.cat([robust[:m] & stronger, robust[m:]]))
    checks["single_step_not_masked"] = single_step_check(
        {n: correct[attacks.whitebox(n)][:m] for n, a in attacks.ATTACKS.items()
         if not a.iterative and p["attack"][n]["epsilon"] == p["attack"][ref.name]["epsilon"]},
        clean, alone, ref.label, cfg["single_step"]["max_missed"], cfg["single_step"]["min_images"])

    what = (f"of the images white-box {ref.label} (with the convergence check's restarts) left, grey-box "
            f"{ref.label} breaks at most {rule(tol)}")
    if same_threat:
        checks["whitebox_not_above_greybox"] = {"verdict": "n/a", "what": what,
                                                "why": "the grey-box attack is this white-box attack (on the "
                                                       "classifier itself)"}
    else:
        grey = correct[ref.name][:m]
        checks["whitebox_not_above_greybox"] = {"what": what, **paired(stronger, stronger & grey, tol),
                                                "whitebox": summary(stronger), "greybox": summary(grey)}
        if checks["whitebox_not_above_greybox"]["left"] == 0:
            checks["whitebox_not_above_greybox"]["why"] = f"white-box {ref.label} already leaves no image"
    return checks, robust
