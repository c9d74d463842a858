"""Nbr2NbrLoss and its sampler: neighbour pairs, uniformity, seeding, Λ schedule, clipping, odd sizes, errors."""
import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from lan_basicsr.losses import NEIGHBOUR_PAIRS, Nbr2NbrLoss, sample_neighbour_pairs, subsample

DIAGONALS = {(0, 3), (3, 0), (1, 2), (2, 1)}


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _position_image(b, c, h, w):
    """Pixel value encodes (channel, row, col): 10000 * channel + 100 * row + col."""
    rows = torch.arange(h).view(h, 1) * 100
    cols = torch.arange(w).view(1, w)
    chans = torch.arange(c).view(c, 1, 1) * 10000
    return (chans + rows + cols).expand(b, c, h, w).double()


def test_pairs_table_is_the_eight_ordered_4_neighbour_pairs():
    assert len(set(NEIGHBOUR_PAIRS)) == 8
    assert all(p != q and (p, q) not in DIAGONALS for p, q in NEIGHBOUR_PAIRS)


def test_pairs_are_the_table_entries_of_each_generator_draw():
    idx1, idx2 = sample_neighbour_pairs(torch.empty(2, 1, 16, 12), _gens(5, 6))
    table = torch.tensor(NEIGHBOUR_PAIRS)
    for k, seed in enumerate((5, 6)):
        draw = torch.randint(8, (8, 6), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(idx1[k], table[draw, 0]) and torch.equal(idx2[k], table[draw, 1])


def test_each_cell_gives_two_distinct_non_diagonal_neighbours():
    img = _position_image(2, 3, 8, 10)
    idx1, idx2 = sample_neighbour_pairs(img, _gens(0, 1))
    assert idx1.shape == idx2.shape == (2, 4, 5)
    sub1, sub2 = subsample(img, idx1), subsample(img, idx2)
    chan1, row1, col1 = sub1 // 10000, sub1 % 10000 // 100, sub1 % 100
    chan2, row2, col2 = sub2 // 10000, sub2 % 10000 // 100, sub2 % 100
    cell_rows = 2 * torch.arange(4).view(4, 1)
    cell_cols = 2 * torch.arange(5).view(1, 5)
    # Both pixels lie in the cell, in the same channel for every channel, and are 4-neighbours (|dr| + |dc| == 1).
    for row, col in ((row1, col1), (row2, col2)):
        assert ((row - cell_rows) // 2 == 0).all() and ((col - cell_cols) // 2 == 0).all()
    assert torch.equal(chan1, torch.arange(3).view(1, 3, 1, 1).expand_as(chan1).double())
    assert torch.equal(chan1, chan2)
    assert ((row1 - row2).abs() + (col1 - col2).abs() == 1).all()
    assert (row1 - row2 == row1[:, :1] - row2[:, :1]).all()  # all channels of a cell use the same pair


def test_subsample_matches_a_per_pixel_reference():
    img = torch.rand(2, 3, 6, 4)
    idx = torch.randint(4, (2, 3, 2))
    expected = torch.empty(2, 3, 3, 2)
    for b in range(2):
        for i in range(3):
            for j in range(2):
                k = idx[b, i, j].item()
                expected[b, :, i, j] = img[b, :, 2 * i + k // 2, 2 * j + k % 2]
    assert torch.equal(subsample(img, idx), expected)


def test_all_eight_pairs_uniform():
    idx1, idx2 = sample_neighbour_pairs(torch.empty(1, 1, 512, 512), _gens(123))
    code = (idx1 * 4 + idx2).flatten()
    freq = torch.bincount(code, minlength=16).double() / code.numel()  # 65536 cells, std of a frequency ~ 0.0013
    for p in range(4):
        for q in range(4):
            expected = 1 / 8 if (p, q) in NEIGHBOUR_PAIRS else 0.0
            assert abs(freq[4 * p + q].item() - expected) < 0.006, (p, q, freq[4 * p + q].item())


def test_same_seed_same_masks_different_seed_different():
    img = torch.empty(1, 3, 32, 32)
    a = sample_neighbour_pairs(img, _gens(7))
    b = sample_neighbour_pairs(img, _gens(7))
    c = sample_neighbour_pairs(img, _gens(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1]))


def test_global_rng_when_no_generators():
    img = torch.empty(2, 1, 16, 16)
    torch.manual_seed(3)
    a = sample_neighbour_pairs(img)
    torch.manual_seed(3)
    b = sample_neighbour_pairs(img)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_per_image_independence_of_batch_composition_and_order():
    imgs = torch.rand(3, 3, 8, 8)
    batch = sample_neighbour_pairs(imgs, _gens(10, 11, 12))
    reordered = sample_neighbour_pairs(imgs[[2, 0]], _gens(12, 10))
    for k, seed in enumerate((10, 11, 12)):
        alone = sample_neighbour_pairs(imgs[k:k + 1], _gens(seed))
        assert torch.equal(batch[0][k:k + 1], alone[0]) and torch.equal(batch[1][k:k + 1], alone[1])
    assert torch.equal(reordered[0][0], batch[0][2]) and torch.equal(reordered[0][1], batch[0][0])
    # The loss of a batch is the mean of the per-image losses (equal sizes), each with its own masks.
    loss_fn = Nbr2NbrLoss()
    both = loss_fn(lambda x: x * x, imgs[:2], 7, 20, _gens(10, 11))
    alone = [loss_fn(lambda x: x * x, imgs[k:k + 1], 7, 20, _gens(s)).loss for k, s in enumerate((10, 11))]
    assert torch.allclose(both.loss, sum(alone) / 2)
    assert both.per_image.shape == (2, ) and torch.allclose(both.per_image, torch.stack(alone))


def test_generator_count_must_match_batch():
    with pytest.raises(ValueError, match='2 generators for a batch of 3'):
        sample_neighbour_pairs(torch.empty(3, 1, 4, 4), _gens(0, 1))


@pytest.mark.parametrize('gamma', [0.1, 2.0])
def test_lambda_schedule_on_constant_image(gamma):
    # y = 0.5 everywhere, f(x) = x + 0.25: every draw gives f(g1 y) = 0.75, g2 y = 0.5, g1 f̄ - g2 f̄ = 0,
    # so L1 = 0.25^2 = 0.0625 and the regulariser mean is also 0.0625: loss = 0.0625 (1 + i / N * gamma).
    y = torch.full((1, 3, 4, 4), 0.5, dtype=torch.float64)
    loss_fn = Nbr2NbrLoss(gamma=gamma)
    for i, n in ((0, 20), (5, 20), (10, 20), (19, 20), (3, 7)):
        loss = loss_fn(lambda x: x + 0.25, y, i, n, _gens(0)).loss
        assert loss.item() == pytest.approx(0.0625 * (1 + i / n * gamma), rel=1e-12)


def test_lambda_decomposition_with_reproduced_masks():
    # A non-pointwise constructed net (3x3 conv) on random data: rebuild L1 and the regulariser from the same masks.
    torch.manual_seed(0)
    net = nn.Conv2d(3, 3, 3, padding=1).double()
    y = torch.rand(2, 3, 6, 6, dtype=torch.float64)
    idx1, idx2 = sample_neighbour_pairs(y, _gens(4, 5))
    with torch.no_grad():
        ref = net(y).clamp(0, 1)
        diff = net(subsample(y, idx1)).clamp(0, 1) - subsample(y, idx2)
        l1 = (diff**2).mean()
        reg = ((diff - (subsample(ref, idx1) - subsample(ref, idx2)))**2).mean()
    assert reg > 0 and l1 > 0
    loss_fn = Nbr2NbrLoss(gamma=0.1)
    for i in (0, 5, 10, 20):
        loss = loss_fn(net, y, i, 20, _gens(4, 5)).loss
        assert loss.item() == pytest.approx(l1.item() + i / 20 * 0.1 * reg.item(), rel=1e-12)


def test_clipping_prediction_and_reference_but_not_target():
    # y = 1.5 (an adapted input may leave [0, 1]), f = identity: f(g1 y) is clipped to 1 and f̄ to 1, target stays 1.5.
    # L1 = (1 - 1.5)^2 = 0.25 (0 if the target were clipped, or the prediction not); regulariser mean = 0.25.
    y = torch.full((1, 1, 4, 4), 1.5, dtype=torch.float64)
    out = Nbr2NbrLoss(gamma=0.1)(nn.Identity(), y, 10, 20, _gens(0))
    assert out.loss.item() == pytest.approx(0.25 * (1 + 0.05), rel=1e-12)
    assert torch.equal(out.output, y)  # full-size, unclipped
    # f(x) = x + 0.75 on y = 0.5: both clipped to 1 -> diff 0.5, exp diff 0 -> 0.25 (1 + Λ).
    out = Nbr2NbrLoss(gamma=0.1)(lambda x: x + 0.75, torch.full((1, 1, 4, 4), 0.5), 20, 20, _gens(0))
    assert out.loss.item() == pytest.approx(0.25 * 1.1)
    assert torch.equal(out.output, torch.full((1, 1, 4, 4), 1.25))


def test_gradients_reach_input_output_is_no_grad():
    y = torch.rand(1, 3, 8, 8, dtype=torch.float64).mul(0.5).add(0.25).requires_grad_()
    out = Nbr2NbrLoss()(lambda x: x * x, y, 10, 20, _gens(0))
    assert not out.output.requires_grad
    out.loss.backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_odd_size_ignores_last_row_and_column():
    y = torch.rand(2, 3, 7, 9, dtype=torch.float64)
    idx1, _ = sample_neighbour_pairs(y, _gens(0, 1))
    assert idx1.shape == (2, 3, 4)
    out = Nbr2NbrLoss()(lambda x: x * x, y, 4, 20, _gens(0, 1))
    assert out.output.shape == y.shape
    cropped = Nbr2NbrLoss()(lambda x: x * x, y[..., :6, :8], 4, 20, _gens(0, 1)).loss
    assert torch.allclose(out.loss, cropped)


@pytest.mark.parametrize('shape', [(1, 3, 1, 1), (1, 3, 1, 8), (1, 3, 8, 1), (0, 3, 4, 4), (1, 0, 4, 4), (3, 4, 4)])
def test_tiny_or_empty_input_raises_with_shape(shape):
    with pytest.raises(ValueError, match=str(tuple(shape)).replace('(', r'\(').replace(')', r'\)')):
        Nbr2NbrLoss()(nn.Identity(), torch.zeros(shape))


def test_bad_schedule_raises():
    with pytest.raises(ValueError, match='total_steps=0'):
        Nbr2NbrLoss()(nn.Identity(), torch.zeros(1, 1, 4, 4), 0, 0)


def test_registered_and_built_from_options():
    loss_fn = LOSS_REGISTRY.get('Nbr2NbrLoss')(gamma=2.0, loss_weight=0.5)
    y = torch.full((1, 1, 4, 4), 0.5, dtype=torch.float64)
    assert loss_fn(lambda x: x + 0.25, y, 10, 20, _gens(0)).loss.item() == pytest.approx(0.5 * 0.0625 * 2.0)
