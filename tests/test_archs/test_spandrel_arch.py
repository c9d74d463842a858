"""SpandrelNet: checkpoints of architectures we did not write, built by spandrel from random weights saved here in
the layout of each architecture's official release, detected, loaded strictly and adapted."""
import csv
import pickle
import sys
from collections import OrderedDict

import pytest
import torch
from conftest import ROOT, make_paired_folder

spandrel = pytest.importorskip('spandrel')
# spandrel's copies of NAFNet and SwinIR use APIs torch deprecates; not ours to fix
pytestmark = [
    pytest.mark.filterwarnings("ignore:'saved_variables' is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings('ignore:torch.meshgrid:UserWarning'),
]

from spandrel.architectures.DnCNN import DnCNN as SpandrelDnCNN  # noqa: E402
from spandrel.architectures.DRUNet import DRUNet  # noqa: E402
from spandrel.architectures.NAFNet import NAFNet  # noqa: E402
from spandrel.architectures.SCUNet import SCUNet  # noqa: E402
from spandrel.architectures.SwinIR import SwinIR  # noqa: E402
from spandrel.architectures.Uformer import Uformer  # noqa: E402

from lan_basicsr.adapters.weight_adapter import parameter_module_calls  # noqa: E402
from lan_basicsr.archs.spandrel_arch import SpandrelNet, pad_to_requirements  # noqa: E402
from lan_basicsr.data.channels import network_in_channels  # noqa: E402
from lan_basicsr.data.data_util import read_image_file  # noqa: E402
from lan_basicsr.losses.zsn2n_loss import ZSN2NLoss  # noqa: E402
from lan_basicsr.metrics import score_images  # noqa: E402
from lan_basicsr.models.lan_model import adapt_image, build_adapter  # noqa: E402
from lan_basicsr.test import test_pipeline as pipeline  # noqa: E402
from lan_basicsr.utils.checkpoint import load_network  # noqa: E402
from lan_basicsr.utils.errors import CheckpointError, OptionError  # noqa: E402


def _bare(sd):  # KAIR releases (dncnn_15.pth, drunet_color.pth, scunet_color_real_psnr.pth): a bare state dict
    return sd


def _params(sd):  # BasicSR-trained releases (NAFNet-SIDD-width32.pth, SwinIR 005_colorDN_*.pth)
    return {'params': sd}


def _uformer(sd):  # Uformer's release: a training checkpoint, DataParallel keys
    return {'epoch': 250, 'state_dict': OrderedDict(('module.' + k, v) for k, v in sd.items()), 'optimizer': {}}


def _swinir():
    return SwinIR(
        img_size=16,
        in_chans=3,
        embed_dim=12,
        depths=[2],
        num_heads=[2],
        window_size=8,
        mlp_ratio=2.,
        upscale=1,
        upsampler='',
        resi_connection='1conv')


def _uformer_net():
    return Uformer(
        img_size=256, in_chans=3, dd_in=3, embed_dim=8, depths=[1] * 9, num_heads=[1] * 9, win_size=8, modulator=True)


# name: (builder with the smallest config spandrel still detects, release layout, channels, arch id, first, last)
CASES = {
    'dncnn_gray':
    (lambda: SpandrelDnCNN(in_nc=1, out_nc=1, nc=4, nb=8, act_mode='R'), _bare, 1, 'DnCNN', 'model.0', 'model.14'),
    'drunet': (lambda: DRUNet(in_nc=4, out_nc=3, nc=[4, 8, 16, 32], nb=2), _bare, 3, 'DRUNet', 'm_head', 'm_tail'),
    'scunet':
    (lambda: SCUNet(in_nc=3, config=[1, 0, 0, 0, 0, 0, 1], dim=64), _bare, 3, 'SCUNet', 'm_head.0', 'm_tail.0'),
    'nafnet': (lambda: NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]),
               _params, 3, 'NAFNet', 'intro', 'ending'),
    'swinir': (_swinir, _params, 3, 'SwinIR', 'conv_first', 'conv_last'),
    'uformer': (_uformer_net, _uformer, 3, 'Uformer', 'input_proj.proj.0', 'output_proj.proj.0'),
}


