"""Tiled adaptation (lan_basicsr/models/tiling.py): equal to whole-image adaptation for DnCNN, measured for the
transformers, transparent to the adapters, and through LANModel / tools/test.py."""
import pytest
import torch

from lan_basicsr.adapters.offset_adapter import LAN
from lan_basicsr.adapters.weight_adapter import FirstLayer, FullTrainable, LastLayer
from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.archs.restormer_arch import Restormer
from lan_basicsr.archs.uformer_arch import Uformer
from lan_basicsr.losses import Nbr2NbrLoss, ZSN2NLoss
from lan_basicsr.models.lan_model import adapt_image
from lan_basicsr.models.tiling import TiledNetwork, auto_pad, build_tiled, choose_tile, receptive_radius, tile_windows
from lan_basicsr.utils.errors import OptionError

LOSSES = {'ZSN2NLoss': ZSN2NLoss, 'Nbr2NbrLoss': Nbr2NbrLoss}
TINY_RESTORMER = dict(
    dim=8, num_blocks=[1, 1, 1, 2], num_refinement_blocks=1, heads=[1, 2, 2, 4], LayerNorm_type='BiasFree')
TINY_UFORMER = dict(
    img_size=64,
    embed_dim=4,
    depths=[2] * 9,
    num_heads=[1, 1, 2, 2, 2, 2, 2, 1, 1],
    win_size=4,
    modulator=True,
    drop_path_rate=0.)


def _dncnn(nb=4, nc=8, seed=0):
    torch.manual_seed(seed)
    return DnCNN(3, 3, nc, nb, 'R').eval()


def _images(h, w, seed=0):
    """A smooth image and its noisy version (sigma 15/255), 1,3,h,w."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(1, 3, 6, 6, generator=g) * 0.8 + 0.1
    clean = torch.nn.functional.interpolate(clean, size=(h, w), mode='bicubic', align_corners=False).clamp(0, 1)
    return clean + 15 / 255 * torch.randn(clean.shape, generator=g), clean


def _adapt(net, adapter_cls, loss, lq, gt, steps, tile=None, **adapter_kwargs):
    """Adapt ``net`` (weights restored afterwards) whole or tiled; returns (result, trainable tensors, adapter)."""
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for p in net.parameters():
        p.requires_grad_(True)
    model = TiledNetwork(net, *tile) if tile else net
    adapter = adapter_cls(model, **adapter_kwargs)
    result = adapt_image(model, adapter, LOSSES[loss](), lq, gt, steps, torch.Generator().manual_seed(3))
    trained = [p.detach().clone() for p in adapter.trainable_parameters()]
    net.load_state_dict(state)
    return result, trained, adapter


def test_tile_windows_cover_the_image_once():
    assert list(tile_windows(10, 4, 2)) == [(slice(0, 5), slice(0, 3), slice(0, 3)),
                                            (slice(1, 8), slice(2, 5), slice(3, 6)),
                                            (slice(4, 10), slice(2, 6), slice(6, 10))]
    assert list(tile_windows(5, 8, 3)) == [(slice(0, 5), slice(0, 5), slice(0, 5))]
    for length, size, pad in ((1, 1, 0), (37, 8, 5), (64, 16, 0), (100, 7, 100)):
        covered = []
        for window, mid, centre in tile_windows(length, size, pad):
            assert centre.stop - centre.start <= size and window.start >= 0 and window.stop <= length
            assert (window.start + mid.start, window.start + mid.stop) == (centre.start, centre.stop)
            assert centre.start - window.start == min(pad, centre.start)  # context clipped at the border only
            covered += range(centre.start, centre.stop)
        assert covered == list(range(length))


def test_wrapper_is_transparent():
    net = _dncnn()
    tiled = TiledNetwork(net, 8, 4)
    assert list(tiled.state_dict()) == list(net.state_dict())
    assert [n for n, _ in tiled.named_modules()][1:] == [n for n, _ in net.named_modules()][1:]
    assert all(a is b for a, b in zip(tiled.parameters(), net.parameters()))
    tiled.train()
    assert net.training and all(m.training for m in net.modules())
    tiled.eval()
    assert not net.training
    assert TiledNetwork(tiled, 4, 2).net is net  # re-wrapping wraps the network, not the wrapper


@pytest.mark.parametrize('shape', [(1, 3, 37, 29), (2, 3, 20, 50)])
def test_forward_and_gradients_equal_the_whole_image(shape):
    net = _dncnn(nb=4)
    tiled = TiledNetwork(net, 8, 4)  # pad = the receptive radius (4 convs of 3x3)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weight = torch.rand(shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(tiled(x), net(x), rtol=0, atol=1e-6)
    params = list(net.parameters())
    whole = torch.autograd.grad((net(x) * weight).sum(), [x] + params)
    tiles = torch.autograd.grad((tiled(x) * weight).sum(), [x] + params)
    for a, b in zip(whole, tiles):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    # one pixel less context and the tile borders show
    with torch.no_grad():
        assert (TiledNetwork(net, 8, 3)(x) - net(x)).abs().max() > 1e-4


@pytest.mark.parametrize('loss', list(LOSSES))
@pytest.mark.parametrize('adapter_cls', [LAN, FullTrainable])
def test_dncnn_tiled_adaptation_equals_whole_image(adapter_cls, loss):
    """pad >= receptive field: every step's PSNR within 1e-4 dB, phi (or the weights) within 1e-5."""
    net = _dncnn(nb=4)
    lq, gt = _images(40, 52)
    lr = {'lr': 5e-3} if adapter_cls is FullTrainable else {}  # large enough for the weights to move visibly
    whole, trained_whole, _ = _adapt(net, adapter_cls, loss, lq, gt, 5, **lr)
    tiled, trained_tiled, _ = _adapt(net, adapter_cls, loss, lq, gt, 5, tile=(12, 4), **lr)
    assert whole.psnr[-1] - whole.psnr[0] > 1e-3  # something was adapted
    assert max(abs(a - b) for a, b in zip(whole.psnr, tiled.psnr)) < 1e-4
    assert max(abs(a - b) for a, b in zip(whole.loss, tiled.loss)) < 1e-6
    for a, b in zip(trained_whole, trained_tiled):
        assert (a - b).abs().max() < 1e-5
    assert (whole.output - tiled.output).abs().max() < 1e-5


