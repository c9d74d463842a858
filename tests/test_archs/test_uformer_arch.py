from os import path as osp

import pytest
import torch
import torch.nn.functional as F
import yaml
from basicsr.utils.registry import ARCH_REGISTRY

from lan_basicsr.archs.uformer_arch import Uformer, WindowAttention

NETWORKS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'options', '_base_', 'networks')
# Tiny but complete: every level has a shifted block where its resolution allows; windows of 4 -> pad to 64.
TINY = dict(
    img_size=64,
    embed_dim=4,
    depths=[2, 2, 2, 2, 2, 2, 2, 2, 2],
    num_heads=[1, 1, 2, 2, 2, 2, 2, 1, 1],
    win_size=4,
    modulator=True,
    drop_path_rate=0.)


def _count(net):
    return sum(p.numel() for p in net.parameters())


def _sidd_opt():
    with open(osp.join(NETWORKS, 'uformer_b_sidd.yml')) as f:
        return yaml.safe_load(f)['network_g']


def test_sidd_option_block_has_official_size_and_img_size_128():
    opt = _sidd_opt()
    assert opt['img_size'] == 128
    with torch.device('meta'):
        net = ARCH_REGISTRY.get(opt.pop('type'))(**opt)
    sd = net.state_dict()
    assert _count(net) == 50880946
    assert len(sd) == 759
    index_keys = [k for k in sd if k.endswith('relative_position_index')]
    assert len(index_keys) == 40 and len(index_keys) == len(dict(net.named_buffers()))
    assert sd['encoderlayer_0.blocks.0.attn.relative_position_index'].shape == (64, 64)
    assert sd['encoderlayer_0.blocks.0.attn.relative_position_index'].dtype == torch.int64
    assert sd['conv.blocks.1.attn.relative_position_bias_table'].shape == (225, 16)
    assert sd['decoderlayer_0.blocks.0.modulator.weight'].shape == (64, 512)
    assert sum(k.endswith('modulator.weight') for k in sd) == 19  # decoder blocks only
    assert sd['input_proj.proj.0.weight'].shape == (32, 3, 3, 3)
    assert sd['output_proj.proj.0.weight'].shape == (3, 64, 3, 3)
    assert sd['dowsample_3.conv.0.weight'].shape == (512, 256, 4, 4)
    assert sd['upsample_0.deconv.0.weight'].shape == (512, 256, 2, 2)
    assert sd['decoderlayer_3.blocks.0.mlp.dwconv.0.weight'].shape == (256, 1, 3, 3)
    assert sd['decoderlayer_3.blocks.0.attn.qkv.to_kv.weight'].shape == (128, 64)
    # The shift rule at img_size 128: the bottleneck (8x8) neither shifts nor shrinks its 8x8 windows.
    assert [b.shift_size for b in net.conv.blocks] == [0, 0]
    assert [b.shift_size for b in net.encoderlayer_3.blocks] == [0, 4] * 4


def test_relative_position_index_values():
    # Window 2x2, tokens (0,0), (0,1), (1,0), (1,1): index = (dh + 1) * 3 + (dw + 1).
    attn = WindowAttention(dim=4, win_size=(2, 2), num_heads=1)
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(attn.relative_position_index, expected)


def test_img_size_changes_the_function_for_the_same_weights():
    # The shift rule: a block stops shifting when its build-time resolution img_size / 2^level <= win_size.
    cfg = dict(TINY, embed_dim=4, win_size=8)
    torch.manual_seed(0)
    net128 = Uformer(**dict(cfg, img_size=128)).eval()
    net256 = Uformer(**dict(cfg, img_size=256)).eval()
    assert [b.shift_size for b in net128.conv.blocks] == [0, 0]
    assert [b.shift_size for b in net256.conv.blocks] == [0, 4]
    net256.load_state_dict(net128.state_dict(), strict=True)  # identical keys and shapes
    with torch.no_grad():
        for p in net128.conv.parameters():  # make the bottleneck matter
            p.add_(torch.randn_like(p) * 0.5)
        net256.load_state_dict(net128.state_dict(), strict=True)
        x = torch.rand(1, 3, 128, 128)
        diff = (net128(x) - net256(x)).abs().max()
    assert diff > 1e-4


@pytest.mark.parametrize('size', [(37, 53), (64, 64), (18, 26), (1, 1), (70, 30)])
def test_forward_backward_any_size(size):
    torch.manual_seed(0)
    net = Uformer(**TINY)
    x = torch.rand(2, 3, *size, requires_grad=True)
    out = net(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert net.input_proj.proj[0].weight.grad.abs().sum() > 0


def test_padding_is_centred_zero_square_of_multiple_16_win():
    torch.manual_seed(0)
    net = Uformer(**TINY).eval()
    assert net.pad_multiple == 64
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        ours = net(x)
        padded = net(F.pad(x, (5, 6, 13, 14)))  # 64 x 64, x centred as (64 - h) // 2, (64 - w) // 2
    assert torch.equal(ours, padded[..., 13:50, 5:58])


def test_output_is_body_plus_input():
    net = Uformer(**TINY)
    torch.nn.init.zeros_(net.output_proj.proj[0].weight)
    torch.nn.init.zeros_(net.output_proj.proj[0].bias)
    x = torch.rand(1, 3, 13, 21)
    assert torch.equal(net(x), x)


def test_activation_checkpointing_gives_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = Uformer(**TINY)
    ckpt = Uformer(**TINY, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 30, 41)
    results = []
    for net in (plain, ckpt):
        inp = x.clone().requires_grad_()
        out = net(inp)
        out.square().sum().backward()
        results.append((out.detach(), inp.grad, net.encoderlayer_1.blocks[1].attn.relative_position_bias_table.grad))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_unsupported_configurations_fail_clearly():
    with pytest.raises(ValueError, match='token_projection'):
        Uformer(**dict(TINY, token_projection='conv'))
    with pytest.raises(ValueError, match='img_size // 8 >= win_size'):
        Uformer(**dict(TINY, img_size=16))
    with pytest.raises(ValueError, match='9 depths'):
        Uformer(**dict(TINY, depths=[1, 1, 1]))
