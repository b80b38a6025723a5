import torch

from featdefense.attacks.fgsm import FGSM
from featdefense.attacks.pgd import PGD
from featdefense.attacks.pgd import project
from featdefense.targets.lenet import LeNet


def test_projection_stays_in_the_ball_and_the_image_range():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 28, 28)
    far = x + 3 * torch.randn_like(x)
    p = project(far, x, 0.2)
    assert (p - x).abs().max() <= 0.2 + 1e-7
    assert p.min() >= 0 and p.max() <= 1
    assert torch.equal(project(p, x, 0.2), p)  # idempotent
    inside = (x + 0.1 * torch.rand_like(x).sub(0.5)).clamp(0, 1)
    assert torch.equal(project(inside, x, 0.2), inside)  # points already inside are kept


def test_fgsm_is_one_signed_gradient_step_of_epsilon():
    torch.manual_seed(0)
    model = LeNet()
    x = torch.rand(6, 1, 28, 28) * 0.5 + 0.25  # away from the [0, 1] borders: no clipping
    y = torch.randint(0, 10, (6,))
    adv = FGSM(model, epsilon=0.2)(x, y)
    xg = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(xg), y).backward()
    assert torch.allclose(adv, x + 0.2 * xg.grad.sign(), atol=1e-6)
    moved = (adv - x).abs()
    assert ((moved - 0.2).abs() < 1e-6).float().mean() > 0.5  # most pixels move by the full epsilon


def fitted(x: torch.Tensor, y: torch.Tensor, iterations: int) -> LeNet:
    """A two-class LeNet fitted to (x, y) by full-batch Adam."""
    model = LeNet(num_classes=2)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(iterations):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def test_pgd_stays_within_epsilon_and_lowers_accuracy_of_a_trained_model():
    torch.manual_seed(0)
    # a tiny separable problem: class = which half of the image is brighter
    x = torch.rand(200, 1, 28, 28) * 0.3
    y = torch.randint(0, 2, (200,))
    x[y == 0, :, :14] += 0.5
    x[y == 1, :, 14:] += 0.5
    model = fitted(x, y, iterations=30)
    clean_acc = (model(x).argmax(1) == y).float().mean()
    gen = torch.Generator().manual_seed(1)
    adv = PGD(model, epsilon=0.3, steps=20, step_size=0.05, random_start=True)(x, y, generator=gen)
    assert (adv - x).abs().max() <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (model(adv).argmax(1) == y).float().mean() < clean_acc - 0.3


def test_pgd_without_random_start_is_deterministic():
    torch.manual_seed(0)
    model = LeNet()
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    attack = PGD(model, epsilon=0.2, steps=3, step_size=0.1, random_start=False)
    assert torch.equal(attack(x, y), attack(x, y))


def test_the_whitebox_cascade_attacks_only_images_still_robust_and_never_revives_one():
    from featdefense.stages.evaluate import still_correct

    torch.manual_seed(0)
    model = LeNet().eval().requires_grad_(False)
    x = torch.rand(10, 1, 28, 28)
    y = model(x).argmax(1)  # the model is right on every clean image
    attacked = []

    def identity_attack(xb, yb):  # changes nothing: every image it sees stays correct
        attacked.append(len(xb))
        return xb

    robust = torch.tensor([True, False] * 5)
    out = still_correct(model, identity_attack, x, y, robust, 3, "cpu", "test")
    assert sum(attacked) == 5  # only the 5 images still robust were attacked
    assert torch.equal(out, robust)  # an image broken before stays broken
    noise = torch.rand(10, 1, 28, 28)
    out = still_correct(model, lambda xb, yb: noise[: len(xb)], x, y, robust, 10, "cpu", "test")
    assert not (out & ~robust).any()


def test_our_pgd_matches_art_on_the_same_model_and_images():
    """Pins our PGD against an independent implementation (the Adversarial Robustness Toolbox): same
    model, same images, same loss (ours, featdefense.attacks.loss), no random start, same eps/step/steps ->
    the same accuracy within 0.5 points, and the same images."""
    import numpy as np
    from art.attacks.evasion import ProjectedGradientDescent
    from art.estimators.classification import PyTorchClassifier

    torch.manual_seed(0)
    n = 400
    x = torch.rand(n, 1, 28, 28) * 0.4
    y = torch.randint(0, 2, (n,))
    x[y == 0, :, :14] += 0.3 + 0.3 * torch.rand(int((y == 0).sum()), 1, 1, 1)
    x[y == 1, :, 14:] += 0.3 + 0.3 * torch.rand(int((y == 1).sum()), 1, 1, 1)
    model = fitted(x, y, iterations=40)
    model.eval().requires_grad_(False)
    eps, step, steps = 0.2, 0.05, 10
    ours = PGD(model, epsilon=eps, steps=steps, step_size=step, random_start=False)(x, y)
    from featdefense.attacks.loss import cross_entropy

    class Loss(torch.nn.Module):
        def forward(self, logits, labels):
            return cross_entropy(logits, (labels.argmax(1) if labels.dim() == 2 else labels).long())  # ART: one-hot

    classifier = PyTorchClassifier(model=model, loss=Loss(), input_shape=(1, 28, 28),
                                   nb_classes=2, clip_values=(0.0, 1.0))
    art = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=step, max_iter=steps,
                                   num_random_init=0, batch_size=n, verbose=False)
    theirs = torch.from_numpy(art.generate(x.numpy(), y=y.numpy()))
    clean = (model(x).argmax(1) == y).float().mean().item()
    acc_ours = (model(ours).argmax(1) == y).float().mean().item()
    acc_art = (model(theirs).argmax(1) == y).float().mean().item()
    assert clean > 0.9 and 0.05 < acc_ours < clean - 0.1  # the attack bites, but not to zero: a real comparison
    assert abs(acc_ours - acc_art) <= 0.005, (acc_ours, acc_art)
    same = ((ours - theirs).abs().flatten(1).max(1).values < 1e-5).float().mean().item()
    assert same >= 0.99, same  # image for image, not only on average


