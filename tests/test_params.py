import copy

import pytest
import yaml

from featdefense import cli
from featdefense.params import ParamsError, flat_keys, load, merge, select, validate

from .conftest import PAPER, PAPER_TEXT, ROOT, set_dotted



def with_change(dotted, value):
    return set_dotted(copy.deepcopy(PAPER), dotted, value)


def test_committed_params_are_the_papers_recipe():
    p = validate(copy.deepcopy(PAPER))
    assert p["attack"]["pgd"] == {"epsilon": 0.2, "steps": 100, "step_size": 0.1, "random_start": True}
    assert p["attack"]["fgsm"] == {"epsilon": 0.2}
    assert p["denoiser"] == {"train_on": ["fgsm", "pgd"], "epochs": 100, "batch_size": 128, "lr": 0.001,
                             "weight_decay": 0.00001}
    assert p["feature_loss"] == {"layers": ["relu2_2", "relu3_3", "relu4_3"], "input_size": 16, "pixel": True,
                                 "weighting": "numel"}
    assert p["loss_net"]["weights"] == "imagenet1k_v1"
    assert {k: p["defences"]["madry"][k] for k in ("epsilon", "steps", "step_size")} == {
        "epsilon": 0.2, "steps": 40, "step_size": 0.01}  # MadryLab's MNIST recipe
    assert p["whitebox"]["attack"] == "pgd"  # the cascade is built on the paper's PGD
    assert p["whitebox"]["step_sizes"] == [0.1, 0.01] and p["robustness"]["epsilons"] == [0, 0.05, 0.1, 0.15, 0.2, 0.3]


@pytest.mark.parametrize("dotted, value, words", [
    ("attack.fgsm.epsilon", 0, ["attack.fgsm.epsilon", "0"]),
    ("attack.pgd.epsilon", 1.5, ["attack.pgd.epsilon", "1.5"]),
    ("denoiser.epochs", 0, ["denoiser.epochs", "0"]),
    ("target.epochs", -3, ["target.epochs", "-3"]),
    ("attack.batch_size", 0, ["attack.batch_size"]),
    ("target.batch_size", "128", ["target.batch_size", "'128'"]),
    ("device", "tpu", ["device", "'tpu'", "auto", "cuda"]),
    ("denoiser.train_on", ["fgsm", "cw"], ["denoiser.train_on.1", "'cw'"]),
    ("feature_loss.layers", ["relu9_9"], ["feature_loss.layers.0", "relu2_2"]),
    ("feature_loss.weighting", "l1", ["feature_loss.weighting", "clean_mean_square"]),
    ("download.mnist.checksums", {"x.gz": "nothex"}, ["download.mnist.checksums.x.gz"]),
    ("attack.pgd.step_size", 0.3, ["attack.pgd.step_size", "0.3", "epsilon"]),
    ("loss_net.weights", "file", ["loss_net.sha256", "null"]),
    ("denoiser.epochs", KeyError, ["denoiser", "'epochs' is a required property"]),
    ("defences.madry.step_size", 0.5, ["defences.madry.step_size", "0.5", "epsilon"]),
    ("defences.hgd.train_on", [], ["defences.hgd.train_on"]),
    ("defences.hgd.train_on", ["clean"], ["defences.hgd.train_on", "fgsm", "pgd"]),
    ("defences.median_filter.kernel_size", 4, ["defences.median_filter.kernel_size", "4", "[3, 5]"]),
    ("defences.hgd", KeyError, ["defences", "'hgd' is a required property"]),
    ("robustness.epsilons", [0, 2], ["robustness.epsilons.1", "2"]),
    ("whitebox.autoattack.iterations", 0, ["whitebox.autoattack.iterations", "0"]),
    ("whitebox.autoattack.version", "fast", ["whitebox.autoattack.version", "fast", "standard"]),
    ("sanity.unbounded_max_accuracy", 2, ["sanity.unbounded_max_accuracy", "2"]),
    ("resources.warn_before_limit", 7200, ["resources.warn_before_limit", "7200", "runtime of 120 min"]),
    ("resources.stages", {"attack": {"runtime": 10}},
     ["resources.stages.attack.warn_before_limit", "600", "runtime of 10 min"]),
])
def test_bad_values_are_named_with_what_is_allowed(dotted, value, words):
    with pytest.raises(ParamsError) as err:
        validate(with_change(dotted, value))
    for word in words:
        assert word in str(err.value)