@pytest.mark.parametrize('adapter_cls,layer', [(FirstLayer, 'model.0'), (LastLayer, 'model.6')])
def test_layer_search_finds_the_real_layer_through_the_wrapper(adapter_cls, layer):
    net = _dncnn(nb=4)
    lq, gt = _images(30, 30)
    whole, trained_whole, _ = _adapt(net, adapter_cls, 'ZSN2NLoss', lq, gt, 3, lr=5e-3)
    tiled, trained_tiled, adapter = _adapt(net, adapter_cls, 'ZSN2NLoss', lq, gt, 3, tile=(10, 4), lr=5e-3)
    assert adapter.layer == layer
    assert adapter.trainable_parameters()[0] is dict(net.named_modules())[layer].weight
    assert max(abs(a - b) for a, b in zip(whole.psnr, tiled.psnr)) < 1e-4
    assert all((a - b).abs().max() < 1e-5 for a, b in zip(trained_whole, trained_tiled))


def test_tiled_loss_keeps_no_network_activations():
    """Bounded memory: the graph of a tiled loss holds image-sized tensors only, not the network's activations."""

    def saved_bytes(model, x):  # distinct storages that the loss's graph keeps
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ZSN2NLoss()(model, x)
        return sum(storages.values())

    net = _dncnn(nb=4, nc=16)
    x = _images(64, 64)[0].requires_grad_(True)
    image = x.numel() * x.element_size()
    assert saved_bytes(net, x) > 20 * image  # whole image: 16-channel activations of every layer
    # tiled: x, f(x), the four half-size sub-images and their outputs (1 + 1 + 6 / 4 images), and the weights
    assert saved_bytes(TiledNetwork(net, 16, 4), x) < 4 * image