def _direct_input(name, x):
    """What the directly built network takes for image ``x``: DRUNet also gets spandrel's 15/255 noise-level map."""
    if name == 'drunet':
        return torch.cat([x, torch.full_like(x[:, :1], 15 / 255.)], 1)
    return x


@pytest.fixture(params=sorted(CASES))
def release(request, tmp_path):
    """A directly built network with random weights and its file in the official layout."""
    name = request.param
    make, layout, channels, arch, first, last = CASES[name]
    torch.manual_seed(0)
    net = make().eval()
    with torch.no_grad():  # nonzero everywhere (some inits are zeros, e.g. NAFNet's beta/gamma): a real check
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    path = str(tmp_path / f'{name}.pth')
    torch.save(layout(net.state_dict()), path)
    return dict(name=name, net=net, path=path, channels=channels, arch=arch, first=first, last=last)


def test_detected_and_loaded_strictly_in_the_official_layout(release):
    wrapped = SpandrelNet(release['path'])
    assert wrapped.arch == release['arch']
    assert wrapped.in_channels == wrapped.out_channels == network_in_channels(wrapped) == release['channels']
    assert isinstance(wrapped.model, type(release['net']))  # the real module is a submodule
    ours, official = wrapped.state_dict(), release['net'].state_dict()
    assert list(ours) == list(official)  # the architecture's own keys, no wrapper prefix
    assert all(torch.equal(ours[k], official[k]) for k in official)
    load_network(wrapped, release['path'], strict=True)  # path.pretrain_network_g in the official layout works too
    release['net'].load_state_dict(wrapped.state_dict(), strict=True)  # and a saved SpandrelNet loads back


