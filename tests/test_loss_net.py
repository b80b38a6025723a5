import pytest
import torch

from featdefense import FeatdefenseError, locations
from featdefense.io import file_digest
from featdefense.models.vgg import vgg16_features
from featdefense.stages import loss_net


def params(**cfg):
    base = {"weights": "random", "sha256": None, "preprocessing": "torchvision"}
    return {"seed": 3, "loss_net": {**base, **cfg}}


def test_random_weights_are_seeded_and_flagged(tmp_path):
    loss_net.run(params(), {}, {"loss_net": tmp_path / "a.pt"})
    loss_net.run(params(), {}, {"loss_net": tmp_path / "b.pt"})
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ("a.pt", "b.pt"))
    assert a["meta"]["random"] is True and "random" in a["meta"]["origin"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


@pytest.mark.parametrize("prefix", ["", "features."])
def test_a_local_file_is_pinned_by_sha256(tmp_path, prefix, monkeypatch):
    torch.manual_seed(7)
    state = {prefix + k: v for k, v in vgg16_features().state_dict().items()}
    torch.save(state, tmp_path / "vgg.pth")
    sha = file_digest(tmp_path / "vgg.pth")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FeatdefenseError, match="loss_net in sources.local.yaml"):  # where is it?
        loss_net.run(params(weights="file", sha256=sha), {}, {"loss_net": tmp_path / "out.pt"})
    locations.write({"loss_net": str(tmp_path / "vgg.pth")})
    loss_net.run(params(weights="file", sha256=sha, preprocessing="caffe"), {}, {"loss_net": tmp_path / "out.pt"})
    saved = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(saved["state_dict"]["0.weight"], state[prefix + "0.weight"])
    assert saved["meta"]["random"] is False and saved["meta"]["preprocessing"] == "caffe"
    assert str(tmp_path) not in str(saved["meta"])  # the same weights elsewhere give the same artifact

    with pytest.raises(FeatdefenseError, match="SHA-256 mismatch"):
        loss_net.run(params(weights="file", sha256="0" * 64), {}, {"loss_net": tmp_path / "bad.pt"})
    assert not (tmp_path / "bad.pt").exists()


def test_failed_imagenet_download_names_the_offline_option(tmp_path, monkeypatch):
    from torchvision.models import VGG16_Weights

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(type(VGG16_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    with pytest.raises(FeatdefenseError, match="loss_net.weights: file"):
        loss_net.run(params(weights="imagenet1k_v1"), {}, {"loss_net": tmp_path / "x.pt"})
    assert not (tmp_path / "x.pt").exists()


def test_the_loss_network_is_torchvisions_vgg16_features_layer_for_layer():
    """Built without the classifier, it is torchvision's vgg16().features: the same modules, key names and shapes
    (a torchvision state dict loads into it), and the same initialisation's statistics."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    theirs = vgg16(weights=None).features
    ours = vgg16_features()
    assert [type(m) for m in ours] == [type(m) for m in theirs]
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    assert not any(m.inplace for m in ours if isinstance(m, torch.nn.ReLU))  # the feature maps are read
    fresh = vgg16_features()
    for a, b in zip(fresh.modules(), theirs.modules()):
        if isinstance(a, torch.nn.Conv2d):  # kaiming normal, fan out: the same spread, zero bias
            assert abs(a.weight.std() / b.weight.std() - 1) < 0.05 and not a.bias.any()