def test_apgd_stays_in_the_ball_and_breaks_an_undefended_model():
    from featdefense.attacks.apgd import APGD

    torch.manual_seed(0)
    model = LeNet().eval().requires_grad_(False)
    x = torch.rand(50, 1, 28, 28)
    y = model(x).argmax(1)
    adv = APGD(model, epsilon=0.1, steps=10)(x, y)
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (model(adv).argmax(1) == y).float().mean() < 0.5


def test_bpda_predicts_through_the_defence_and_differentiates_through_the_target_only():
    from featdefense.stages.evaluate import bpda_model

    torch.manual_seed(0)
    target = LeNet().eval()
    blackout = torch.nn.Module()
    blackout.forward = lambda x: torch.zeros_like(x)  # a defence with no useful gradient at all
    model = bpda_model(blackout, target)
    x = torch.rand(3, 1, 28, 28, requires_grad=True)
    assert torch.allclose(model(x), target(torch.zeros_like(x)))
    (grad,) = torch.autograd.grad(model(x).logsumexp(1).sum(), x)
    xz = torch.zeros_like(x, requires_grad=True)
    (expected,) = torch.autograd.grad(target(xz).logsumexp(1).sum(), xz)
    assert torch.allclose(grad, expected) and grad.abs().sum() > 0


class _Confident(torch.nn.Module):
    """Two classes: class 0's logit grows with the image's mean brightness m (40 + 10 m), class 1's is 0.
    Every image is class 0 by a margin of 40 or more: float32 cross-entropy is 0 exactly, its true-class
    gradient p_0 - 1 vanishes, and class 1's logit has no gradient, so the whole input gradient is 0."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([40 + 10 * m, torch.zeros_like(m)], dim=1)


def test_a_confident_model_keeps_its_gradient_where_plain_cross_entropy_loses_it():
    from featdefense.attacks.loss import cross_entropy

    model, x = _Confident(), torch.full((4, 1, 28, 28), 0.5)
    y = torch.zeros(4, dtype=torch.long)
    xg = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xg), y), xg)
    assert torch.count_nonzero(plain) == 0  # the premise: F.cross_entropy has no gradient here
    (double,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(xg).double(), y), xg)
    assert torch.count_nonzero(double) == 0  # nor in float64: p_y - 1 cancels at a margin of 45
    (ours,) = torch.autograd.grad(cross_entropy(model(xg), y), xg)
    assert (ours < 0).all()  # darker lowers the true class's margin: the direction that raises the loss
    # FGSM and PGD (and so the attack files, the white-box cascade, the curve, the checks, Madry's training)
    adv = FGSM(model, epsilon=0.2)(x, y)
    assert torch.allclose(adv, x - 0.2)
    adv = PGD(model, epsilon=0.2, steps=3, step_size=0.1, random_start=False)(x, y)
    assert torch.allclose(adv, x - 0.2)


def test_the_attack_loss_is_cross_entropy():
    from featdefense.attacks.loss import cross_entropy

    torch.manual_seed(0)
    logits = 3 * torch.randn(16, 10, requires_grad=True)
    y = torch.randint(0, 10, (16,))
    ours, theirs = cross_entropy(logits, y), torch.nn.functional.cross_entropy(logits, y)
    assert torch.allclose(ours, theirs, rtol=1e-6)
    (g1,) = torch.autograd.grad(ours, logits)
    (g2,) = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), logits)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_the_test_images_are_drawn_apart_from_the_training_seed():
    import copy

    import numpy as np

    from featdefense.stages.attack import sample_seed
    from featdefense.training import subset

    from .conftest import PAPER

    p = copy.deepcopy(PAPER)
    p["attack"].update(train_size=100, test_size=100)
    other = {**p, "seed": p["seed"] + 1}
    drawn = lambda p, split: subset(10000, 100, sample_seed(p, split))  # noqa: E731
    assert np.array_equal(drawn(p, "test"), drawn(other, "test"))  # every training seed: the same test images
    assert not np.array_equal(drawn(p, "train"), drawn(other, "train"))  # its train images are training's
    resampled = copy.deepcopy(p)
    resampled["attack"]["test_sample_seed"] += 1
    assert not np.array_equal(drawn(p, "test"), drawn(resampled, "test"))  # the test sample is its own param
