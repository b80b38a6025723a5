import math

import pytest
import torch

from featdefense.losses import PIXEL, feature_loss_terms, mean_squares, term_names
from featdefense.models.autoencoder import Denoiser
from featdefense.targets.lenet import LeNet
from featdefense.models.vgg import LossNetwork, vgg16_features

PAPER_LAYERS = ["relu2_2", "relu3_3", "relu4_3"]


def test_target_maps_28x28_images_to_10_logits():
    assert LeNet()(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert sum(p.numel() for p in LeNet().parameters()) == (20 * 25 + 20) + (50 * 20 * 25 + 50) + (800 * 500 + 500) + (500 * 10 + 10)


def plain_lenet(target: LeNet) -> torch.nn.Sequential:
    """The paper's network as written (ReLU before pooling, NCHW, autograd's own gradients), same weights."""
    nn = torch.nn
    plain = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Conv2d(20, 50, 5), nn.ReLU(),
                          nn.MaxPool2d(2, 2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
    plain.load_state_dict(target.state_dict())  # the same keys: model files load into either
    return plain


def test_target_computes_the_papers_network_and_its_gradients():
    torch.manual_seed(0)
    target = LeNet()
    plain = plain_lenet(target)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    grads = {}
    for name, net in (("target", target), ("plain", plain)):
        xs = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(net(xs), y)
        loss.backward()
        grads[name] = [xs.grad] + [p.grad for p in net.parameters()]
    torch.testing.assert_close(target(x), plain(x), rtol=1e-5, atol=1e-6)
    for a, b in zip(grads["target"], grads["plain"], strict=True):  # the input's, then every weight's
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert grads["target"][0].abs().sum() > 0


def test_denoiser_keeps_shape_and_range_and_has_a_2x2x8_bottleneck():
    d = Denoiser()
    x = torch.rand(4, 1, 28, 28)
    y = d(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert d.encoder(2 * x - 1).shape == (4, 8, 2, 2)


@pytest.fixture(scope="module")
def loss_net():
    torch.manual_seed(0)
    return LossNetwork(vgg16_features(), PAPER_LAYERS, 16, "torchvision")


def test_loss_network_maps_are_the_papers_sizes_at_16x16(loss_net):
    maps = loss_net(torch.rand(2, 1, 28, 28))
    assert {k: tuple(v.shape[1:]) for k, v in maps.items()} == {
        "relu2_2": (128, 8, 8), "relu3_3": (256, 4, 4), "relu4_3": (512, 2, 2)}
    # the paper's weights are 1/numel of those maps: alpha = 1/(2*2*512), ... delta = 1/(28*28)
    assert [1 / v[0].numel() for v in maps.values()] == [1 / (8 * 8 * 128), 1 / (4 * 4 * 256), 1 / (2 * 2 * 512)]


def test_loss_network_is_frozen(loss_net):
    loss_net.train()
    assert not loss_net.training
    assert not any(p.requires_grad for p in loss_net.parameters())
    x = torch.rand(1, 1, 28, 28, requires_grad=True)
    sum(v.sum() for v in loss_net(x).values()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients still flow to the image


def test_caffe_and_torchvision_preprocessing_differ_in_scale():
    torch.manual_seed(0)
    features = vgg16_features()
    x = torch.full((1, 1, 16, 16), 0.5)
    caffe = LossNetwork(features, ["relu1_1"], 16, "caffe")(x)["relu1_1"]
    tv = LossNetwork(features, ["relu1_1"], 16, "torchvision")(x)["relu1_1"]
    assert caffe.abs().mean() > 10 * tv.abs().mean()


def test_numel_weighting_makes_every_term_a_mean_square():
    clean = {"a": torch.zeros(2, 3, 4, 4), "b": torch.zeros(2, 5, 2, 2)}
    den = {"a": torch.full((2, 3, 4, 4), 2.0), "b": torch.full((2, 5, 2, 2), 3.0)}
    x, xd = torch.zeros(2, 1, 28, 28), torch.full((2, 1, 28, 28), 0.5)
    terms = feature_loss_terms(clean, den, x, xd, scale={})
    assert {k: float(v) for k, v in terms.items()} == {"a": 4.0, "b": 9.0, PIXEL: 0.25}
    # sum of squares times 1/numel of one image's map, averaged over the batch
    assert math.isclose(float(terms["a"]), float(((den["a"] - clean["a"]) ** 2).sum()) / (3 * 4 * 4) / 2)


def test_clean_mean_square_weighting_divides_each_term_by_its_clean_scale():
    clean = {"a": torch.full((2, 3), 10.0)}
    x = torch.full((2, 1, 28, 28), 0.5)
    scale = mean_squares(clean, x)
    assert scale == {"a": 100.0, PIXEL: 0.25}
    terms = feature_loss_terms(clean, {"a": torch.zeros(2, 3)}, x, torch.zeros_like(x), scale)
    assert {k: float(v) for k, v in terms.items()} == {"a": 1.0, PIXEL: 1.0}


def test_term_names_follow_layers_and_pixel_flag():
    assert term_names(PAPER_LAYERS, True) == PAPER_LAYERS + [PIXEL]
    assert term_names([], True) == [PIXEL]
