from os import path as osp

import pytest
import torch
import torch.nn.functional as F
import yaml
from basicsr.utils.registry import ARCH_REGISTRY

from lan_basicsr.archs.restormer_arch import Restormer

NETWORKS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'options', '_base_', 'networks')
TINY = dict(dim=8, num_blocks=[1, 1, 1, 2], num_refinement_blocks=1, heads=[1, 2, 2, 4], LayerNorm_type='BiasFree')


def _count(net):
    return sum(p.numel() for p in net.parameters())


def test_sidd_option_block_has_official_size():
    with open(osp.join(NETWORKS, 'restormer_sidd.yml')) as f:
        opt = yaml.safe_load(f)['network_g']
    assert opt['LayerNorm_type'] == 'BiasFree' and opt['bias'] is False
    with torch.device('meta'):
        net = ARCH_REGISTRY.get(opt.pop('type'))(**opt)
    sd = net.state_dict()
    assert _count(net) == 26111668
    assert len(sd) == 406
    # A few official keys and shapes (bias-free convs and LayerNorms; dim 48, 2.66 -> 127 hidden channels).
    assert sd['patch_embed.proj.weight'].shape == (48, 3, 3, 3)
    assert sd['encoder_level1.0.norm1.body.weight'].shape == (48, )
    assert sd['encoder_level1.0.attn.temperature'].shape == (1, 1, 1)
    assert sd['latent.7.ffn.project_in.weight'].shape == (2 * 1021, 384, 1, 1)
    assert sd['decoder_level1.3.ffn.dwconv.weight'].shape == (2 * 255, 1, 3, 3)
    assert sd['refinement.3.attn.qkv_dwconv.weight'].shape == (288, 1, 3, 3)
    assert sd['up2_1.body.0.weight'].shape == (192, 96, 3, 3)
    assert sd['output.weight'].shape == (3, 96, 3, 3)
    assert not any(k.endswith('.bias') for k in sd)


def test_with_bias_layernorm_adds_the_norm_biases():
    with torch.device('meta'):
        net = Restormer()
    sd = net.state_dict()
    assert len(sd) == 406 + 88  # one bias per LayerNorm: 2 per block, 44 blocks
    assert _count(net) == 26111668 + sum(v.numel() for k, v in sd.items() if k.endswith('body.bias'))


@pytest.mark.parametrize('size', [(37, 53), (64, 64), (18, 26), (3, 5), (1, 1)])
def test_forward_backward_any_size(size):
    torch.manual_seed(0)
    net = Restormer(**TINY)
    x = torch.rand(2, 3, *size, requires_grad=True)
    out = net(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert net.patch_embed.proj.weight.grad.abs().sum() > 0


def test_padding_is_bottom_right_reflect_to_multiple_of_8():
    torch.manual_seed(0)
    net = Restormer(**TINY).eval()
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        ours = net(x)
        padded = net(F.pad(x, (0, 3, 0, 3), mode='reflect'))  # 40 x 56: no further padding inside
    assert torch.equal(ours, padded[..., :37, :53])


def test_output_is_body_plus_input():
    net = Restormer(**TINY)
    torch.nn.init.zeros_(net.output.weight)
    x = torch.rand(1, 3, 13, 21)
    assert torch.equal(net(x), x)


def test_activation_checkpointing_gives_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = Restormer(**TINY)
    ckpt = Restormer(**TINY, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 20, 27)
    results = []
    for net in (plain, ckpt):
        inp = x.clone().requires_grad_()
        out = net(inp)
        out.square().sum().backward()
        results.append((out.detach(), inp.grad, net.encoder_level1[0].attn.qkv.weight.grad))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_unknown_layernorm_type():
    with pytest.raises(ValueError, match='LayerNorm_type'):
        Restormer(LayerNorm_type='Bias_Free')
