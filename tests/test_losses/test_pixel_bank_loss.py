"""PixelBankLoss and its bank: planted duplicates, the window rules, strips, seeding per image, the per-image cache."""
import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from lan_basicsr.losses import pixel_bank_loss
from lan_basicsr.losses.pixel_bank_loss import (PixelBankLoss, bank_mean, bank_values, build_pixel_bank, pick_entries,
                                                sample_bank_entries)


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


class Scale(nn.Module):

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


def test_registered():
    assert LOSS_REGISTRY.get('PixelBankLoss') is PixelBankLoss


def test_planted_duplicates_are_the_first_bank_entries():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 40, 44)
    img[:, :, 21:32, 20:31] = img[:, :, 6:17, 9:20]  # an 11x11 block copied 15 rows down, 11 columns right
    bank = build_pixel_bank(img, bank_size=3, window=31, patch=5, exclude=2)
    assert bank.shape == (1, 3, 40, 44) and bank.dtype == torch.int32  # positions; half the memory of int64
    # every pixel whose 5x5 patch lies inside the original block finds its copy first, and the copy the original
    for r in range(8, 15):
        for c in range(11, 18):
            assert bank[0, 0, r, c] == (r + 15) * 44 + (c + 11)
            assert bank[0, 0, r + 15, c + 11] == r * 44 + c
    assert torch.equal(bank_values(img, bank)[0, 0, :, 8:15, 11:18], img[0, :, 23:30, 22:29])


def test_entries_stay_in_the_window_outside_the_excluded_box_and_inside_the_image():
    img = torch.rand(2, 3, 17, 23)
    bank = build_pixel_bank(img, bank_size=6, window=9, patch=3, exclude=1)
    rows, cols = bank // 23, bank % 23
    r = torch.arange(17).view(1, 1, 17, 1)
    c = torch.arange(23).view(1, 1, 1, 23)
    dist = torch.maximum((rows - r).abs(), (cols - c).abs())
    assert ((dist >= 2) & (dist <= 4)).all() and (bank >= 0).all() and (bank < 17 * 23).all()
    assert all(len(set(bank[b, :, i, j].tolist())) == 6 for b in range(2) for i in range(17) for j in range(23))


def test_include_self_and_strips_and_exclude_centre():
    img = torch.rand(1, 3, 20, 18)
    bank = build_pixel_bank(img, bank_size=4, window=11, patch=5, exclude=2)
    own = build_pixel_bank(img, bank_size=4, window=11, patch=5, exclude=2, include_self=True)
    assert torch.equal(own[:, 0], torch.arange(20 * 18).view(1, 20, 18)) and torch.equal(own[:, 1:], bank)
    strips = build_pixel_bank(img, bank_size=4, window=11, patch=5, exclude=2, chunk=7, max_elements=600)
    assert torch.equal(strips, bank)  # strips of a few rows, few offsets at a time: the same bank
    # the centre pixels are left out of the distance: changing them alone changes no bank
    other = img.clone()
    other[:, :, 5, 5] += 0.5
    assert torch.equal(
        build_pixel_bank(other, bank_size=4, window=11, patch=5, exclude=2)[:, :, 5, 5], bank[:, :, 5, 5])


def test_bank_mean_and_pick_entries_are_gathers():
    img = torch.rand(1, 2, 9, 9)
    bank = build_pixel_bank(img, bank_size=3, window=5, patch=3, exclude=0)
    flat = img.reshape(1, 2, 81)
    expected = torch.stack([flat[0][:, bank[0, k].flatten()].view(2, 9, 9) for k in range(3)]).mean(0)
    assert torch.allclose(bank_mean(img, bank)[0], expected)
    entry = torch.full((1, 1, 9, 9), 2)
    assert torch.equal(pick_entries(img, bank, entry)[0], flat[0][:, bank[0, 2].flatten()].view(2, 9, 9))


def test_draws_are_two_different_entries_seeded_per_image():
    bank = torch.zeros(2, 5, 16, 16, dtype=torch.long)
    a1, a2 = sample_bank_entries(bank, _gens(3, 4))
    b1, b2 = sample_bank_entries(bank, _gens(3, 4))
    assert torch.equal(a1, b1) and torch.equal(a2, b2) and (a1 != a2).all()
    alone = sample_bank_entries(bank[1:], _gens(4))
    assert torch.equal(alone[0], a1[1:]) and torch.equal(alone[1], a2[1:])  # image 1: the same alone or in a batch
    c1, _ = sample_bank_entries(bank, _gens(5, 4))
    assert not torch.equal(c1[0], a1[0])
    counts = torch.bincount(sample_bank_entries(torch.zeros(1, 5, 200, 200, dtype=torch.long), _gens(0))[0].flatten())
    assert ((counts.double() / 40000 - 0.2).abs() < 0.01).all()  # uniform over the 5 entries
    with pytest.raises(ValueError, match='generators'):
        sample_bank_entries(bank, _gens(1))


