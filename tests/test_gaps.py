"""The gaps report: its sentences follow from the numbers by its rules, and move when the numbers do."""
import json

import yaml

from featdefense.gaps import (Value, against_paper, ceiling_sentence, relation, robust_value, trains_sentence, trend,
                              write)
from featdefense.stages.report import paper_results


def _v(label, acc, half=0.02):
    return Value(str(label), acc, acc - half, acc + half)


def test_a_trend_counts_only_steps_beyond_the_intervals():
    assert trend([_v(1, .10), _v(3, .20), _v(10, .30)], "e") == "rises with e"
    # one step within the intervals at the end is no shape; two in a row are
    assert trend([_v(1, .10), _v(3, .20), _v(10, .21)], "e") == "rises with e, then shows no difference from 3 to 10"
    assert trend([_v(1, .10), _v(3, .20), _v(10, .21), _v(20, .20)], "e") == "rises with e, then levels off"
    assert trend([_v(1, .30), _v(3, .10)], "e") == "falls with e"
    assert trend([_v(1, .10), _v(3, .12), _v(10, .11)], "e") == "shows no difference beyond its intervals with e"
    assert trend([_v(1, .10), _v(3, .30), _v(10, .10)], "e") == "moves both ways with e"
    assert trend([_v("a", .10), _v("b", .30)], "w") == "rises from a to b"


def test_the_paper_is_within_below_or_above_an_interval():
    assert relation(_v(1, .50), .51) == "within" and relation(_v(1, .50), .60) == "below"
    assert relation(_v(1, .50), .40) == "above"
    assert relation(Value("x", .5), .5 + 1e-9) == "below"  # no interval: only the point
    assert "at every" not in against_paper([_v(1, .1), _v(2, .2)], .9, "e")
    assert against_paper([_v(1, .1), _v(2, .2)], .9, "e") == "stays below the paper's 90.0 in every variant"
    assert against_paper([_v(1, .1), _v(2, .5)], .51, "e") == "reaches the paper's 51.0 (within its 95% interval) at e 2"
    at = against_paper([_v(1, .1), Value("2", .5, .48, .52, 1000)], .51, "e")
    assert at == "reaches the paper's 51.0 (within its 95% interval over 1000 test images) at e 2"
    assert against_paper([_v(1, .1), _v(2, .9)], .5, "e").startswith("crosses the paper's 50.0")


def test_a_training_at_chance_is_said_to_collapse():
    said = trains_sentence("t", [Value("a", .101), Value("b", .45)], 10)
    assert "collapses to chance" in said and "a (10.1)" in said and "trains under b (45.0)" in said
    assert "collapses" not in trains_sentence("t", [Value("b", .16)], 10)


def test_a_ceiling_below_the_paper_puts_it_out_of_reach():
    assert "out of reach of this autoencoder" in ceiling_sentence("c", "fgsm", [_v(100, .80)], .92)
    assert "lies below this ceiling" in ceiling_sentence("c", "fgsm", [_v(100, .99)], .92)
    assert "within its interval" in ceiling_sentence("c", "fgsm", [_v(100, .91)], .92)


def _evaluation(acc: dict, images=1000, degenerate=False):
    from featdefense.accuracy import wilson

    return {"accuracy": acc, "degenerate": degenerate, "data": {"test_images": images},
            "intervals": {k: {"accuracy": a, "interval_95": list(wilson(round(a * images), images))}
                          for k, a in acc.items()}}


def _archive(tmp_path, pgd_at_one_epoch: float):
    archive = tmp_path / "run"
    for ds in ("mnist", "cifar10"):
        d = archive / "metrics" / ds
        d.mkdir(parents=True)
        (d / "target.json").write_text(json.dumps({"clean_test_accuracy": .99, "test_size": 10000}))
        for name in ("unsecured", "madry", "hgd", "ours"):
            (d / f"evaluate_{name}.json").write_text(json.dumps(_evaluation({"clean": .99, "fgsm": .3, "pgd": .02})))
    e = archive / "experiments" / "target-epochs"
    (e / "1").mkdir(parents=True)
    (e / "1" / "evaluate_unsecured.json").write_text(json.dumps(_evaluation({"clean": .98, "fgsm": .3,
                                                                             "pgd": pgd_at_one_epoch})))
    (e / "10").mkdir()  # the run the experiment was made beside: a copy of its file, kept when the run is remade
    (e / "10" / "evaluate_unsecured.json").write_text((archive / "metrics" / "mnist" / "evaluate_unsecured.json")
                                                      .read_text())
    (e / "experiment.yaml").write_text(yaml.safe_dump({
        "title": "Target epochs", "varies": "target.epochs", "measures": "accuracy.{attack}",
        "variants": [{"label": 1, "path": "1/evaluate_unsecured.json"},
                     {"label": 10, "path": "10/evaluate_unsecured.json"}],
        "bears_on": [{"dataset": "mnist", "defence": "unsecured", "attacks": ["pgd"]}]}))
    return archive


