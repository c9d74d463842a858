"""ZSN2NLoss: exact values on a hand-made 4x4 image, gradients, registry, odd sizes and input errors."""
import pytest
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from lan_basicsr.losses import SelfSupervisedOutput, ZSN2NLoss, pair_downsample

# y (1x1x4x4) and its 2x2 cells:
#   1 3 | 0 2        D1 = mean of the anti-diagonal (top-right, bottom-left), D2 = mean of the diagonal:
#   5 1 | 4 0        cell (0,0): D1 = (3+5)/2 = 4, D2 = (1+1)/2 = 1;  cell (0,1): D1 = (2+4)/2 = 3, D2 = (0+0)/2 = 0
#   ----+----        cell (1,0): D1 = (0+4)/2 = 2, D2 = (2+6)/2 = 4;  cell (1,1): D1 = (1+3)/2 = 2, D2 = (1+1)/2 = 1
#   2 0 | 1 1
#   4 6 | 3 1        D1 = [[4, 3], [2, 2]], D2 = [[1, 0], [4, 1]]
Y = [[1., 3., 0., 2.], [5., 1., 4., 0.], [2., 0., 1., 1.], [4., 6., 3., 1.]]
D1 = [[4., 3.], [2., 2.]]
D2 = [[1., 0.], [4., 1.]]


def _y(requires_grad=False):
    return torch.tensor([[Y]], dtype=torch.float64, requires_grad=requires_grad)  # 1,1,4,4


class Scale(nn.Module):
    """A fixed 1x1 convolution (no bias) that multiplies every pixel by ``a``."""

    def __init__(self, a):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False).double()
        nn.init.constant_(self.conv.weight, a)

    def forward(self, x):
        return self.conv(x)


def test_pair_downsample_hand_values():
    d1, d2 = pair_downsample(_y())
    assert d1.tolist() == [[D1]] and d2.tolist() == [[D2]]


def test_pair_downsample_channels_and_batch_independent():
    x = torch.rand(2, 3, 6, 8)
    d1, d2 = pair_downsample(x)
    assert torch.allclose(d1, (x[..., 0::2, 1::2] + x[..., 1::2, 0::2]) / 2)
    assert torch.allclose(d2, (x[..., 0::2, 0::2] + x[..., 1::2, 1::2]) / 2)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_pair_downsample_is_the_official_stride2_convolution_bit_for_bit(dtype):
    x = torch.randn(2, 3, 37, 50, dtype=dtype)  # odd height: the last row belongs to no cell
    weight = torch.tensor((((0., .5), (.5, 0.)), ((.5, 0.), (0., .5))), dtype=dtype).unsqueeze(1).repeat(3, 1, 1, 1)
    official = torch.nn.functional.conv2d(x, weight, stride=2, groups=3)
    for img in (x, x.contiguous(memory_format=torch.channels_last)):
        d1, d2 = pair_downsample(img)
        assert torch.equal(d1, official[:, 0::2]) and torch.equal(d2, official[:, 1::2])


def test_identity_network_hand_value():
    # f = identity: L_res = (mse(D1, D2) + mse(D2, D1)) / 2 = mse(D1, D2); L_cons = 0 (f(D y) = D f(y)).
    # D1 - D2 = [3, 3, -2, 1] -> squares 9, 9, 4, 1 -> mean 23 / 4 = 5.75.
    out = ZSN2NLoss()(nn.Identity(), _y())
    assert isinstance(out, SelfSupervisedOutput)
    assert out.loss.item() == 5.75
    assert torch.equal(out.output, _y())


def test_linear_network_hand_value():
    # f(x) = x / 2 (1x1 conv): L_cons = 0 (a pointwise linear f commutes with D).
    # f(D1) - D2 = [2, 1.5, 1, 1] - [1, 0, 4, 1] = [1, 1.5, -3, 0]  -> (1 + 2.25 + 9 + 0) / 4 = 3.0625
    # f(D2) - D1 = [.5, 0, 2, .5] - [4, 3, 2, 2] = [-3.5, -3, 0, -1.5] -> (12.25 + 9 + 0 + 2.25) / 4 = 5.875
    # L_res = (3.0625 + 5.875) / 2 = 4.46875
    out = ZSN2NLoss()(Scale(0.5), _y())
    assert out.loss.item() == 4.46875