def _stripes(h=12, w=24):
    """Columns repeat with period 4 and rows are constant: every pixel has exact duplicates 4 and 8 columns away."""
    values = torch.tensor([0.1, 0.7, 0.3, 0.9])
    return values[torch.arange(w) % 4].view(1, 1, 1, w).expand(1, 3, h, w).clone()


def test_loss_on_exact_duplicates():
    img = _stripes()
    loss = PixelBankLoss(bank_size=4, window=9, patch=3, exclude=2)
    out = loss(Scale(1.0), img, generators=_gens(0))
    assert out.loss.item() == 0.0 and torch.equal(out.output, img)  # identical pseudo instances, identity network
    out = loss(Scale(2.0), img, generators=_gens(0))
    assert out.loss.item() == pytest.approx(img.square().mean().item(), rel=1e-6)  # (2x - x)^2
    noisy = PixelBankLoss(bank_size=4, window=9, patch=3, exclude=2, input='noisy')
    assert noisy(
        Scale(2.0), img, generators=_gens(0)).loss.item() == pytest.approx(
            img.square().mean().item(), rel=1e-6)


def test_same_seed_same_loss_and_image_order_does_not_matter():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 16, 16)
    net = nn.Conv2d(3, 3, 3, padding=1)
    loss = PixelBankLoss(bank_size=4, window=7, patch=3, exclude=1)
    a = loss(net, img[1:], generators=_gens(11)).loss
    b = PixelBankLoss(bank_size=4, window=7, patch=3, exclude=1)(net, img[1:], generators=_gens(11)).loss
    c = loss(net, img[1:], generators=_gens(12)).loss
    assert a.item() == b.item() and a.item() != c.item()
    both = PixelBankLoss(bank_size=4, window=7, patch=3, exclude=1)(net, img, generators=_gens(10, 11))
    first = PixelBankLoss(bank_size=4, window=7, patch=3, exclude=1)(net, img[:1], generators=_gens(10)).loss
    assert both.per_image.tolist() == pytest.approx([first.item(), a.item()], rel=1e-5)  # each image as alone
    assert both.loss.item() == pytest.approx((a.item() + first.item()) / 2, rel=1e-5)


def test_bank_built_once_per_image(monkeypatch):
    built = []
    original = pixel_bank_loss.build_pixel_bank

    def counting(img, **kwargs):
        built.append(img.clone())
        return original(img, **kwargs)

    monkeypatch.setattr(pixel_bank_loss, 'build_pixel_bank', counting)
    net = nn.Conv2d(3, 3, 3, padding=1)
    loss = PixelBankLoss(bank_size=4, window=7, patch=3, exclude=1)
    first, second = torch.rand(1, 3, 12, 12), torch.rand(1, 3, 12, 12)
    phi = torch.zeros_like(first)
    for step in range(4):  # a LAN-like adapted input: it changes every step, the bank does not
        loss(net, first + phi, step, 4, generators=_gens(0))
        phi += 0.01
    assert len(built) == 1 and torch.equal(built[0], first)
    loss(net, second, 0, 4, generators=_gens(1))
    loss(net, second, 1, 4, generators=_gens(1))
    assert len(built) == 2
    loss(net, second, 0, 4, generators=_gens(1))  # the same image again (a replay): the cached bank
    assert len(built) == 2
    loss(net, first, 0, 4, generators=_gens(0))
    assert len(built) == 3


def test_gradient_reaches_an_input_offset_and_the_weights():
    net = nn.Conv2d(3, 3, 3, padding=1)
    lq = torch.rand(1, 3, 12, 12)
    phi = torch.zeros_like(lq, requires_grad=True)
    out = PixelBankLoss(bank_size=4, window=7, patch=3, exclude=1)(net, lq + torch.tanh(phi), generators=_gens(0))
    out.loss.backward()
    assert phi.grad.abs().sum() > 0 and net.weight.grad.abs().sum() > 0
    assert not out.output.requires_grad  # the full-image output is the no-grad one


@pytest.mark.parametrize('kwargs,match', [({
    'window': 4
}, 'window'), ({
    'patch': 2
}, 'patch'), ({
    'exclude': 10,
    'window': 9
}, 'exclude'), ({
    'bank_size': 100,
    'window': 9
}, 'bank_size'), ({
    'input': 'clean'
}, 'input')])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PixelBankLoss(**kwargs)
