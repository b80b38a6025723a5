"""What the modules declare of images fits together, or is refused before anything computes: each dataset a run
lists against the target's input shape and classes, each defence against the target's input; the baselines
and AutoAttack take the shape and class count they are given (no 28, 1 or 10 of their own)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from featdefense.attacks.autoattack import AutoAttack
from featdefense.defences import DEFENCES
from featdefense.io import ArtifactError
from featdefense.params import ParamsError, validate
from featdefense.defended import load_defence
from featdefense.targets import TARGETS, Target

from .conftest import PAPER, set_dotted


def _params(**dotted) -> dict:
    import copy

    p = copy.deepcopy(PAPER)
    for key, value in dotted.items():
        set_dotted(p, key.replace("__", "."), value)
    return p


def test_a_target_whose_input_no_dataset_or_defence_fits_is_refused_naming_each_module(monkeypatch):
    wide = Target(name="wide", label="wide", input_shape=(3, 32, 32), classes=10, build=lambda c: nn.Flatten(),
                  module="targets/wide.py")
    monkeypatch.setitem(TARGETS, "wide", wide)
    with pytest.raises(ParamsError) as e:
        validate(_params(target__architecture="wide"))
    said = str(e.value)
    for dataset in PAPER["datasets"]:  # every dataset the run lists: (1, 28, 28)
        assert f"datasets: {dataset} (" in said
    assert "target.architecture: wide (targets/wide.py: input_shape (3, 32, 32), classes 10)" in said
    # the paper's autoencoder takes only its own shape; HGD, the median filter and the rest any
    assert "defence ours (" in said and "takes images of shape (1, 28, 28) (its input_shape)" in said
    assert not [n for n in DEFENCES if n != "ours" and f"defence {n} (" in said]
    assert "allowed: a target of the same shape and at least as many classes" in said

    few = Target(name="few", label="few", input_shape=(1, 28, 28), classes=3, build=lambda c: nn.Flatten())
    monkeypatch.setitem(TARGETS, "few", few)
    with pytest.raises(ParamsError, match=r"10 classes, but target.architecture: few .*classes 3"):
        validate(_params(target__architecture="few"))
    validate(_params())  # what the paper's recipe declares fits


def test_a_defence_loaded_in_front_of_a_target_it_cannot_take_is_refused_naming_it():
    with pytest.raises(ArtifactError) as e:
        load_defence(DEFENCES["ours"], PAPER, None, "cpu", (3, 32, 32))
    assert "defence ours" in str(e.value) and "ours.py" in str(e.value) and "(1, 28, 28)" in str(e.value)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 30, 30), (2, 9, 13)])
def test_hgd_and_the_median_filter_map_any_input_shape_to_itself(shape):
    x = torch.rand(2, *shape)
    for name in ("hgd", "median_filter"):
        module = load_defence(DEFENCES[name], PAPER, None, "cpu", shape)[0]
        assert module(x).shape == x.shape, name


def test_hgd_on_the_papers_input_is_the_network_it_was():
    # the same parameters (names and shapes) as before it took other shapes: its model files still load
    unet = load_defence(DEFENCES["hgd"], PAPER, None, "cpu", (1, 28, 28))[0]
    w = PAPER["defences"]["hgd"]["width"]
    expected = {"noise.weight": (1, w, 1, 1), "noise.bias": (1,)}
    for name, c_in, c_out in [("enc1", 1, w), ("enc2", w, 2 * w), ("bottom", 2 * w, 4 * w), ("dec2", 4 * w, 2 * w),
                              ("dec1", 2 * w, w)]:  # two 3x3 convolutions each
        expected.update({f"{name}.0.weight": (c_out, c_in, 3, 3), f"{name}.0.bias": (c_out,),
                         f"{name}.2.weight": (c_out, c_out, 3, 3), f"{name}.2.bias": (c_out,)})
    for name, c_in, c_out in [("up2", 4 * w, 2 * w), ("up1", 2 * w, w)]:  # 2x2 transposed, stride 2
        expected.update({f"{name}.weight": (c_in, c_out, 2, 2), f"{name}.bias": (c_out,)})
    assert {k: tuple(v.shape) for k, v in unet.state_dict().items()} == expected


class _FiveClasses(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(16, 5)
        torch.manual_seed(0)
        nn.init.normal_(self.linear.weight)

    def forward(self, x):
        return self.linear(x.flatten(1))


def test_autoattack_targets_only_the_classes_a_model_has():
    """On five classes the targeted attacks aim at the four other classes (the library's 9 fail: APGD-T
    indexes a tenth logit, and its n_classes check says so)."""
    model = _FiveClasses().eval()
    x, y = torch.rand(8, 1, 4, 4), torch.arange(8) % 5
    aa = AutoAttack(model, epsilon=0.1, version="standard", iterations=3, square_queries=5, classes=5)
    assert aa.library.apgd_targeted.n_target_classes == aa.library.fab.n_target_classes == 4
    aa.preflight(x, y)
    assert aa.report()["n_classes"]["verdict"] == "pass", aa.report()["n_classes"]
    for _, label, attack in aa.attacks():
        assert attack(x, y).shape == x.shape, label
    ten = AutoAttack(model, epsilon=0.1, version="standard", iterations=3, square_queries=5, classes=10)  # the library's 9
    assert ten.library.apgd_targeted.n_target_classes == 9