def test_output_equals_the_network_built_directly(release):
    wrapped = SpandrelNet(release['path']).eval()
    req, m = wrapped.size_requirements, wrapped.size_requirements.multiple_of
    h = -(-max(req.minimum, 16) // m) * m  # the smallest side >= 16 that needs no padding
    w = h if req.square else h + 8 * m
    torch.manual_seed(1)
    x = torch.rand(1, release['channels'], h, w)
    assert req.check(w, h)  # no padding: both run exactly the same modules on the same tensor
    with torch.no_grad():
        assert torch.equal(wrapped(x), release['net'](_direct_input(release['name'], x)))


def test_padding_follows_size_requirements_like_spandrels_own_call(release):
    """An odd-sized input is padded as spandrel's inference API pads it, and cropped back (before any clamp)."""
    wrapped = SpandrelNet(release['path']).eval()
    descriptor = spandrel.ModelLoader().load_from_state_dict(release['net'].state_dict())
    torch.manual_seed(2)
    x = torch.rand(1, release['channels'], 13, 21)
    with torch.no_grad():
        ours = wrapped(x)
        padded = pad_to_requirements(x, wrapped.size_requirements)
        direct = release['net'](_direct_input(release['name'], padded))[..., :13, :21]
    assert ours.shape == x.shape
    assert torch.equal(ours, direct)
    assert torch.equal(ours.clamp(0, 1), descriptor(x))


def test_pad_to_requirements_reflects_then_replicates():
    req = spandrel.SizeRequirements(minimum=6, multiple_of=1)
    x = torch.arange(1., 4.).view(1, 1, 1, 3)  # 1x3 -> 6x6: no row to reflect, two columns to reflect
    out = pad_to_requirements(x, req)
    assert out.shape == (1, 1, 6, 6)
    assert out[0, 0, 0].tolist() == [1., 2., 3., 2., 1., 1.]  # reflect (3 -> 2, 1), then replicate the last
    assert torch.equal(out, out[:, :, :1].expand(-1, -1, 6, -1))  # rows replicated
    square = pad_to_requirements(torch.rand(1, 1, 5, 9), spandrel.SizeRequirements(multiple_of=4, square=True))
    assert square.shape == (1, 1, 12, 12)


@pytest.mark.parametrize('adapter', ['LAN', 'FullTrainable'])
def test_lan_and_full_trainable_adapt(release, adapter):
    wrapped = SpandrelNet(release['path']).eval()
    reference = {k: v.clone() for k, v in wrapped.state_dict().items()}
    torch.manual_seed(3)
    lq = torch.rand(1, release['channels'], 12, 20)
    gt = lq.clamp(0.1, 0.9)
    adapt = build_adapter(wrapped, {'type': adapter, 'lr': 1e-3})
    result = adapt_image(wrapped, adapt, ZSN2NLoss(), lq, gt, steps=2)
    assert len(result.psnr) == 3 and all(torch.isfinite(torch.tensor(result.loss)))
    assert result.output.shape == lq.shape
    changed = [k for k, v in wrapped.state_dict().items() if not torch.equal(v, reference[k])]
    if adapter == 'LAN':
        assert changed == [] and adapt.offset().abs().sum() > 0  # frozen network, the input moved
    else:
        assert len(changed) > 0  # the weights moved
    assert result.psnr[0] != result.psnr[-1]


def test_first_and_last_layer_found_in_forward_order(release):
    wrapped = SpandrelNet(release['path']).eval()
    calls = parameter_module_calls(wrapped, torch.rand(1, release['channels'], 16, 16))
    assert calls[0] == 'model.' + release['first'] and calls[-1] == 'model.' + release['last']
    for adapter, name in (('FirstLayer', release['first']), ('LastLayer', release['last'])):
        adapt = build_adapter(wrapped, {'type': adapter})
        adapt.reset(torch.rand(1, release['channels'], 16, 16))
        own = list(dict(wrapped.named_modules())['model.' + name].parameters(recurse=False))
        assert [id(p) for p in adapt.trainable_parameters()] == [id(p) for p in own]


def test_noise_level_map_of_drunet_and_fdncnn(tmp_path):
    net = DRUNet(in_nc=2, out_nc=1, nc=[4, 8, 16, 32], nb=2, act_mode='R').eval()
    path = str(tmp_path / 'drunet_gray.pth')
    torch.save(net.state_dict(), path)
    wrapped = SpandrelNet(path, noise_level=50).eval()
    assert wrapped.in_channels == 1 and wrapped.noise_level == 50
    x = torch.rand(1, 1, 16, 24)
    with torch.no_grad():
        assert torch.equal(wrapped(x), net(torch.cat([x, torch.full_like(x, 50 / 255.)], 1)))
    with pytest.raises(OptionError, match='noise_level: expected a number'):
        SpandrelNet(path, noise_level='high')
    fdncnn = SpandrelDnCNN(in_nc=4, out_nc=3, nc=4, nb=8, act_mode='R', mode='FDnCNN').eval()
    torch.save(fdncnn.state_dict(), path)
    wrapped = SpandrelNet(path).eval()  # the default level: spandrel's 15
    assert (wrapped.arch, wrapped.in_channels, wrapped.noise_level) == ('FDnCNN', 3, 15.)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(wrapped(x), fdncnn(torch.cat([x, torch.full_like(x[:, :1], 15 / 255.)], 1)))


def test_safetensors_file(tmp_path):
    from safetensors.torch import save_file
    net = NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])
    path = str(tmp_path / 'nafnet.safetensors')
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, path)
    assert SpandrelNet(path).arch == 'NAFNet'


def test_pickled_objects_are_not_loaded(tmp_path):
    """Weights only: a file that would build arbitrary objects is refused, not unpickled."""
    path = str(tmp_path / 'evil.pth')
    net = NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])
    torch.save({'params': net.state_dict(), 'extra': pickle.PickleError('x')}, path)
    with pytest.raises(CheckpointError, match='weights-only'):
        SpandrelNet(path)


def test_not_a_denoiser_is_refused(tmp_path):
    from spandrel.architectures.Compact import Compact
    path = str(tmp_path / 'compact_x2.pth')
    torch.save({'params': Compact(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=2, upscale=2).state_dict()}, path)
    with pytest.raises(CheckpointError, match=r'Compact is a 2x super-resolution model; LAN adapts denoisers'):
        SpandrelNet(path)