def test_unknown_keys_are_named():
    p = copy.deepcopy(PAPER)
    p["denoiser"]["epoch"] = 3
    with pytest.raises(ParamsError, match=r"denoiser: unknown key\(s\) \['epoch'\]"):
        validate(p)
    p = copy.deepcopy(PAPER)
    p["defences"]["madry"]["epoch"] = 3
    with pytest.raises(ParamsError, match=r"defences.madry: unknown key\(s\) \['epoch'\]"):
        validate(p)
    p = copy.deepcopy(PAPER)
    p["defences"]["jpeg"] = {"quality": 75}  # a section without a defence module
    with pytest.raises(ParamsError, match=r"defences: unknown key\(s\) \['jpeg'\]"):
        validate(p)
    p = copy.deepcopy(PAPER)
    p["datasets"] = ["mnist", "svhn"]  # a dataset without a module
    with pytest.raises(ParamsError, match=r"datasets.1: 'svhn' is not allowed; allowed: \['mnist', 'cifar10', "):
        validate(p)
    p = copy.deepcopy(PAPER)
    del p["download"]["fashion_mnist"]  # a dataset module's section is required, listed or not
    with pytest.raises(ParamsError, match=r"download: 'fashion_mnist' is a required property"):
        validate(p)


def test_where_inputs_lie_is_not_a_param_and_a_bad_sources_file_is_named(tmp_path):
    from featdefense import locations

    for key in ("download.mnist.source", "loss_net.file"):
        with pytest.raises(ParamsError, match="unknown key"):
            validate(with_change(key, "/data/somewhere"))
    sources = tmp_path / "sources.local.yaml"
    assert locations.location("mnist", sources) == locations.CANONICAL["mnist"]  # no file: the canonical host
    locations.write({"mnist": "/data/mnist"}, sources)
    assert locations.location("mnist", sources) == "/data/mnist" and locations.location("loss_net", sources) is None
    for text, words in (("mnist: [1\n", "not valid YAML"), ("svhn: /x\n", "unknown key(s) ['svhn']"),
                        ("mnist: ''\n", "mnist: '' is not allowed"), ("- a list\n", "expected a mapping")):
        sources.write_text(text)
        with pytest.raises(locations.LocationError) as err:
            locations.location("mnist", sources)
        assert "sources.local.yaml" in str(err.value) and words in str(err.value)


def test_malformed_yaml_is_named(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("target: {epochs: [1\n")
    with pytest.raises(ParamsError, match="params.yaml: not valid YAML"):
        load(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="expected a mapping"):
        load(path)


def test_a_stage_sees_exactly_its_declared_params():
    assert select(PAPER, ["seed", "attack.pgd", "attack.test_size"]) == {
        "seed": 0, "attack": {"pgd": PAPER["attack"]["pgd"], "test_size": None}}


@pytest.mark.parametrize("config", ["smoke", "cpu"])
def test_configurations_are_valid_and_set_the_same_keys(config):
    overlay = yaml.safe_load((ROOT / f"configs/{config}.yaml").read_text())
    validate(merge(PAPER, overlay))
    smoke = yaml.safe_load((ROOT / "configs/smoke.yaml").read_text())
    assert set(flat_keys(overlay)) == set(flat_keys(smoke))


@pytest.mark.parametrize("experiment", sorted(p.relative_to(ROOT / "configs/experiments").as_posix()
                                                for p in (ROOT / "configs/experiments").glob("*/*.yaml")))
def test_experiment_overlays_are_valid_on_the_cpu_configuration(experiment):
    cpu, offline = (yaml.safe_load((ROOT / f"configs/{c}.yaml").read_text()) for c in ("cpu", "offline"))
    overlay = yaml.safe_load((ROOT / "configs/experiments" / experiment).read_text())
    validate(merge(merge(merge(PAPER, cpu), offline), overlay))


def test_params_apply_validates_before_writing(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(PAPER_TEXT)
    bad = tmp_path / "bad.yaml"
    bad.write_text("denoiser: {epochs: 0}\n")
    assert cli.main(["--params", str(params), "params", "apply", str(bad)]) == 2
    assert "denoiser.epochs" in capsys.readouterr().err
    assert params.read_text() == PAPER_TEXT
    assert cli.main(["--params", str(params), "params", "apply", str(ROOT / "configs/smoke.yaml")]) == 0
    assert load(params)["denoiser"]["epochs"] == 2
    text = params.read_text()
    assert "the paper's recipe" in text and "# Adam" in text  # comments survive
    assert "sha256: null" in text


def test_a_stage_command_refuses_invalid_params_before_computing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_change("target.epochs", 0)))
    assert cli.main(["run", "train_target", "--dataset", "mnist"]) == 2
    assert "target.epochs" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()
