import torch

from featdefense.attacks import FGSM, PGD
from featdefense.attacks.pgd import project
from featdefense.models import Target


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
    model = Target()
    x = torch.rand(6, 1, 28, 28) * 0.5 + 0.25  # away from the [0, 1] borders: no clipping
    y = torch.randint(0, 10, (6,))
    adv = FGSM(model, epsilon=0.2)(x, y)
    xg = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(xg), y).backward()
    assert torch.allclose(adv, x + 0.2 * xg.grad.sign(), atol=1e-6)
    moved = (adv - x).abs()
    assert ((moved - 0.2).abs() < 1e-6).float().mean() > 0.5  # most pixels move by the full epsilon


def test_pgd_stays_within_epsilon_and_lowers_accuracy_of_a_trained_model():
    torch.manual_seed(0)
    # a tiny separable problem: class = which half of the image is brighter
    x = torch.rand(200, 1, 28, 28) * 0.3
    y = torch.randint(0, 2, (200,))
    x[y == 0, :, :14] += 0.5
    x[y == 1, :, 14:] += 0.5
    model = Target(num_classes=2)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    clean_acc = (model(x).argmax(1) == y).float().mean()
    gen = torch.Generator().manual_seed(1)
    adv = PGD(model, epsilon=0.3, steps=20, step_size=0.05, random_start=True)(x, y, generator=gen)
    assert (adv - x).abs().max() <= 0.3 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (model(adv).argmax(1) == y).float().mean() < clean_acc - 0.3


def test_pgd_without_random_start_is_deterministic():
    torch.manual_seed(0)
    model = Target()
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    attack = PGD(model, epsilon=0.2, steps=3, step_size=0.1, random_start=False)
    assert torch.equal(attack(x, y), attack(x, y))


def test_whitebox_counts_an_image_as_robust_only_if_every_attack_failed():
    from featdefense.stages.evaluate import whitebox

    torch.manual_seed(0)
    model = Target().eval()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    pgd = {"epsilon": 0.0001, "steps": 1, "random_start": False}  # far too weak to change a prediction
    clean_correct = model(x).argmax(1) == y
    acc, per_step = whitebox(model, x, y, torch.ones(6, dtype=torch.bool), pgd, [0.0001], 4, 0, "cpu")
    assert per_step == {"0.0001": float(clean_correct.float().mean())} and acc == per_step["0.0001"]
    acc, _ = whitebox(model, x, y, torch.zeros(6, dtype=torch.bool), pgd, [0.0001], 4, 0, "cpu")
    assert acc == 0.0  # the grey-box attack already fooled every image