def test_nonlinear_network_exercises_consistency_term():
    # f(x) = x^2. f(D1) = [16, 9, 4, 4], f(D2) = [1, 0, 16, 1]; f(y) = y^2 = 1 9 0 4 / 25 1 16 0 / 4 0 1 1 / 16 36 9 1
    # D1 f(y) = [(9+25)/2, (4+16)/2, (0+16)/2, (1+9)/2] = [17, 10, 8, 5]; D2 f(y) = [1, 0, (4+36)/2, 1] = [1, 0, 20, 1]
    # L_res  = ([15, 9, 0, 3]^2 mean = 315/4 = 78.75  +  [-3, -3, 14, -1]^2 mean = 215/4 = 53.75) / 2 = 66.25
    # L_cons = ([-1, -1, -4, -1]^2 mean = 19/4 = 4.75  +  [0, 0, -4, 0]^2 mean = 16/4 = 4) / 2 = 4.375
    out = ZSN2NLoss(loss_weight=2.0)(lambda x: x * x, _y())
    assert out.loss.item() == 2.0 * (66.25 + 4.375)


def test_gradients_reach_input_and_output_keeps_graph():
    y = _y(requires_grad=True)
    out = ZSN2NLoss()(lambda x: x * x, y)
    assert out.output.requires_grad  # nothing detached: the caller detaches to score
    out.loss.backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_gradient_flows_through_targets_and_full_output():
    # Identity net: the loss is mse(D1 y, D2 y); if targets were detached, the gradient would be half of this.
    y = _y(requires_grad=True)
    ZSN2NLoss()(nn.Identity(), y).loss.backward()
    d1, d2 = pair_downsample(_y())
    expected = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    g = 2 * (d1 - d2) / d1.numel()  # d loss / d D1 (and minus that for D2)
    expected[..., 0::2, 1::2] += g / 2
    expected[..., 1::2, 0::2] += g / 2
    expected[..., 0::2, 0::2] -= g / 2
    expected[..., 1::2, 1::2] -= g / 2
    assert torch.allclose(y.grad, expected)


def test_gradient_equals_fully_attached_reference():
    # Square net (consistency term non-zero): the gradient must include the paths through D y targets and f(y).
    def down(x):
        return (x[..., 0::2, 1::2] + x[..., 1::2, 0::2]) / 2, (x[..., 0::2, 0::2] + x[..., 1::2, 1::2]) / 2

    y = _y(requires_grad=True)
    d1, d2 = down(y)
    f1, f2 = d1**2, d2**2
    fd1, fd2 = down(y**2)
    ref = ((f1 - d2)**2).mean() / 2 + ((f2 - d1)**2).mean() / 2 + ((f1 - fd1)**2).mean() / 2 + (
        (f2 - fd2)**2).mean() / 2
    (expected, ) = torch.autograd.grad(ref, y)
    ZSN2NLoss()(lambda x: x * x, y).loss.backward()
    assert torch.allclose(y.grad, expected)


def test_batch_is_mean_of_images():
    y2 = torch.rand(1, 1, 4, 4, dtype=torch.float64)
    loss_fn = ZSN2NLoss()
    both = loss_fn(lambda x: x * x, torch.cat([_y(), y2]))
    alone = [loss_fn(lambda x: x * x, y).loss for y in (_y(), y2)]
    assert torch.allclose(both.loss, (alone[0] + alone[1]) / 2)
    # per_image: each image's own loss, as if alone
    assert both.per_image.shape == (2, ) and torch.allclose(both.per_image, torch.stack(alone))
    assert loss_fn(nn.Identity(), _y()).per_image.tolist() == [5.75]


def test_odd_size_crops_last_row_and_column_for_loss_only():
    y = torch.rand(2, 3, 7, 5, dtype=torch.float64)
    out = ZSN2NLoss()(lambda x: x * x, y)
    assert out.output.shape == y.shape  # full-size output
    cropped = ZSN2NLoss()(lambda x: x * x, y[..., :6, :4]).loss
    assert torch.allclose(out.loss, cropped)


@pytest.mark.parametrize('shape', [(1, 3, 1, 1), (1, 3, 1, 8), (1, 3, 8, 1), (0, 3, 4, 4), (1, 0, 4, 4), (3, 4, 4)])
def test_tiny_or_empty_input_raises_with_shape(shape):
    with pytest.raises(ValueError, match=str(tuple(shape)).replace('(', r'\(').replace(')', r'\)')):
        ZSN2NLoss()(nn.Identity(), torch.zeros(shape))


def test_registered_and_built_from_options():
    loss_fn = LOSS_REGISTRY.get('ZSN2NLoss')(loss_weight=0.5)
    assert loss_fn(nn.Identity(), _y()).loss.item() == 0.5 * 5.75
