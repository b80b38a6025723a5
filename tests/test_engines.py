"""The stage graph is declared once: dvc.yaml is rendered from it, and Snakemake's rules use it."""
import re
import subprocess
import sys
from pathlib import Path

import yaml

from featdefense.pipeline import STAGES, dvc_yaml

from .conftest import PAPER, ROOT


def test_committed_dvc_yaml_is_rendered_from_the_stage_graph():
    assert (ROOT / "dvc.yaml").read_text() == dvc_yaml(), "run: featdefense dvc-yaml > dvc.yaml"


def test_dvc_stages_name_existing_code_and_params():
    params = PAPER
    for stage in STAGES.values():
        for w in stage.instances():
            for path in stage.code_paths:
                assert (ROOT / path.format(**w)).is_file(), path
            for key in stage.param_keys(**w):
                node = params
                for part in key.split("."):
                    node = node[part]


def test_snakemake_has_one_rule_per_stage_with_the_same_command():
    rules = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--list-rules"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    assert set(rules) == set(STAGES) | {"all"}
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in STAGES.items():
        assert dvc[name]["cmd"] == re.sub(r"\{(\w+)\}", r"${item.\1}", stage.cmd)
