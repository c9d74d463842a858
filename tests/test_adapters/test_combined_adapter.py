"""OffsetAndWeights: LAN's input offset plus a set of weights, two learning rates, reset per image."""
import pytest
import torch

from lan_basicsr.adapters.combined_adapter import OffsetAndWeights
from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.losses.zsn2n_loss import ZSN2NLoss
from lan_basicsr.models.lan_model import adapt_image, build_adapter
from lan_basicsr.utils.errors import OptionError


def _net(seed=0):
    torch.manual_seed(seed)
    return DnCNN(3, 3, 4, 3, 'R').eval()


def _changed(net, before):
    return [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]


@pytest.mark.parametrize('combined,expected', [
    (None, ['model.4.weight', 'model.4.bias']),
    ({
        'weights': 'FirstLayer'
    }, ['model.0.weight', 'model.0.bias']),
    ({
        'weights': 'LastLayer',
        'layer': 'model.2'
    }, ['model.2.weight', 'model.2.bias']),
    ({
        'weights': 'FullTrainable'
    }, [f'model.{i}.{k}' for i in (0, 2, 4) for k in ('weight', 'bias')]),
])
def test_offset_and_the_chosen_weights_train_and_reset_restores_both(combined, expected):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    adapter = build_adapter(net, {'type': 'OffsetAndWeights', 'combined': combined})
    lq = torch.rand(1, 3, 16, 16)
    result = adapt_image(net, adapter, ZSN2NLoss(), lq, torch.rand(1, 3, 16, 16), steps=2)
    assert result.stopped_at is None and _changed(net, before) == expected
    phi = adapter.offset()
    assert phi.abs().sum() > 0 and torch.equal(result.adapted_input, lq + torch.tanh(phi))
    trainable = adapter.trainable_parameters()
    assert trainable[0] is adapter.phi and len(trainable) == 1 + len(expected)
    weights = {id(p) for p in trainable[1:]}
    assert all(p.requires_grad == (id(p) in weights) for p in net.parameters())
    groups = adapter.optimizer.param_groups  # φ at adapt.lr (LAN's 5e-4), the weights at combined.weights_lr
    assert [g['lr'] for g in groups] == [5e-4, 5e-6] and groups[0]['params'] == [adapter.phi]
    adapter.reset(lq)  # the next image: the reference weights, φ = 0, a fresh optimiser
    assert _changed(net, before) == [] and not adapter.optimizer.state
    assert torch.equal(adapter.offset(), torch.zeros_like(lq)) and torch.equal(adapter.adapted_input(lq), lq)


def test_learning_rates_and_reference_weights(tmp_path):
    net, other = _net(0), _net(1)
    path = tmp_path / 'meta.pth'
    torch.save({'params': other.state_dict()}, path)
    adapter = OffsetAndWeights(net, lr=1e-3, combined={'weights_lr': 2e-5}, init_path=str(path))
    adapter.reset(torch.rand(1, 3, 8, 8))
    assert [g['lr'] for g in adapter.optimizer.param_groups] == [1e-3, 2e-5]
    assert all(torch.equal(v, other.state_dict()[k]) for k, v in net.state_dict().items())
    assert 'OffsetAndWeights' in repr(adapter) and 'LastLayer' in repr(adapter)


@pytest.mark.parametrize('combined,match', [({
    'weight': 'LastLayer'
}, 'weight not understood'), ({
    'weights': 'LAN'
}, 'combined.weights'), ({
    'weights': 'FullTrainable',
    'layer': 'model.0'
}, 'combined.layer'), ({
    'layer': 'model.9'
}, 'model.9'), ({
    'weights_lr': 0
}, 'lr')])
def test_bad_options(combined, match):
    with pytest.raises(OptionError, match=match):
        OffsetAndWeights(_net(), combined=combined)


@pytest.mark.parametrize('weights', ['FullTrainable', 'LastLayer'])
def test_a_batch_adapts_as_one_image_at_a_time(weights):
    from lan_basicsr.models.lan_model import adapt_batch
    torch.manual_seed(1)
    lq, gt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    adapter = OffsetAndWeights(_net(), combined={'weights': weights, 'weights_lr': 1e-3})
    alone = [adapt_image(adapter.net, adapter, ZSN2NLoss(), lq[i:i + 1], gt[i:i + 1], steps=3) for i in range(2)]
    both = adapt_batch(adapter.net, adapter, ZSN2NLoss(), lq, gt, steps=3)
    for a, b in zip(alone, both):
        assert a.psnr == pytest.approx(b.psnr, abs=1e-4) and a.loss == pytest.approx(b.loss, rel=1e-4)
        assert torch.allclose(a.offset, b.offset, atol=1e-6)
    assert a.psnr[0] != a.psnr[-1]  # it did adapt
