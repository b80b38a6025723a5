"""The defence interface, and the baselines training on tiny data."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import h5py
import pandas as pd
import pytest
import torch
import yaml

from featdefense import locations
from featdefense.defences import DEFENCES, declaration
from featdefense.targets.lenet import LeNet
from featdefense.stages import attack, train_target
from featdefense.defended import defended_model, load_defence
from featdefense.training import load_module, load_split

from . import fixtures
from .conftest import PAPER, ROOT, sh

RUN = {"seed": 0, "device": "cpu", "threads": 1}


def test_the_paper_rows_and_the_example_are_registered_in_report_order():
    assert list(DEFENCES) == ["unsecured", "madry", "hgd", "ours", "median_filter"]
    assert [d.paper_key for d in DEFENCES.values()][:4] == ["unsecured", "madry", "hgd", "ours"]


def test_the_stage_graph_and_params_load_without_torch():
    """What Snakemake imports each time it starts, in every job: no torch (about 1.2 s a start)."""
    code = ("import sys; from featdefense import params, pipeline, runs; params.schema(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


ODD = 'from . import Defence\nDEFENCE = Defence(name="odd", label="odd", kind="preprocessor", build=lambda c: None{})\n'


@pytest.mark.parametrize("source, complaint", [
    (ODD.format(", schema=make_schema()"), "line 2: DEFENCE's schema must be written as a literal"),
    (ODD.format(", train=lambda p, inp, out, dataset: None"), "line 2: DEFENCE's train must name a function"),
    (ODD.format(", module='elsewhere.py'"), "line 2: DEFENCE's module is filled in by discovery"),
    (ODD.format("").replace("DEFENCE =", "DEFENCE = OTHER ="), "DEFENCE must be bound once, at the module's top"),
    ("if True:\n    " + ODD.format("").replace("\n", "\n    ", 1), "line 3: DEFENCE must be bound once"),
    (ODD.format("") + "DEFENCE = None\n", "line 3: DEFENCE must be bound once"),
])
def test_a_declaration_the_graph_cannot_read_is_refused_by_name(tmp_path, source, complaint):
    path = tmp_path / "odd.py"
    path.write_text(source)
    with pytest.raises(ValueError, match=complaint) as refused:
        declaration(path, "featdefense.defences.odd")
    assert str(path) in str(refused.value)


def test_a_declaration_means_what_its_names_meant_where_it_was_written(tmp_path):
    path = tmp_path / "odd.py"
    path.write_text("from . import Defence\nORDER: int = 10\nLABEL = 'odd'\n"
                    "DEFENCE: Defence = Defence(name='odd', label=LABEL, kind='preprocessor', build=lambda c: None, "
                    "order=ORDER)\nORDER = 99\nLABEL = str(1)\n")
    d = declaration(path, "featdefense.defences.odd")
    assert (d.order, d.label) == (10, "odd")
    path.write_text("from . import Defence\nORDER = 10\nORDER = int('7')\n" + ODD.format(", order=ORDER"))
    with pytest.raises(ValueError, match="DEFENCE's order must be written as a literal"):
        declaration(path, "featdefense.defences.odd")


# a classifier (madry) is a network of the target's architecture, loaded from its model file (tiny_inputs below)
@pytest.mark.parametrize("name", [n for n, d in DEFENCES.items() if d.kind == "preprocessor"])
def test_every_preprocessor_builds_an_image_to_image_module_from_its_params(name):
    d = DEFENCES[name]
    torch.manual_seed(0)
    module = d.build(d.params_of(PAPER), (1, 28, 28)).eval()
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    model = defended_model(d, module, LeNet())
    out = module(x)
    assert out.shape == x.shape and torch.isfinite(out).all()  # HGD's image is unclipped (defences.hgd)
    # white-box attacks need a gradient through defence and classifier
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    assert grad.abs().sum() > 0


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    """A prepared tiny MNIST, a target trained on it, and FGSM/PGD examples: what baselines train from."""
    from featdefense.stages import download, prepare

    tmp = tmp_path_factory.mktemp("tiny")
    fixtures.write_mnist(tmp / "src")
    locations.write({"mnist": str(tmp / "src")}, tmp / locations.LOCAL_FILE)
    with contextlib.chdir(tmp):
        download.run({"download": {"mnist": {"checksums": fixtures.md5s(tmp / "src")}}}, {}, {"raw": tmp / "raw"},
                     "mnist")
    paths = {"raw": tmp / "raw", "prepared": tmp / "prepared.h5", "target": tmp / "target.pt",
             "fgsm": tmp / "fgsm.h5", "pgd": tmp / "pgd.h5"}
    prepare.run({}, {"raw": paths["raw"]}, {"prepared": paths["prepared"]}, "mnist")
    train_target.run({**RUN, "target": {"architecture": "lenet", "epochs": 4, "batch_size": 32, "lr": 0.001}}, {"prepared": paths["prepared"]},
                     {"target": paths["target"], "metrics": tmp / "t.json", "log": tmp / "t.csv"}, "mnist")
    for name in ("fgsm", "pgd"):
        spec = {"fgsm": {"epsilon": 0.2},
                "pgd": {"epsilon": 0.2, "steps": 5, "step_size": 0.1, "random_start": True}}[name]
        attack.run({**RUN, "attack": {"train_size": None, "test_size": None, "test_sample_seed": 1, "batch_size": 100,
                                      name: spec}},
                   {"prepared": paths["prepared"], "target": paths["target"]}, {"adversarial": paths[name]},
                   "mnist", name)
    return paths


def train(name, cfg, inputs, tmp_path):
    d = DEFENCES[name]
    p = {**RUN, "defences": {name: {**d.params_of(PAPER), **cfg}}}
    out = {"model": tmp_path / f"{name}.pt", "log": tmp_path / f"{name}.csv"}
    d.train(p, {k: str(inputs[k]) for k in d.train_inputs}, out, "mnist")
    module, meta = load_defence(d, p, out["model"], "cpu", (1, 28, 28))
    return module, meta, pd.read_csv(out["log"])


def test_madry_trains_on_tiny_data(tiny_inputs, tmp_path):
    model, meta, log = train("madry", {"epochs": 3, "steps": 3, "step_size": 0.1, "batch_size": 32,
                                       "warm_start": False, "ramp_epochs": 0}, tiny_inputs, tmp_path)
    assert list(log["epoch"]) == [1, 2, 3] and meta["train_examples"] == 300
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]  # from random weights, it learns on its own PGD examples
    assert log["adversarial_train_accuracy"].iloc[-1] > log["adversarial_train_accuracy"].iloc[0]
    assert meta["params"]["defences"]["madry"]["steps"] == 3


def test_madry_starts_from_the_clean_target_and_ramps_epsilon(tiny_inputs, tmp_path):
    cold = train("madry", {"epochs": 1, "steps": 3, "step_size": 0.1, "batch_size": 32, "warm_start": False,
                           "ramp_epochs": 0, "lr": 1e-9}, tiny_inputs, tmp_path / "cold")[2]
    warm = train("madry", {"epochs": 3, "steps": 3, "step_size": 0.1, "batch_size": 32, "warm_start": True,
                           "ramp_epochs": 2, "lr": 1e-9}, tiny_inputs, tmp_path / "warm")[2]
    assert list(warm["epsilon"]) == pytest.approx([0.1, 0.2, 0.2])  # eps 0.2 reached at epoch 2, kept after
    # with a learning rate too small to move it, the warm start is the target itself: clean accuracy as high
    target, _ = load_module(tiny_inputs["target"], LeNet(), "cpu")
    x, y = load_split(tiny_inputs["prepared"], "test")
    clean = (target(x).argmax(1) == y).float().mean().item()
    assert warm["clean_test_accuracy"].iloc[0] == pytest.approx(clean) and cold["clean_test_accuracy"].iloc[0] < 0.3


def test_madry_keeps_its_clean_share_of_each_batch_clean_and_trains_with_sgd(tiny_inputs, tmp_path, monkeypatch):
    from featdefense.defences import madry

    attacked = []
    real = madry.PGD.forward

    def counted(self, images, labels, generator=None):
        attacked.append(len(images))
        return real(self, images, labels, generator)

    monkeypatch.setattr(madry.PGD, "forward", counted)
    monkeypatch.setattr(madry.PGD, "__call__", counted)
    cfg = {"epochs": 2, "steps": 2, "step_size": 0.1, "batch_size": 30, "warm_start": False, "ramp_epochs": 0}
    train("madry", {**cfg, "clean_share": 0.5}, tiny_inputs, tmp_path / "half")
    assert sum(attacked) == 2 * 150 and set(attacked) == {15}  # half of each batch of 30, two epochs of 300
    attacked.clear()
    log = train("madry", {**cfg, "clean_share": 1.0, "optimizer": "sgd", "lr": 0.05, "epochs": 3}, tiny_inputs,
                tmp_path / "clean")[2]
    assert attacked == []  # every image clean: plain training, with SGD
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]


def test_hgd_trains_on_tiny_data_with_the_lgd_loss(tiny_inputs, tmp_path):
    model, meta, log = train("hgd", {"epochs": 3, "batch_size": 32}, tiny_inputs, tmp_path)
    assert list(log["epoch"]) == [1, 2, 3] and meta["train_examples"] == 900  # FGSM + PGD of 300 images + those
    assert log["lgd_loss"].iloc[-1] < log["lgd_loss"].iloc[0]
    with h5py.File(tiny_inputs["pgd"]) as f:
        x_adv = torch.from_numpy(f["test"]["x_adv"][()])
    assert model(x_adv).shape == x_adv.shape
    adversarial_only = train("hgd", {"epochs": 1, "batch_size": 32, "train_on": ["pgd"]}, tiny_inputs, tmp_path / "a")
    assert adversarial_only[1]["train_examples"] == 300


@pytest.mark.parametrize("name, owner, built_before", [("hgd", "targets", "load"), ("ours", None, "vgg16_features")])
def test_a_trained_defence_starts_from_its_seeds_first_draws(name, owner, built_before, tiny_inputs, tmp_path,
                                                              monkeypatch):
    """A defence's initial weights are its seed's first draws: what its stage builds as well (HGD's target, the
    denoiser's loss network: each a random init before its weights are loaded) does not move them. The
    denoiser was once initialised after the loss network, so building VGG-16 without its classifier (fewer
    random draws) changed every denoiser result of the same seed."""
    from featdefense.defences import hgd, ours
    from featdefense.pipeline import STAGES
    from featdefense.stages import loss_net

    module = {"hgd": hgd, "ours": ours}[name]
    paths = {**tiny_inputs, "loss_net": tmp_path / "loss_net.pt"}
    needs = STAGES["train_denoiser"].deps if name == "ours" else DEFENCES[name].train_inputs
    inputs = {k: str(paths[k]) for k in needs}
    if name == "ours":
        loss_net.run({**RUN, "loss_net": {**PAPER["loss_net"], "weights": "random"}}, {},
                     {"loss_net": paths["loss_net"]})
        p = {**RUN, "denoiser": {**PAPER["denoiser"], "epochs": 1, "batch_size": 64},
             "feature_loss": PAPER["feature_loss"]}
    else:
        p = {**RUN, "defences": {"hgd": {**DEFENCES["hgd"].params_of(PAPER), "epochs": 1, "batch_size": 64}}}

    def trained(folder):
        out = {"model": tmp_path / folder / "m.pt", "denoiser": tmp_path / folder / "m.pt", "log": tmp_path / folder / "m.csv"}
        module.train(p, inputs, out, "mnist")
        return torch.load(out["model"], weights_only=True)["state_dict"]

    first = trained("as-is")
    owner = getattr(module, owner) if owner else module  # where the stage finds what it builds besides
    original = getattr(owner, built_before)

    def drawing_more(*args, **kwargs):  # the same thing built, with other random draws on the way
        built = original(*args, **kwargs)
        torch.rand(1000)
        return built

    monkeypatch.setattr(owner, built_before, drawing_more)
    second = trained("more-draws")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first), f"{name}'s weights depend on {built_before}'s draws"


def test_hgd_pushed_past_the_pixel_range_is_pulled_back_at_once():
    """The target sees HGD's image unclipped, so a denoiser whose noise pushes every pixel past 1 is pulled back
    by the very next steps. Behind a clip it was not: a plain clip gives no gradient, and one that passes the
    gradient on while the loss sees the clipped image left the loss where it was for as long as the pixels
    stayed past the range (MNIST training froze so, every image class 1, results/cpu-real-checked)."""
    from featdefense.defences.hgd import UNet, lgd_loss

    torch.manual_seed(0)
    target, model = LeNet().eval().requires_grad_(False), UNet(4)
    torch.nn.init.constant_(model.noise.bias, -1.0)  # every pixel of x in [0.5, 1] goes to about 1.5 to 2
    x = 0.5 + 0.5 * torch.rand(8, 1, 28, 28)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(20):
        model.train()
        loss = lgd_loss(target, x, model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            losses.append(float(lgd_loss(target, x, model.eval()(x))))  # what evaluation sees
    assert losses[-1] < 0.9 * losses[0], losses
    assert torch.equal(model.train()(x), model.eval()(x))  # one function: the attacker's is the trained one


def test_hgd_loss_is_the_l1_distance_of_the_target_logits():
    from featdefense.defences.hgd import lgd_loss

    torch.manual_seed(0)
    target = LeNet().eval()
    x, x_d = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    expected = (target(x) - target(x_d)).abs().sum(1).mean()
    assert torch.allclose(lgd_loss(target, x, x_d), expected)
    assert lgd_loss(target, x, x).item() == 0


def test_median_filter_removes_salt_noise_and_keeps_flat_images():
    from featdefense.defences.median_filter import MedianFilter

    flat = torch.full((1, 1, 28, 28), 0.4)
    salted = flat.clone()
    salted[0, 0, 10, 10] = 1.0
    assert torch.equal(MedianFilter(3)(salted), flat)


BLUR = '''"""blur: a 3x3 box blur in front of the target (a test's defence)."""
from torch import nn

from . import Defence

DEFENCE = Defence(name="blur", label="box blur", kind="preprocessor",
                  build=lambda cfg, shape: nn.AvgPool2d(cfg["size"], stride=1, padding=cfg["size"] // 2,
                                                 count_include_pad=False),
                  schema={"type": "object", "additionalProperties": False, "required": ["size"],
                          "properties": {"size": {"enum": [3, 5]}}})
'''


def test_a_new_defence_module_and_params_section_get_every_stage(snakemake_copy):
    project = snakemake_copy
    (project / "src/featdefense/defences/blur.py").write_text(BLUR)
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    missing = sh(project, "featdefense", "params", "check", check=False)
    assert missing.returncode == 2 and "defences: 'blur' is a required property" in missing.stderr

    params["defences"]["blur"] = {"size": 3}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    sh(project, "featdefense", "params", "check")
    stages = yaml.safe_load(sh(project, "featdefense", "dvc-yaml").stdout)["stages"]
    assert "evaluate_blur" in stages and "train_blur" not in stages  # it needs no training
    assert "defences.blur" in stages["evaluate_blur"]["params"]
    assert "data/metrics/${item.dataset}/evaluate_blur.json" in stages["report"]["deps"]
    stale = sh(project, "snakemake", "-n", "all", check=False)  # dvc.yaml must follow the graph first
    assert stale.returncode != 0 and "featdefense dvc-yaml > dvc.yaml" in stale.stdout + stale.stderr
    (project / "dvc.yaml").write_text(sh(project, "featdefense", "dvc-yaml").stdout)
    plan = sh(project, "snakemake", "-n", "all").stdout
    assert "evaluate_blur" in plan and "data/metrics/mnist/evaluate_blur.json" in plan
    # its evaluation runs like any other (here on the tiny data, through its own stage command), alone:
    # what it reads is current
    ran = sh(project, "snakemake", "--cores", "2", "data/metrics/mnist/evaluate_blur.json")
    assert "rule evaluate_blur:" in ran.stderr and "rule attack:" not in ran.stderr
    metrics = json.loads((project / "data/metrics/mnist/evaluate_blur.json").read_text())
    assert metrics["defence"]["label"] == "box blur"
    assert metrics["accuracy"]["whitebox_pgd"] <= metrics["accuracy"]["pgd"]


def test_a_denoiser_learns_from_the_attacks_named_and_with_clean_from_their_clean_images(tiny_inputs):
    from featdefense.training import load_adversarial_train, load_train_examples

    inp = {k: str(v) for k, v in tiny_inputs.items()}
    adv, index = load_adversarial_train({"fgsm": inp["fgsm"], "pgd": inp["pgd"]})
    x, i = load_train_examples(inp, ["fgsm", "pgd"])
    assert torch.equal(x, adv) and (i == index).all()
    images = sorted(set(index.tolist()))
    clean, _ = load_split(inp["prepared"], "train", images)
    x, i = load_train_examples(inp, ["clean", "pgd"])  # PGD's examples, then each clean image once
    assert len(x) == len(adv) // 2 + len(images) and torch.equal(x[-len(images):], clean)
    assert i[-len(images):].tolist() == images
    # clean alone (the autoencoder's ceiling): the clean images the attack files were made from, nothing else
    x, i = load_train_examples(inp, ["clean"])
    assert torch.equal(x, clean) and i.tolist() == images
