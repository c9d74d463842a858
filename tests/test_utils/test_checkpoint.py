import pytest
import torch
from torch import nn

from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.archs.restormer_arch import Restormer
from lan_basicsr.archs.uformer_arch import Uformer
from lan_basicsr.utils import CheckpointError, load_network, read_state_dict

TINY_RESTORMER = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2])
TINY_UFORMER = dict(
    img_size=64, embed_dim=4, depths=[1, 2, 1, 1, 2, 1, 1, 2, 1], num_heads=[1, 1, 2, 2, 2, 2, 2, 1, 1], win_size=4)


def _dncnn(**kwargs):
    torch.manual_seed(kwargs.pop('seed', 0))
    return DnCNN(**dict(dict(in_nc=3, out_nc=3, nc=8, nb=4, act_mode='R'), **kwargs))


def _save(obj, tmp_path, name='net.pth'):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize('layout', ['params', 'params_ema', 'state_dict_module', 'bare'])
def test_every_checkpoint_layout_loads_strictly(tmp_path, layout):
    src = _dncnn(seed=1)
    sd = src.state_dict()
    if layout == 'params':
        obj = dict(params=sd)
    elif layout == 'params_ema':
        obj = dict(params_ema=sd)
    elif layout == 'state_dict_module':  # Uformer's official layout, saved from a DataParallel model
        optimizer = dict(state={}, param_groups=[dict(lr=2e-4, params=[0, 1])])
        obj = dict(epoch=250, state_dict={f'module.{k}': v for k, v in sd.items()}, optimizer=optimizer)
    else:  # KAIR
        obj = sd
    dst = _dncnn(seed=2)
    assert load_network(dst, _save(obj, tmp_path)) is dst
    _assert_same_weights(src, dst)


def test_param_key_auto_prefers_params_and_can_be_chosen(tmp_path):
    a, b = _dncnn(seed=1), _dncnn(seed=2)
    path = _save({'params': a.state_dict(), 'params_ema': b.state_dict()}, tmp_path)
    assert torch.equal(read_state_dict(path)['model.0.weight'], a.model[0].weight)
    assert torch.equal(read_state_dict(path, param_key='params_ema')['model.0.weight'], b.model[0].weight)
    with pytest.raises(CheckpointError, match=r'no entry "state_dict"; top-level keys: params, params_ema'):
        read_state_dict(path, param_key='state_dict')


def test_unreadable_or_absent_files(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        read_state_dict(str(tmp_path / 'absent.pth'))
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='garbage.pth: cannot be read'):
        read_state_dict(str(garbage))
    # weights_only=True refuses pickled objects that are not plain containers of tensors
    with pytest.raises(CheckpointError, match='cannot be read as a weights-only'):
        read_state_dict(_save({'params': _dncnn().state_dict(), 'net': _dncnn()}, tmp_path, 'pickled.pth'))
    with pytest.raises(CheckpointError, match='found no state dict.*top-level keys: epoch, weights'):
        read_state_dict(_save({'epoch': 1, 'weights': [torch.zeros(1)]}, tmp_path, 'odd.pth'))


def test_restormer_round_trip_and_output(tmp_path):
    torch.manual_seed(0)
    src = Restormer(**TINY_RESTORMER, LayerNorm_type='BiasFree').eval()
    path = _save({'params': src.state_dict()}, tmp_path)
    dst = load_network(Restormer(**TINY_RESTORMER, LayerNorm_type='BiasFree').eval(), path)
    x = torch.rand(1, 3, 19, 21)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_uformer_round_trip_with_buffers(tmp_path):
    torch.manual_seed(0)
    src = Uformer(**TINY_UFORMER, modulator=True).eval()
    path = _save({'epoch': 1, 'state_dict': {f'module.{k}': v for k, v in src.state_dict().items()}}, tmp_path)
    dst = load_network(Uformer(**TINY_UFORMER, modulator=True).eval(), path)
    _assert_same_weights(src, dst)
    x = torch.rand(1, 3, 20, 9)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_wrong_layernorm_type_names_keys_and_fix(tmp_path):
    path = _save({'params': Restormer(**TINY_RESTORMER, LayerNorm_type='BiasFree').state_dict()}, tmp_path)
    with pytest.raises(CheckpointError) as err:
        load_network(Restormer(**TINY_RESTORMER, LayerNorm_type='WithBias'), path)
    msg = str(err.value)
    assert 'does not match Restormer' in msg
    assert '16 missing key(s)' in msg and 'encoder_level1.0.norm1.body.bias' in msg
    assert 'set network_g.LayerNorm_type: BiasFree' in msg
    path = _save({'params': Restormer(**TINY_RESTORMER).state_dict()}, tmp_path, 'withbias.pth')
    with pytest.raises(CheckpointError, match='unexpected key.*LayerNorm_type: WithBias'):
        load_network(Restormer(**TINY_RESTORMER, LayerNorm_type='BiasFree'), path)


def test_uformer_hints(tmp_path):
    path = _save({'state_dict': Uformer(**TINY_UFORMER, modulator=True).state_dict()}, tmp_path)
    expected = r'unexpected key.*decoderlayer_0\.blocks\.0\.modulator\.weight.*set network_g\.modulator: true'
    with pytest.raises(CheckpointError, match=expected):
        load_network(Uformer(**TINY_UFORMER), path)
    # img_size 32 gives the 2x2 bottleneck a 2x2 window: its relative position tables change shape.
    expected = (r'conv\.blocks\.0\.attn\.relative_position_bias_table: checkpoint \[49, 2\] vs network \[9, 2\]'
                r'.*set network_g\.win_size and img_size')
    with pytest.raises(CheckpointError, match=expected):
        load_network(Uformer(**dict(TINY_UFORMER, img_size=32), modulator=True), path)


def test_dncnn_hint_describes_the_checkpoint(tmp_path):
    path = _save(_dncnn(nb=5, act_mode='BR').state_dict(), tmp_path)
    with pytest.raises(CheckpointError, match='DnCNN with in_nc: 3, out_nc: 3, nc: 8, nb: 5, act_mode: BR'):
        load_network(_dncnn(nb=5), path)


def test_non_strict_loads_what_matches(tmp_path):
    src = _dncnn(seed=1)
    sd = src.state_dict()
    sd['model.6.weight'] = torch.zeros(1, 8, 3, 3)  # wrong shape: skipped
    sd['extra.weight'] = torch.zeros(1)  # unexpected: skipped
    dst = _dncnn(seed=2)
    before = dst.model[6].weight.clone()
    load_network(dst, _save(sd, tmp_path), strict=False)
    assert torch.equal(dst.model[0].weight, src.model[0].weight)
    assert torch.equal(dst.model[6].weight, before)


def test_data_parallel_wrapper_is_unwrapped(tmp_path):
    src = _dncnn(seed=1)
    wrapped = nn.DataParallel(_dncnn(seed=2))
    load_network(wrapped, _save({'params': src.state_dict()}, tmp_path))
    _assert_same_weights(src, wrapped.module)
