"""Grey and colour datasets: the color option, grey/RGB LMDB round trips, and the match with the network's channels."""
import logging
import os
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from conftest import make_paired_folder

from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.archs.restormer_arch import Restormer
from lan_basicsr.archs.uformer_arch import Uformer
from lan_basicsr.data.channels import match_network_channels, network_in_channels
from lan_basicsr.data.noisy_image_dataset import NoisyImageDataset
from lan_basicsr.data.paired_noisy_dataset import PairedNoisyDataset
from lan_basicsr.data.synthetic_noise_dataset import SyntheticNoiseDataset
from lan_basicsr.utils.errors import OptionError


def _lmdb(folder, lmdb_path):
    names = sorted(os.listdir(folder))
    make_lmdb_from_imgs(
        folder, lmdb_path, names, [osp.splitext(n)[0] for n in names], multiprocessing_read=False, map_size=1 << 24)
    return lmdb_path


def _grey_copy(src, dst):
    """The folder ``src`` written as grey PNGs by OpenCV's BGR->grey conversion."""
    os.makedirs(dst)
    for name in sorted(os.listdir(src)):
        cv2.imwrite(osp.join(dst, name), cv2.cvtColor(cv2.imread(osp.join(src, name)), cv2.COLOR_BGR2GRAY))
    return dst


@pytest.fixture
def stores(tmp_path):
    """The same pairs as colour PNG folders, grey PNG folders, a colour LMDB and a grey LMDB."""
    pairs = make_paired_folder(str(tmp_path / 'rgb'), num=3, size=(12, 20))
    out = {'rgb': {}, 'gray': {}}
    for side in ('lq', 'gt'):
        rgb = osp.join(pairs, side)
        gray = _grey_copy(rgb, str(tmp_path / 'gray' / side))
        out['rgb'][side] = (rgb, _lmdb(rgb, str(tmp_path / f'rgb_{side}.lmdb')))
        out['gray'][side] = (gray, _lmdb(gray, str(tmp_path / f'gray_{side}.lmdb')))
    return out


def _paired(store, backend, color=None):
    opt = {'name': 'toy', 'phase': 'test', 'io_backend': {'type': backend}}
    index = 0 if backend == 'disk' else 1
    opt.update(dataroot_lq=store['lq'][index], dataroot_gt=store['gt'][index])
    if color is not None:
        opt['color'] = color
    return PairedNoisyDataset(opt)


@pytest.mark.parametrize('stored', ['rgb', 'gray'])
@pytest.mark.parametrize('color', ['rgb', 'gray'])
def test_lmdb_round_trip_equals_the_folder(stores, stored, color):
    """Grey and colour LMDBs (BasicSR's make_lmdb_from_imgs) give the folders' arrays in both modes."""
    folder, lmdb = _paired(stores[stored], 'disk', color), _paired(stores[stored], 'lmdb', color)
    assert len(folder) == len(lmdb) == 3
    for i in range(3):
        a, b = folder[i], lmdb[i]
        assert a['name'] == b['name'] == f'img{i:03d}'
        for key in ('lq', 'gt'):
            assert a[key].shape == (1 if color == 'gray' else 3, 12, 20) and a[key].dtype == torch.float32
            assert torch.equal(a[key], b[key])
        png = cv2.imread(osp.join(stores[stored]['lq'][0], f'img{i:03d}.png'), cv2.IMREAD_UNCHANGED)
        if color == 'gray':
            expected = png if png.ndim == 2 else cv2.cvtColor(png, cv2.COLOR_BGR2GRAY)
            assert torch.equal(a['lq'][0], torch.from_numpy(expected.astype(np.float32) / 255.))
        elif stored == 'gray':  # replicated
            assert torch.equal(a['lq'], torch.from_numpy(png.astype(np.float32) / 255.).expand(3, -1, -1))


