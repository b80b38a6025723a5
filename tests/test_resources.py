"""What a job asks of a scheduler comes from params.yaml `resources` (and `threads`), per rule, and is no
stage's param: Snakemake passes it to SLURM (workflow/profiles/slurm), and changing it reruns nothing."""
import re

import pytest

from featdefense import runs
from featdefense.params import ParamsError, merge, validate
from featdefense.pipeline import STAGES, STOP_SIGNAL, job_resources, job_threads

from .conftest import PAPER, ROOT, make_project, set_param, sh

CUDA = merge(PAPER, {"device": "cuda"})


def test_a_job_asks_for_what_params_say_and_a_gpu_only_where_its_stage_runs_on_cuda():
    warn = {"slurm_extra": f"--signal={STOP_SIGNAL}@600"}  # SLURM's warning 10 minutes before the limit
    assert job_resources(STAGES["train_denoiser"], CUDA) == {"mem_mb": 16000, "runtime": 720, "gpu": 1, **warn}
    assert job_resources(STAGES["attack"], CUDA) == {"mem_mb": 8000, "runtime": 360, "gpu": 1, **warn}
    assert job_resources(STAGES["download"], CUDA) == {"mem_mb": 8000, "runtime": 120, **warn}  # reads no device
    unwarned = merge(PAPER, {"resources": {"warn_before_limit": None, "stages": {"attack": {"warn_before_limit": 60}}}})
    assert "slurm_extra" not in job_resources(STAGES["download"], unwarned)
    assert job_resources(STAGES["attack"], unwarned)["slurm_extra"] == f"--signal={STOP_SIGNAL}@60"
    for device in ("auto", "cpu"):
        assert "gpu" not in job_resources(STAGES["train_denoiser"], merge(PAPER, {"device": device}))
    no_gpus = merge(CUDA, {"resources": {"stages": {"train_hgd": {"gpus": 0}}}})
    assert "gpu" not in job_resources(STAGES["train_hgd"], no_gpus)
    assert job_threads(STAGES["attack"], PAPER) == PAPER["threads"]
    assert job_threads(STAGES["download"], PAPER) == 1


def test_resources_are_no_stage_param():
    changed = merge(PAPER, {"resources": {"mem_mb": 1, "runtime": 1, "gpus": 4, "warn_before_limit": 5,
                                          "stages": {"attack": {"runtime": 9}}}})
    for stage, w in runs.instances():
        assert runs.state(stage, w, changed, deps=False) == runs.state(stage, w, PAPER, deps=False)


def test_a_stage_name_resources_does_not_know_is_refused():
    with pytest.raises(ParamsError, match=r"resources\.stages: unknown key\(s\) \['train_denoisr'\]"):
        validate(merge(PAPER, {"resources": {"stages": {"train_denoisr": {"runtime": 5}}}}))
    with pytest.raises(ParamsError, match=r"resources\.stages\.attack: unknown key\(s\) \['memory'\]"):
        validate(merge(PAPER, {"resources": {"stages": {"attack": {"memory": 5}}}}))


def dry_run_resources(project) -> dict[str, set[str]]:
    out = sh(project, "snakemake", "-n", "--forceall", "all").stdout
    found = re.findall(r"^rule (\w+):\n(?:[ \t]+.*\n)*?[ \t]+resources: (.*)$", out, flags=re.M)
    return {rule: set(resources.split(", ")) for rule, resources in found}


def test_snakemake_gives_each_rule_its_resources(tmp_path, raw_fixtures):
    project = make_project(tmp_path / "project", raw_fixtures)
    set_param(project, "device", "cuda")
    jobs = dry_run_resources(project)  # the tiny configuration: 1000 MB, 10 minutes, no GPU, warned at 60 s
    assert {"mem_mb=1000", "runtime=10", f"slurm_extra=--signal={STOP_SIGNAL}@60"} <= jobs["train_denoiser"]
    assert not any("gpu" in r for r in jobs["train_denoiser"])
    set_param(project, "resources", {"mem_mb": 1000, "runtime": 10, "gpus": 1, "warn_before_limit": None,
                                      "stages": {"train_denoiser": {"runtime": 99}}})
    jobs = dry_run_resources(project)
    assert {"gpu=1", "runtime=99", "mem_mb=1000"} <= jobs["train_denoiser"]
    assert {"gpu=1", "runtime=10"} <= jobs["attack"]
    assert "runtime=10" in jobs["download"] and not any("gpu" in r for r in jobs["download"])
    assert not any("slurm_extra" in r for r in jobs["download"])  # warn_before_limit: null


def test_the_cpu_configuration_gives_each_stage_room_beyond_its_last_real_run():
    """configs/cpu.yaml and smoke.yaml merge into params.yaml's per-stage resources, so each stage the paper's
    recipe sizes apart must be set again there: no paper-sized memory leaks into them, and each stage's time
    limit in cpu is at least 1.5 times what the stage took in the archive README names (its timings.md)."""
    import yaml

    from .test_readme import archive, results_page

    cpu = merge(PAPER, yaml.safe_load((ROOT / "configs" / "cpu.yaml").read_text()))
    timings = (archive(results_page(), "docs/results.md") / "timings.md").read_text()
    took = {}
    for stage, seconds in re.findall(r"^\| (\w+)(?:@[\w-]+)? \| (\d+) \|$", timings, flags=re.M):
        took[stage] = max(took.get(stage, 0), int(seconds))
    assert {"evaluate_madry", "train_denoiser", "attack"} <= set(took), timings
    for stage, seconds in took.items():
        asked = job_resources(STAGES[stage], cpu)
        assert asked["runtime"] * 60 >= 1.5 * seconds, (stage, asked["runtime"], seconds)
    smoke = merge(PAPER, yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text()))
    for config in (cpu, smoke):
        for stage in STAGES.values():
            assert job_resources(stage, config)["mem_mb"] == config["resources"]["mem_mb"], stage.name
