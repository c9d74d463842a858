"""LAN (input offset): only φ is trained, the network is never touched, and every image starts from φ = 0."""
import pytest
import torch

from lan_basicsr.adapters.offset_adapter import LAN
from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.losses.nbr2nbr_loss import Nbr2NbrLoss
from lan_basicsr.losses.zsn2n_loss import ZSN2NLoss
from lan_basicsr.models.lan_model import adapt_image, build_adapter
from lan_basicsr.utils.errors import OptionError


def _net():
    torch.manual_seed(0)
    return DnCNN(3, 3, 4, 3, 'R').eval()


@pytest.mark.parametrize('loss_fn', [ZSN2NLoss(), Nbr2NbrLoss()])
def test_lan_trains_phi_only(loss_fn):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    adapter = build_adapter(net, {'type': 'LAN'})
    assert isinstance(adapter, LAN) and adapter.lr == 5e-4
    lq, gt = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    result = adapt_image(net, adapter, loss_fn, lq, gt, steps=3, generator=torch.Generator().manual_seed(0))
    assert len(result.psnr) == len(result.ssim) == 4 and len(result.loss) == 3 and result.stopped_at is None
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key  # bitwise
    assert all(not p.requires_grad and p.grad is None for p in net.parameters())  # no weight gradient, ever
    phi = adapter.offset()
    assert phi.shape == lq.shape and phi.abs().max() > 0
    torch.testing.assert_close(result.adapted_input, lq + torch.tanh(phi), rtol=0, atol=0)
    optimizer = adapter.optimizer
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]['lr'] == 5e-4
    assert optimizer.param_groups[0]['betas'] == (0.9, 0.999)


def test_reset_starts_each_image_from_zero():
    net = _net()
    adapter = LAN(net)
    lq = torch.rand(1, 3, 8, 12)
    adapt_image(net, adapter, ZSN2NLoss(), lq, steps=2)
    first_optimizer = adapter.optimizer
    adapter.reset(torch.rand(1, 3, 10, 6))
    assert adapter.offset().shape == (1, 3, 10, 6) and torch.count_nonzero(adapter.offset()) == 0
    assert adapter.optimizer is not first_optimizer and not adapter.optimizer.state
    x = torch.rand(1, 3, 10, 6)
    assert torch.equal(adapter.adapted_input(x), x)  # tanh(0) = 0: step 0 is the pretrained prediction


def test_lr_and_optimizer_options():
    net = _net()
    adapter = build_adapter(net, {'type': 'LAN', 'lr': 1e-2, 'optim': {'type': 'SGD', 'momentum': 0.5}})
    optimizer = adapter.reset(torch.rand(1, 3, 4, 4))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]['lr'] == 1e-2
    assert optimizer.param_groups[0]['momentum'] == 0.5
    with pytest.raises(OptionError, match='adapt.optim.type: "Adamm"'):
        build_adapter(net, {'type': 'LAN', 'optim': {'type': 'Adamm'}})
    with pytest.raises(OptionError, match='adapt.optim.lr'):
        build_adapter(net, {'type': 'LAN', 'optim': {'type': 'Adam', 'lr': 1e-3}})
    with pytest.raises(OptionError, match='adapt: layer not understood by adapt.type LAN'):
        build_adapter(net, {'type': 'LAN', 'layer': 'model.0'})
    assert isinstance(build_adapter(net, {'type': 'LAN', 'layer': None, 'init_path': None}), LAN)  # null: unset
    with pytest.raises(OptionError, match='unknown type "Lan"'):
        build_adapter(net, {'type': 'Lan'})


def test_non_finite_loss_keeps_the_last_finite_state():
    net = _net()
    adapter = LAN(net)
    calls = []

    def loss_fn(net, noisy, step, total_steps, generators=None):
        out = ZSN2NLoss()(net, noisy)
        calls.append(step)
        return out._replace(loss=out.loss * float('inf')) if step == 2 else out

    lq, gt = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    result = adapt_image(net, adapter, loss_fn, lq, gt, steps=5)
    # the batch ran on unchecked (steps 0..4, no wait for the device), then the image was replayed reading every step
    assert calls == [0, 1, 2, 3, 4, 0, 1, 2] and result.stopped_at == 2
    assert result.loss[2] == float('inf') and len(result.loss) == 5 and len(result.psnr) == 6
    assert result.psnr[2:] == [result.psnr[2]] * 4
    phi_after_two = adapter.offset().clone()
    with torch.no_grad():
        torch.testing.assert_close(result.output, net(lq + torch.tanh(phi_after_two)), rtol=0, atol=0)


def test_non_finite_gradient_with_a_finite_loss_also_stops():
    net = _net()
    adapter = LAN(net)

    def loss_fn(net, noisy, step, total_steps, generators=None):
        out = ZSN2NLoss()(net, noisy)
        if step == 1:  # sqrt at 0: the value stays finite, its gradient is inf * 0 = NaN
            return out._replace(loss=out.loss + torch.sqrt(0 * noisy.sum()))
        return out

    lq = torch.rand(1, 3, 8, 8)
    result = adapt_image(net, adapter, loss_fn, lq, torch.rand(1, 3, 8, 8), steps=3)
    assert result.stopped_at == 1 and all(map(lambda v: v == v, result.loss[:2]))  # the losses were finite
    assert torch.isfinite(adapter.offset()).all()  # the NaN gradient was never applied
