"""AutoAttack (Croce & Hein 2020), the authors' own code (`pyautoattack`, pinned in requirements.lock):
APGD-CE, APGD-T (targeted, DLR loss), FAB-T and Square (gradient-free), L-infinity; `plus` adds
APGD-DLR and untargeted FAB, with restarts.

Chosen over ART's AutoAttack because it is the reference implementation RobustBench runs, and each of
its attacks returns, per image, the adversarial example it found at any iterate (APGD keeps its best
point, FAB its smallest successful perturbation, Square every success), not its last iterate.

`attacks()` gives them one by one, configured as the library's `version` sets them, so that the white-box
cascade runs each on the images still robust and reports a line per attack, as the library's
`run_standard_evaluation` runs them (a test compares them, attack by attack, with the library's classes
built fresh at the same budget).

A reduced budget (`iterations`) builds APGD anew: the library computes APGD's step-size schedule (its
checkpoints n_iter_2, n_iter_min, size_decr) from n_iter in the constructor, so setting n_iter afterwards
would keep the schedule of 100 iterations. FAB reads n_iter only as its loop bound; Square, as AutoAttack
builds it (resc_schedule=False), halves p at fixed query counts (10, 50, 200, ... 8,000) whatever its
n_queries, so a smaller budget cuts that schedule short, as the library's own setting of n_queries does.

FAB-T (at its one restart per target class) has no random start: the library starts FAB's first restart at
the image itself, so FAB-T run again at the same budget on the same model makes the same examples whatever
its seed (`repeats`; a test checks it). A later run (plus, a rerun) need not run it again on images it left.

APGD-CE runs on the project's cross-entropy (attacks/loss.py, through the library's hook for a model that
computes its own loss, `OwnLoss`), not the library's float32 F.cross_entropy, whose true-class gradient vanishes
on images right by about 17 logits: the loss FGSM and PGD use. The other attacks need no softmax (APGD-DLR and
APGD-T: the DLR loss on logit differences; FAB: logit differences; Square: the margin loss), so they keep the
library's.

The library's own checks (`checks`: a randomised defence, probabilities instead of logits, a dynamic
model, zero gradients seen by APGD, Square finding more than the gradient attacks) run through the
library too; `findings` collects what each said, per check.
"""
from __future__ import annotations

import logging

import torch

from .loss import cross_entropy_per_image

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")  # the standard version's attacks, in its order
LABELS = {"apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "apgd-t": "APGD-T", "fab": "FAB", "fab-t": "FAB-T",
          "square": "Square (gradient-free)"}
CHECKS = ("randomized", "range_output", "dynamic", "n_classes", "zero_gradients", "square_sr")


class _Findings:
    """A logger for the library's checks: what each check says, under the check's name."""

    def __init__(self):
        self.said: dict[str, list[str]] = {}
        self.ran: set[str] = set()
        self.current = "zero_gradients"  # what APGD reports while it runs

    def now(self, check: str) -> "_Findings":
        self.current = check
        self.ran.add(check)
        return self

    def warning(self, msg, *args):
        self.said.setdefault(self.current, []).append(str(msg) % args if args else str(msg))

    def info(self, *_):
        pass

    def get_state(self) -> dict:  # what a checkpoint keeps of it (checkpoints.Checkpoint.step)
        return {"said": self.said, "ran": sorted(self.ran), "current": self.current}

    def set_state(self, state: dict) -> None:
        self.said = {k: list(v) for k, v in state["said"].items()}
        self.ran, self.current = set(state["ran"]), state["current"]

    debug = info


class OwnLoss:
    """A model as APGD takes one that computes its own loss and gradient (the library's `is_tf_model` hook:
    `predict`, and `get_logits_loss_grad_xent` for its cross-entropy), with the project's cross-entropy
    (attacks/loss.py) in place of the library's float32 F.cross_entropy, whose gradient vanishes on images
    classified right by a margin of about 17 logits (a confident target, a saturating denoiser)."""

    def __init__(self, model):
        self.model = model

    def predict(self, x):
        return self.model(x)

    def get_logits_loss_grad_xent(self, x, y):
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(x)
            loss = cross_entropy_per_image(logits, y)
            (grad,) = torch.autograd.grad(loss.sum(), [x])
        return logits.detach(), loss.detach(), grad.detach()


def own_loss_apgd(apgd, model):
    """The library's APGD built again as `apgd` is (its budget, restarts, schedule, seed) on cross-entropy
    computed by `OwnLoss(model)`."""
    from pyautoattack.autopgd_base import APGDAttack

    return APGDAttack(OwnLoss(model), n_restarts=apgd.n_restarts, n_iter=apgd.n_iter, verbose=False, eps=apgd.eps,
                      norm=apgd.norm, eot_iter=apgd.eot_iter, rho=apgd.thr_decr, seed=apgd.seed, device=apgd.device,
                      use_largereps=apgd.use_largereps, is_tf_model=True, loss="ce", logger=apgd.logger)


