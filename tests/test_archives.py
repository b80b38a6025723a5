"""scripts/compare_archives.py: two archived runs accuracy by accuracy, against their intervals."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _archive(root: Path, name: str, correct: dict) -> Path:
    from featdefense.accuracy import wilson

    d = root / name / "metrics" / "mnist"
    d.mkdir(parents=True)
    intervals = {k: {"accuracy": c / 1000, "correct": c, "images": 1000, "interval_95": list(wilson(c, 1000))}
                 for k, c in correct.items()}
    (d / "evaluate_madry.json").write_text(json.dumps({"dataset": "mnist", "defence": {"label": "Madry (2017)"},
                                                       "intervals": intervals}))
    return root / name


def test_only_changed_accuracies_are_listed_and_overlap_is_judged_on_the_intervals(tmp_path):
    keys = ("clean", "fgsm", "pgd", "whitebox_fgsm", "whitebox_pgd")
    old = _archive(tmp_path, "old", dict(zip(keys, (990, 893, 833, 893, 814))))
    new = _archive(tmp_path, "new", dict(zip(keys, (990, 880, 833, 893, 700))))
    out = subprocess.run([sys.executable, str(ROOT / "scripts/compare_archives.py"), str(old), str(new)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    rows = [r for r in out[2:] if r]
    assert len(rows) == 2  # clean, pgd and white-box FGSM did not change
    assert rows[0].startswith("| mnist | Madry (2017) | fgsm | 89.3") and rows[0].endswith("| -1.3 | yes |")
    assert rows[1].startswith("| mnist | Madry (2017) | whitebox pgd | 81.4") and rows[1].endswith("| -11.4 | **no** |")


def test_a_run_archived_again_replaces_its_own_files_and_keeps_what_was_added_beside_them(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("archive_run", ROOT / "scripts" / "archive_run.py")
    archive_run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(archive_run)

    def run(accuracy: float) -> Path:
        r = tmp_path / f"run-{accuracy}"
        (r / "data/metrics/mnist").mkdir(parents=True)
        (r / "data/metrics/mnist/evaluate_madry.json").write_text(json.dumps({"accuracy": accuracy}))
        (r / "logs").mkdir()
        (r / "logs/timings.jsonl").write_text(json.dumps({"stage": "evaluate_madry@mnist", "seconds": 2.0,
                                                          "finished": 10.0, "restored": False, "resumed": 0}) + "\n")
        for f in ("params.yaml", "dvc.lock"):
            (r / f).write_text(f"{f} of {accuracy}\n")
        return r

    results = tmp_path / "results"
    archive_run.main(run(0.8), "a", results)
    (results / "a/experiments/x").mkdir(parents=True)  # added beside the run's files
    (results / "a/experiments/x/experiment.yaml").write_text("title: x\n")
    (results / "a/metrics/mnist/stale.json").write_text("{}")  # a file the next run does not make
    archive_run.main(run(0.9), "a", results)
    assert json.loads((results / "a/metrics/mnist/evaluate_madry.json").read_text()) == {"accuracy": 0.9}
    assert not (results / "a/metrics/mnist/stale.json").exists()
    assert (results / "a/params.yaml").read_text() == "params.yaml of 0.9\n"
    assert (results / "a/experiments/x/experiment.yaml").read_text() == "title: x\n"
    assert "evaluate_madry@mnist | 2 |" in (results / "a/timings.md").read_text()
    assert "resumed" not in (results / "a/timings.md").read_text()
    # a stage resumed from a stopped run's checkpoint is named: its seconds are the resumed run's only
    resumed = run(0.7)
    with open(resumed / "logs/timings.jsonl", "a") as f:
        f.write(json.dumps({"stage": "evaluate_hgd@mnist", "seconds": 3.0, "finished": 20.0, "restored": False,
                            "resumed": 4}) + "\n")
        # later restored from the run records (no time, nothing resumed): the computing run's line stands
        f.write(json.dumps({"stage": "evaluate_hgd@mnist", "seconds": 0.1, "finished": 30.0, "restored": True,
                            "resumed": 0}) + "\n")
    archive_run.main(resumed, "b", results)
    timings = (results / "b/timings.md").read_text()
    assert "resumed from a stopped run's checkpoint" in timings and "evaluate_hgd@mnist (4 piece(s)" in timings
    assert "evaluate_madry@mnist (" not in timings
    assert "| evaluate_hgd@mnist | 3 |" in timings
