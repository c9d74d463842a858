from os import path as osp

import pytest
import torch
import yaml
from basicsr.utils.registry import ARCH_REGISTRY

from lan_basicsr.archs.dncnn_arch import DnCNN

NETWORKS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'options', '_base_', 'networks')


def _count(net):
    return sum(p.numel() for p in net.parameters())


def _network_opt(name):
    with open(osp.join(NETWORKS, name)) as f:
        opt = yaml.safe_load(f)['network_g']
    return opt.pop('type'), opt


def test_registered():
    assert ARCH_REGISTRY.get('DnCNN') is DnCNN


@pytest.mark.parametrize('name, count, keys', [
    ('dncnn_color_blind.yml', 668227, 40),
    ('dncnn_gray.yml', 555137, 34),
    ('dncnn_sidd.yml', 670531, 130),
])
def test_option_blocks_build_official_sizes(name, count, keys):
    arch, opt = _network_opt(name)
    net = ARCH_REGISTRY.get(arch)(**opt)
    assert _count(net) == count
    assert len(net.state_dict()) == keys


def test_kair_key_layout():
    # act_mode R: conv, ReLU, ..., conv -> weights at even indices 0 .. 2(nb-1).
    net = DnCNN(in_nc=3, out_nc=3, nc=8, nb=5, act_mode='R')
    assert list(net.state_dict()) == [f'model.{i}.{p}' for i in range(0, 9, 2) for p in ('weight', 'bias')]
    # act_mode BR: conv, ReLU, then (conv, BN, ReLU) x (nb - 2), then conv.
    net = DnCNN(in_nc=1, out_nc=1, nc=8, nb=4, act_mode='BR')
    bn = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
    expected = ['model.0.weight', 'model.0.bias']
    for i in (2, 5):
        expected += [f'model.{i}.weight', f'model.{i}.bias'] + [f'model.{i + 1}.{p}' for p in bn]
    expected += ['model.8.weight', 'model.8.bias']
    assert list(net.state_dict()) == expected
    assert net.model[3].eps == 1e-4 and net.model[3].momentum == 0.9


@pytest.mark.parametrize('act_mode', ['R', 'BR'])
@pytest.mark.parametrize('size', [(37, 53), (64, 64), (18, 26), (1, 1)])
def test_forward_backward_any_size(act_mode, size):
    torch.manual_seed(0)
    net = DnCNN(in_nc=3, out_nc=3, nc=8, nb=4, act_mode=act_mode).eval()
    x = torch.rand(2, 3, *size, requires_grad=True)
    out = net(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert net.model[0].weight.grad.abs().sum() > 0


def test_output_is_input_minus_predicted_noise():
    net = DnCNN(in_nc=1, out_nc=1, nc=8, nb=3, act_mode='R')
    torch.nn.init.zeros_(net.model[-1].weight)
    torch.nn.init.constant_(net.model[-1].bias, 0.25)
    x = torch.rand(1, 1, 9, 11)
    assert torch.allclose(net(x), x - 0.25)


def test_bad_arguments():
    with pytest.raises(ValueError, match='act_mode'):
        DnCNN(act_mode='CR')
    with pytest.raises(ValueError, match='out_nc'):
        DnCNN(in_nc=3, out_nc=1)