class AutoAttack:
    def __init__(self, model, epsilon: float, classes: int, version: str = "standard", seed: int = 0,
                 iterations: int | None = None, square_queries: int | None = None, device="cpu"):
        from pyautoattack import AutoAttack as Reference
        from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

        logging.getLogger("auto-attack").setLevel(logging.WARNING)
        self.model, self.findings = model, _Findings()
        lib = self.library = Reference(model, eps=epsilon, norm="Linf", version=version, seed=seed, device=device)
        lib.verbose = False
        # the targeted attacks aim at each of the top other classes: the library's 9 on ten classes, at most
        # every other class on fewer
        targets = min(lib.apgd_targeted.n_target_classes, classes - 1)
        if iterations is not None:  # a reduced budget (configs/cpu.yaml, smoke); null keeps the version's
            old, old_t = lib.apgd, lib.apgd_targeted
            lib.apgd = APGDAttack(model, n_restarts=old.n_restarts, n_iter=iterations, verbose=False, eps=epsilon,
                                  norm="Linf", eot_iter=old.eot_iter, rho=old.thr_decr, seed=seed, device=device)
            lib.apgd_targeted = APGDAttack_targeted(
                model, n_restarts=old_t.n_restarts, n_iter=iterations, verbose=False, eps=epsilon, norm="Linf",
                eot_iter=old_t.eot_iter, rho=old_t.thr_decr, seed=seed, device=device,
                n_target_classes=targets)
            lib.fab.n_iter = iterations
        lib.apgd_targeted.n_target_classes = lib.fab.n_target_classes = targets
        if square_queries is not None:
            lib.square.n_queries = square_queries
        for a in (lib.apgd, lib.apgd_targeted):
            a.logger = self.findings  # APGD's zero-gradient check reports here
        self.apgd_ce = own_loss_apgd(lib.apgd, model)  # APGD-CE on the project's cross-entropy (and that logger)
        self.seed = seed

    def _run(self, name: str, images, labels):
        lib = self.library
        attack = {"apgd-ce": self.apgd_ce, "apgd-dlr": lib.apgd, "apgd-t": lib.apgd_targeted, "fab": lib.fab,
                  "fab-t": lib.fab, "square": lib.square}[name]
        attack.seed = self.seed  # as the library sets it before each batch
        if name == "apgd-dlr":
            attack.loss = "dlr"
        if name in ("fab", "fab-t"):
            attack.targeted = name == "fab-t"
            if attack.targeted:
                attack.n_restarts = 1
        if name in ("apgd-t", "apgd-dlr"):  # the library checks for zero gradients on the DLR losses only
            self.findings.now("zero_gradients")
        return attack.perturb(images, labels)

    def repeats(self, name: str) -> tuple | None:
        """What alone decides `name`'s adversarial examples where nothing random does (the same tuple from two
        builds on one model: the same examples, image for image, whatever the seed); None for an attack
        with a random start. FAB-T only: it runs one restart per target class (`_run`), and FAB's first
        restart starts at the image."""
        if name != "fab-t":
            return None
        f = self.library.fab
        return name, f.norm, f.n_iter, f.n_target_classes, f.eps, f.alpha_max, f.eta, f.beta

    def attack(self, name: str) -> tuple[str, object]:
        """(label, attack(images, labels, generator=None) -> adversarial images) for one of its attacks."""
        return LABELS.get(name, name), lambda x, y, generator=None: self._run(name, x, y)

    def attacks(self) -> list[tuple[str, str, object]]:
        """(its library name, label, attack) for each attack of the version, in its order."""
        return [(name, *self.attack(name)) for name in self.library.attacks_to_run]

    def preflight(self, images, labels) -> None:
        """The library's checks on the model before its attacks, on one batch (as run_standard_evaluation)."""
        from pyautoattack import checks

        lib, f = self.library, self.findings
        for k in checks.funcs:  # the dynamic check counts calls in a module-level dict it never resets
            checks.funcs[k] = 0
        checks.check_randomized(lib.get_logits, images, labels, logger=f.now("randomized"))
        n_classes = checks.check_range_output(lib.get_logits, images, logger=f.now("range_output"))
        checks.check_dynamic(self.model, images, False, logger=f.now("dynamic"))
        checks.check_n_classes(n_classes, lib.attacks_to_run, lib.apgd_targeted.n_target_classes,
                               lib.fab.n_target_classes, logger=f.now("n_classes"))

    def check_square(self, accuracy: dict[str, float]) -> None:
        """The library's Square check on robust accuracies after each attack ({"clean": .., attack: ..}),
        keyed as the library keys them ("square" the gradient-free one). Call it only where Square attacked
        some image: else the check has nothing to compare and stays "n/a"."""
        from pyautoattack import checks

        checks.check_square_sr(accuracy, logger=self.findings.now("square_sr"))

    def report(self) -> dict[str, dict]:
        """Each library check: {"verdict": "pass" | "FAIL" | "n/a", "said": [its messages]}: "pass" where it ran
        and said nothing, "n/a" where it never ran."""
        f = self.findings
        def said(name):  # the first message, and how often it came (APGD repeats its check every batch)
            msgs = f.said.get(name, [])
            return msgs[:1] + ([f"(said {len(msgs)} times)"] if len(msgs) > 1 else [])

        return {name: {"verdict": "n/a" if name not in f.ran else "FAIL" if f.said.get(name) else "pass",
                       "said": said(name) if name in f.ran else ["not run"]} for name in CHECKS}
