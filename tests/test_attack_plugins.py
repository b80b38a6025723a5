"""Attacks as plug-ins: a module each, its name written once; the stage graph, the schema, the evaluation and
the report learn the set from the modules."""
from __future__ import annotations

import json

import pytest
import torch

from featdefense import attacks
from featdefense.attacks import ATTACKS, Attack
from featdefense.params import ParamsError, validate

from .conftest import PAPER, set_dotted, sh


def test_the_papers_two_attacks_are_the_modules_and_the_cascade_is_built_on_pgd():
    assert list(ATTACKS) == ["fgsm", "pgd"] and attacks.NAMES == ("fgsm", "pgd")
    assert ATTACKS["pgd"].iterative and not ATTACKS["fgsm"].iterative
    assert PAPER["whitebox"]["attack"] == "pgd"
    assert attacks.accuracy_keys() == ("clean", "fgsm", "pgd", "whitebox_fgsm", "whitebox_pgd")


@pytest.mark.parametrize("name", list(ATTACKS))
def test_an_attack_builds_from_its_section_and_stays_in_its_ball(name):  # its declaration: tests/test_plugins.py
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x, y = torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2])
    adv = attacks.build(name, model, PAPER["attack"][name])(x, y)
    assert type(adv) is torch.Tensor and adv.shape == x.shape and (adv - x).abs().max() <= 0.2 + 1e-6


def test_an_attack_whose_schema_lacks_what_its_kind_needs_is_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"attack bim: schema lacks required \['steps', 'step_size'"):
        Attack(name="bim", label="BIM", build=None, iterative=True,
               schema={"properties": {"epsilon": {}, "random_start": {}}, "required": ["epsilon", "random_start"]})
    with pytest.raises(ValueError, match=r"attack x: schema lacks required \['epsilon'\]"):
        Attack(name="x", label="x", build=None, schema={"properties": {}})


def test_the_cascade_must_be_built_on_an_iterative_attack_module():
    p = set_dotted(json.loads(json.dumps(PAPER)), "whitebox.attack", "fgsm")
    with pytest.raises(ParamsError, match=r"whitebox.attack: 'fgsm' is not allowed; allowed: \['pgd'\]"):
        validate(p)
    p = json.loads(json.dumps(PAPER))
    del p["attack"]["fgsm"]
    with pytest.raises(ParamsError, match="attack: 'fgsm' is a required property"):
        validate(p)


def test_a_stage_of_one_attack_has_that_attacks_module_as_code_and_the_evaluations_every_one():
    from featdefense.pipeline import STAGES

    code = STAGES["attack"].code_paths
    assert "src/featdefense/attacks/{attack}.py" in code
    assert not any(c in code for c in ("src/featdefense/attacks/fgsm.py", "src/featdefense/attacks/pgd.py"))
    for stage in ("evaluate_median_filter", "report"):
        assert {"src/featdefense/attacks/fgsm.py", "src/featdefense/attacks/pgd.py"} <= set(STAGES[stage].code_paths)
        assert {"fgsm", "pgd"} <= set(STAGES[stage].deps)
    # the paper's denoisers and Madry train on the attacks they name, not on every attack module
    assert "src/featdefense/attacks/fgsm.py" not in STAGES["train_madry"].code_paths
    assert set(STAGES["train_denoiser"].deps) == {"prepared", "fgsm", "pgd", "loss_net"}


NOISE = '''"""noise: each pixel moved by +-epsilon at random (a test's attack, weaker than FGSM)."""
import torch

from . import Attack


class Noise:
    def __init__(self, model, epsilon: float = 0.2):
        self.model, self.epsilon = model, epsilon

    def forward(self, images, labels, generator=None):
        sign = torch.randint(0, 2, images.shape, generator=generator, device=images.device).to(images.dtype)
        return (images + self.epsilon * (2 * sign - 1)).clamp(0, 1)

    __call__ = forward


ATTACK = Attack(name="noise", label="noise", build=Noise, order=30,
                schema={"type": "object", "additionalProperties": False, "required": ["epsilon"],
                        "properties": {"epsilon": {"$ref": "#/$defs/epsilon"}}})
'''


def test_a_new_attack_module_and_params_section_run_its_stages_and_no_other(snakemake_copy):
    import yaml

    project = snakemake_copy
    (project / "src/featdefense/attacks/noise.py").write_text(NOISE)
    missing = sh(project, "featdefense", "params", "check", check=False)
    assert missing.returncode == 2 and "attack: 'noise' is a required property" in missing.stderr
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["attack"]["noise"] = {"epsilon": 0.2}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    sh(project, "featdefense", "params", "check")
    (project / "dvc.yaml").write_text(sh(project, "featdefense", "dvc-yaml").stdout)  # its stage instances
    plan = sh(project, "snakemake", "-n", "all").stdout
    assert "attack=noise" in plan and "attack=fgsm" not in plan and "attack=pgd" not in plan, plan
    for rule in ("evaluate_unsecured", "evaluate_madry", "evaluate_median_filter", "report"):
        assert f"rule {rule}:" in plan, rule
    for rule in ("download", "prepare", "train_target", "loss_net", "train_denoiser", "train_madry", "train_hgd"):
        assert f"rule {rule}:" not in plan, rule  # none of them reads the new attack's files or code
    sh(project, "snakemake", "--cores", "2", "data/reports/mnist/table.md")
    m = json.loads((project / "data/metrics/mnist/evaluate_median_filter.json").read_text())
    assert {"noise", "whitebox_noise"} <= set(m["accuracy"]) and m["attacks"]["noise"] == {"epsilon": 0.2}
    assert any(step.endswith("grey-box and white-box noise") for step in m["whitebox_pgd_cascade"])
    assert m["accuracy"]["whitebox_pgd"] <= m["accuracy"]["whitebox_noise"] <= m["accuracy"]["noise"]
    table = (project / "data/reports/mnist/table.md").read_text()
    assert "| noise (grey-box)" in table and "noise eps 0.2" in table


def test_an_attack_module_not_named_after_its_attack_is_refused(tmp_path):
    from featdefense import plugins

    (tmp_path / "bim.py").write_text(NOISE)  # declares "noise": the stage graph would look for attacks/noise.py
    with pytest.raises(ValueError, match=r"declares attack 'noise'; allowed: an attack module named after its "
                                         r"attack, .*/noise.py"):
        plugins.discover(attacks.KIND, tmp_path, "featdefense.attacks", named=True)
    assert list(plugins.discover(attacks.KIND, tmp_path, "featdefense.attacks")) == ["noise"]
