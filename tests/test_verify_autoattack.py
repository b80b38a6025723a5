"""scripts/verify_autoattack.py: AutoAttack rebuilt from the library's classes on exactly the images an
evaluation counts as robust, at the configured budget or a larger one (docs/evaluation.md)."""
import json
import subprocess
import sys

from .conftest import ROOT, env_for


def test_the_rebuilt_autoattack_attacks_exactly_the_counted_images_and_counts_what_it_breaks(snakemake_copy):
    project = snakemake_copy
    metrics = project / "data/metrics/mnist/evaluate_median_filter.json"  # a preprocessor: built for the target
    m = json.loads(metrics.read_text())
    counted = list(range(0, 40, 2))  # twenty test images counted as robust, whatever the tiny run found
    m["whitebox_robust_index"] = counted
    metrics.write_text(json.dumps(m))
    out = project / "verify.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts/verify_autoattack.py"), str(project), "mnist",
                          "median_filter", "--iterations", "5", "--restarts", "2", "--queries", "20", "--out", str(out)],
                         capture_output=True, text=True, env=env_for(project), cwd=project)
    assert run.returncode == 0, run.stderr
    [r] = json.loads(out.read_text())
    assert r["counted_robust"] == len(counted) and r["budget"]["iterations"] == 5 and r["budget"]["restarts"] == 2
    assert [a["attack"] for a in r["attacks"]] == ["APGD-CE", "APGD-DLR", "APGD-T", "FAB-T", "Square"]
    lefts = [r["clean_right"]] + [a["left"] for a in r["attacks"]]
    assert lefts == sorted(lefts, reverse=True)
    broken = [i for a in r["attacks"] for i in a["broken_index"]]
    assert len(broken) == len(set(broken)) == r["clean_right"] - lefts[-1] and set(broken) <= set(counted)
    assert r["broken"] == len(counted) - lefts[-1] > 0  # the tiny target falls to AutoAttack: the count is tested
    assert f"broke {r['broken']} of the {len(counted)} images" in run.stdout