def test_unknown_weights_and_wrong_options(tmp_path):
    path = str(tmp_path / 'mystery.pth')
    torch.save({'encoder.weight': torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match='recognises no architecture in these weights'):
        SpandrelNet(path)
    with pytest.raises(CheckpointError, match='checkpoint file not found'):
        SpandrelNet(str(tmp_path / 'absent.pth'))
    with pytest.raises(CheckpointError, match='no entry "params_ema"'):
        SpandrelNet(path, param_key='params_ema')
    torch.save({'weights': {'conv.weight': torch.zeros(1)}, 'epoch': 3}, path)  # an entry spandrel does not know
    with pytest.raises(CheckpointError, match=r'found no state dict .*found: weights, epoch\); name the entry'):
        SpandrelNet(path)
    with pytest.raises(CheckpointError, match=r'found no state dict .*found: Tensor\)'):
        torch.save({'weights': torch.zeros(1), 'epoch': 3}, path)
        SpandrelNet(path, param_key='weights')
    dncnn = str(tmp_path / 'dncnn.pth')
    torch.save(SpandrelDnCNN(in_nc=3, out_nc=3, nc=4, nb=8, act_mode='R').state_dict(), dncnn)
    with pytest.raises(OptionError, match='DnCNN .* takes no noise-level map'):
        SpandrelNet(dncnn, noise_level=25)


def test_missing_packages_are_one_line_errors(tmp_path, monkeypatch):
    path = str(tmp_path / 'dncnn.pth')
    torch.save(SpandrelDnCNN(in_nc=1, out_nc=1, nc=4, nb=8, act_mode='R').state_dict(), path)
    monkeypatch.setitem(sys.modules, 'spandrel_extra_arches', None)  # import fails as if not installed
    with pytest.raises(OptionError, match='non-commercial') as info:
        SpandrelNet(path, extra_arches=True)
    assert '\n' not in str(info.value)
    monkeypatch.setitem(sys.modules, 'spandrel', None)
    with pytest.raises(OptionError, match=r'pip install -e "\.\[spandrel\]"') as info:
        SpandrelNet(path)
    assert '\n' not in str(info.value)


def test_restormer_is_not_in_the_main_package():
    """The licence split the docs rely on: Restormer only comes with spandrel_extra_arches (non-commercial)."""
    main = {str(a.architecture.id) for a in spandrel.MAIN_REGISTRY.architectures()}
    assert 'Restormer' not in main
    assert {'DnCNN', 'DRUNet', 'SCUNet', 'NAFNet', 'SwinIR', 'Uformer'} <= main


def test_spandrel_checkpoint_through_the_test_pipeline(tmp_path):
    """options/lan_spandrel_polyu.yml with a checkpoint: adapted, scored and saved like our own archs; a grey
    network makes the (colour) data grey."""
    pairs = make_paired_folder(str(tmp_path / 'pairs'), num=2, size=(20, 24))
    torch.manual_seed(0)
    net = SpandrelDnCNN(in_nc=1, out_nc=1, nc=4, nb=8, act_mode='R').eval()
    path = str(tmp_path / 'dncnn_15.pth')
    torch.save(net.state_dict(), path)
    argv = [
        '-opt', f'{ROOT}/options/lan_spandrel_polyu.yml', '--cfg-options', f'network_g.path={path}',
        f'datasets.test.dataroot_lq={pairs}/lq', f'datasets.test.dataroot_gt={pairs}/gt', 'datasets.test.crop.size=16',
        'adapt.steps=2', 'num_gpu=0', 'name=lan_dncnn15_toy'
    ]
    model = pipeline(str(tmp_path), argv)
    assert isinstance(model.net, SpandrelNet) and model.net.arch == 'DnCNN'
    with open(tmp_path / 'results' / 'lan_dncnn15_toy' / 'per_step.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert [(r['image'], r['step']) for r in rows] == [(f'img00{i}', str(s)) for i in range(2) for s in range(3)]
    lq = torch.from_numpy(read_image_file(f'{pairs}/lq/img000.png', 'gray')[:16, :16]).permute(2, 0, 1)[None]
    gt = torch.from_numpy(read_image_file(f'{pairs}/gt/img000.png', 'gray')[:16, :16]).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = score_images(net(lq), gt, {'psnr': {'type': 'calculate_psnr'}})['psnr']
    assert float(rows[0]['psnr']) == pytest.approx(expected, abs=1e-6)
    assert float(rows[-1]['psnr']) != float(rows[-3]['psnr'])  # img001 adapted