def test_the_report_says_what_its_experiments_measured_and_changes_with_them(tmp_path):
    paper = paper_results()
    md = write(_archive(tmp_path, .15), paper).read_text()
    line = next(x for x in md.splitlines() if x.startswith("  - Target epochs"))
    # the paper's 16.1 lies in the 1-epoch interval (15.0: 12.9-17.3), and PGD falls beyond the intervals
    assert "PGD 15.0 (12.9–17.3) (1) → 2.0 (1.3–3.1) (10)" in line, line
    assert "falls with target.epochs" in line and "reaches the paper's 16.1 (within its 95% interval) at target.epochs 1" \
        in line, line
    assert md.count("no experiment yet bears on this number") == 17  # 18 numbers, one with its experiment
    assert "| Table 1 | MNIST | unsecured, grey-box PGD | 16.1 | 2.0 (1.3–3.1) | - | - | above ours | 1 |" in md
    md = write(_archive(tmp_path / "b", .03), paper).read_text()
    line = next(x for x in md.splitlines() if x.startswith("  - Target epochs"))
    assert "shows no difference beyond its intervals" in line and "stays below the paper's 16.1" in line, line
    assert (tmp_path / "b" / "run" / "gaps.csv").read_text().splitlines()[0].startswith("table,dataset,number,paper")


def test_a_sweep_that_names_plot_gets_its_points_drawn_with_the_papers_value(tmp_path):
    import pytest

    from featdefense.gaps import GapsError, experiments, series

    paper = paper_results()
    archive = _archive(tmp_path, .15)
    e = archive / "experiments" / "target-epochs"
    spec = yaml.safe_load((e / "experiment.yaml").read_text())
    (e / "experiment.yaml").write_text(yaml.safe_dump({**spec, "plot": ["pgd", "clean"]}))
    md = write(archive, paper).read_text()
    assert "Figure: `gaps/target-epochs.png` (pgd, clean against target.epochs)." in md
    assert (archive / "gaps" / "target-epochs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = {s["key"]: s for s in series(experiments(archive)[0], paper)}
    # the points are the variants' numbers in the order of their labels; the paper's value where it has one
    assert [(v.label, v.accuracy) for v in drawn["pgd"]["values"]] == [("1", .15), ("10", .02)]
    assert [v.accuracy for v in drawn["clean"]["values"]] == [.98, .99]
    assert drawn["pgd"]["paper"] == paper["rows"][1]["mnist"] / 100 and drawn["clean"]["paper"] == .995
    (e / "experiment.yaml").write_text(yaml.safe_dump({**spec, "plot": ["pgd"], "variants": [
        {"label": "small", "path": "1/evaluate_unsecured.json"}]}))
    with pytest.raises(GapsError, match="plot needs variants whose labels are numbers"):
        write(archive, paper)


def test_a_variant_may_not_name_a_file_of_the_archives_run(tmp_path):
    """Remaking an archive replaces its run's files and keeps its experiments: a variant naming the run's
    metrics would silently become the new run, not the one the experiment was made beside."""
    import pytest

    from featdefense.gaps import GapsError, experiments

    archive = _archive(tmp_path, .15)
    e = archive / "experiments" / "target-epochs"
    spec = yaml.safe_load((e / "experiment.yaml").read_text())
    (archive / "experiments" / "other" / "mnist").mkdir(parents=True)  # another experiment's file: allowed
    (archive / "experiments" / "other" / "mnist" / "evaluate_unsecured.json").write_text("{}")
    spec["variants"].append({"label": 20, "path": "../other/{dataset}/evaluate_unsecured.json"})
    (e / "experiment.yaml").write_text(yaml.safe_dump(spec))
    assert len(experiments(archive)) == 1
    for path in ("../../metrics/mnist/evaluate_unsecured.json", "../../metrics/{dataset}/evaluate_unsecured.json",
                 "../../plots/mnist/target_train.csv"):
        for where in ("variants", "evaluated"):
            (e / "experiment.yaml").write_text(yaml.safe_dump({**spec, where: [*spec.get(where, []),
                                                                                {"label": "run", "path": path}]}))
            with pytest.raises(GapsError, match=r"target-epochs/experiment.yaml: variant 'run' names .*a file of "
                                                 r"the archive's run"):
                experiments(archive)


def test_robust_accuracy_comes_from_the_evaluation_or_its_cascades_first_step():
    line = {"accuracy": 0.593, "correct": 593, "images": 1000, "interval_95": [0.562, 0.623]}
    assert robust_value({"robust": {"pgd": line}}, "pgd") == Value("robust", 0.593, 0.562, 0.623, 1000)
    old = {"attacks": {"whitebox": {"attack": "pgd"}},  # an evaluation that predates `robust`
           "whitebox_pgd_cascade": {"01. clean, grey-box PGD": line, "02. + white-box PGD step 0.1": {}}}
    assert robust_value(old, "pgd").accuracy == 0.593
    assert robust_value(old, "fgsm") is None  # no step says it: not guessed