@pytest.mark.parametrize('arch', ['Restormer', 'Uformer'])
@pytest.mark.parametrize('adapter_cls', [LAN, FullTrainable])
def test_transformers_tiled_adaptation_is_close(arch, adapter_cls):
    """Global attention sees one window only: the difference is measured and bounded (docs/tiling.md).

    64x64 image, tiles of 32 with pad 16, 3 steps of ZS-N2N, tiny random-weight networks: measured here max |dPSNR|
    0.036 dB (Restormer) and 0.054 dB (Uformer) at any step, the PSNR gain of adaptation differing by < 0.002 dB.
    """
    torch.manual_seed(0)
    net = (Restormer(**TINY_RESTORMER) if arch == 'Restormer' else Uformer(**TINY_UFORMER)).eval()
    lq, gt = _images(64, 64)
    whole, _, _ = _adapt(net, adapter_cls, 'ZSN2NLoss', lq, gt, 3)
    tiled, _, _ = _adapt(net, adapter_cls, 'ZSN2NLoss', lq, gt, 3, tile=(32, 16))
    diff = [abs(a - b) for a, b in zip(whole.psnr, tiled.psnr)]
    assert 1e-3 < max(diff) < 0.1  # tiled for real, and close
    assert abs((whole.psnr[-1] - whole.psnr[0]) - (tiled.psnr[-1] - tiled.psnr[0])) < 0.005


def test_receptive_radius_and_auto_pad():
    assert receptive_radius(_dncnn(nb=3)) == 3
    assert receptive_radius(_dncnn(nb=6)) == 6
    assert auto_pad(_dncnn(nb=6)) == (8, 6)
    assert auto_pad(_dncnn(nb=9)) == (16, 9)
    torch.manual_seed(0)
    assert receptive_radius(Restormer(**TINY_RESTORMER).eval(), probe_size=33) is None  # channel attention: global
    assert auto_pad(Restormer(**TINY_RESTORMER).eval()) == (32, None)


def test_build_tiled_options():
    net = _dncnn(nb=3)
    assert build_tiled(net, None) == (net, None)
    assert build_tiled(net, {'size': None}) == (net, None)
    tiled, resolved = build_tiled(net, {'size': 64})
    assert isinstance(tiled, TiledNetwork) and resolved == {'size': 64, 'pad': 8} and tiled.pad == 8
    assert build_tiled(net, {'size': 64, 'pad': 2})[1] == {'size': 64, 'pad': 2}
    with pytest.raises(OptionError, match='unknown key.*overlap'):
        build_tiled(net, {'size': 64, 'overlap': 8})
    with pytest.raises(OptionError, match='adapt.tile.size'):
        build_tiled(net, {'size': 0})
    with pytest.raises(OptionError, match='adapt.tile.pad'):
        build_tiled(net, {'size': 8, 'pad': -1})
    with pytest.raises(OptionError, match='adapt.tile: expected a mapping'):
        build_tiled(net, 512)


def test_choose_tile():
    mib = 2**20
    # fits whole: 1.5 * 1e6 px * 1000 B + 150 B/px * 1e6 px = 1.65e9 B < 2 GiB
    assert choose_tile(1000, 1000, 1000, 2048 * mib, 8) is None
    # 12 MP in 3 GiB: 3 GiB - 150 B * 12e6 px = 1421 MiB for the window -> sqrt(.. / 1000) - 16 = 1204 -> capped 512
    assert choose_tile(3000, 4000, 1000, 3072 * mib, 8) == 512
    # 100 MiB left for the window: sqrt(100 MiB / 1000 B) - 16 = 307 -> 304
    assert choose_tile(3000, 4000, 1000, 1800 * 10**6 + 100 * mib, 8) == 304
    # nothing left beyond the image tensors: the smallest tile (the budget is exceeded, not crawled through)
    assert choose_tile(3000, 4000, 1000, 1024 * mib, 8) == 64
    assert choose_tile(3000, 4000, 1000, 3072 * mib, 8, image_bytes_per_pixel=0, max_size=10**4) == 1776
