"""AutoAttack (Croce & Hein 2020), the authors' own code (`pyautoattack`, pinned in requirements.lock):
APGD-CE, APGD-T (targeted, DLR loss), FAB-T and Square (gradient-free), L-infinity.

Chosen over ART's AutoAttack because it is the reference implementation RobustBench runs, and each of
its attacks returns, per image, the adversarial example it found at any iterate (APGD keeps its best
point, FAB its smallest successful perturbation, Square every success), not its last iterate.

`attacks()` gives them one by one, configured as the library's `version` sets them, so that the white-box
cascade runs each on the images still robust and reports a line per attack; run in that order with the
same batches they are the library's `run_standard_evaluation` (a test compares the two).
"""
from __future__ import annotations

import logging

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")  # the standard version's attacks, in its order
LABELS = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "fab-t": "FAB-T", "square": "Square (gradient-free)"}


class AutoAttack:
    def __init__(self, model, epsilon: float = 0.3, version: str = "standard", seed: int = 0,
                 iterations: int | None = None, square_queries: int | None = None, device="cpu"):
        from pyautoattack import AutoAttack as Reference

        logging.getLogger("auto-attack").setLevel(logging.WARNING)
        self.library = Reference(model, eps=epsilon, norm="Linf", version=version, seed=seed, device=device)
        self.library.verbose = False
        if iterations is not None:  # a reduced budget (configs/cpu.yaml, smoke); null keeps the version's
            for a in (self.library.apgd, self.library.apgd_targeted, self.library.fab):
                a.n_iter = iterations
        if square_queries is not None:
            self.library.square.n_queries = square_queries
        self.seed = seed

    def _run(self, name: str, images, labels):
        lib = self.library
        attack = {"apgd-ce": lib.apgd, "apgd-dlr": lib.apgd, "apgd-t": lib.apgd_targeted, "fab": lib.fab,
                  "fab-t": lib.fab, "square": lib.square}[name]
        attack.seed = self.seed  # as the library sets it before each batch
        if name in ("apgd-ce", "apgd-dlr"):
            attack.loss = name.split("-")[1]
        if name in ("fab", "fab-t"):
            attack.targeted = name == "fab-t"
            if attack.targeted:
                attack.n_restarts = 1
        return attack.perturb(images, labels)

    def attack(self, name: str) -> tuple[str, object]:
        """(label, attack(images, labels, generator=None) -> adversarial images) for one of its attacks."""
        return LABELS.get(name, name), lambda x, y, generator=None: self._run(name, x, y)

    def attacks(self) -> list[tuple[str, object]]:
        """Each attack of the version, in its order."""
        return [self.attack(name) for name in self.library.attacks_to_run]