def test_colour_read_as_gray_equals_the_grey_files(stores):
    """color: gray on colour data equals reading the grey PNGs OpenCV writes from the same images."""
    from_colour, from_grey = _paired(stores['rgb'], 'lmdb', 'gray'), _paired(stores['gray'], 'disk')
    for i in range(3):
        assert torch.equal(from_colour[i]['lq'], from_grey[i]['lq'][:1])


def test_noisy_only_and_synthetic_datasets_in_gray(stores, tmp_path):
    lq_lmdb = stores['rgb']['lq'][1]
    noisy = NoisyImageDataset({'name': 'mine', 'dataroot_lq': lq_lmdb, 'io_backend': {'type': 'lmdb'}, 'color': 'gray'})
    assert noisy[0]['lq'].shape == (1, 12, 20)
    opt = {
        'name': 'syn',
        'phase': 'test',
        'dataroot_gt': stores['rgb']['gt'][1],
        'io_backend': {
            'type': 'lmdb'
        },
        'noise': {
            'type': 'GaussianNoise',
            'sigma': 25
        },
        'clip': False,
        'seed': 7,
        'color': 'gray'
    }
    synthetic = SyntheticNoiseDataset(opt)
    item = synthetic[1]
    assert item['gt'].shape == item['lq'].shape == (1, 12, 20)
    noise = np.random.default_rng(7 + 1).standard_normal((12, 20, 1), dtype=np.float32) * np.float32(25 / 255.)
    gt = item['gt'].permute(1, 2, 0).numpy()  # grey noise drawn on the one channel, seed + index
    np.testing.assert_array_equal(item['lq'].permute(1, 2, 0).numpy(), gt + noise)


def test_bad_color_option(stores):
    with pytest.raises(OptionError, match=r'datasets.test.color \(dataset "toy"\): expected gray or rgb'):
        _paired(stores['rgb'], 'disk', 'grey')


def test_network_in_channels():
    assert network_in_channels(DnCNN(1, 1, 4, 3, 'R')) == 1
    assert network_in_channels(DnCNN(3, 3, 4, 3, 'R')) == 3
    assert network_in_channels(
        Restormer(
            inp_channels=1, out_channels=1, dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1,
                                                                                                            1])) == 1
    assert network_in_channels(
        Uformer(img_size=64, embed_dim=4, depths=[1] * 9, num_heads=[1] * 9, win_size=4, dd_in=3)) == 3
    assert network_in_channels(torch.nn.Linear(2, 2)) is None


def test_unset_color_follows_the_network(stores, caplog):
    unset, explicit = _paired(stores['rgb'], 'disk'), _paired(stores['rgb'], 'disk', 'gray')
    assert unset.color == 'rgb' and unset[0]['lq'].shape[0] == 3  # alone: rgb, as before
    caplog.set_level(logging.INFO, logger='basicsr')
    assert match_network_channels(DnCNN(1, 1, 4, 3, 'R'), [unset, explicit, object()]) == 'gray'
    assert unset.color == 'gray' and unset[0]['lq'].shape == (1, 12, 20) and unset[0]['gt'].shape == (1, 12, 20)
    assert 'datasets.test.color (dataset "toy"): gray (1 channel), the input channels of network_g (DnCNN)' in (
        caplog.text)
    assert match_network_channels(DnCNN(3, 3, 4, 3, 'R'), [_paired(stores['gray'], 'disk')]) == 'rgb'


def test_channel_mismatch_is_one_line_error(stores):
    with pytest.raises(OptionError) as info:
        match_network_channels(DnCNN(1, 1, 4, 3, 'R'), [_paired(stores['rgb'], 'disk', 'rgb')])
    assert str(info.value) == ('datasets.test.color (dataset "toy"): rgb gives 3-channel images but network_g (DnCNN) '
                               'takes 1; set color: gray, or leave it unset to follow the network')
    with pytest.raises(OptionError, match=r'network_g \(DnCNN\) takes 4 input channels; the image datasets deliver 1'):
        match_network_channels(DnCNN(4, 4, 4, 3, 'R'), [_paired(stores['rgb'], 'disk')])
