"""The two engines through a seeded random sequence of what users do (tests/engine_model.py), the truth
checked after every step. ENGINE_MODEL_SEED and ENGINE_MODEL_STEPS replay or lengthen it; the soak with
the costly operations too: python -m tests.engine_model PROJECT STEPS --seed N."""
import os

import pytest

from .conftest import copy_project
from .engine_model import Model

pytestmark = pytest.mark.pipeline


def test_the_engines_keep_one_truth_through_a_random_sequence(built, tmp_path):
    seed = int(os.environ.get("ENGINE_MODEL_SEED", "2026"))
    steps = int(os.environ.get("ENGINE_MODEL_STEPS", "12"))
    print(f"engine model: seed {seed}, {steps} steps")
    model = Model(copy_project(built["snakemake"], tmp_path / "project"), seed, costly=False)
    model.run(steps, seed)
    assert len(model.log) == steps
