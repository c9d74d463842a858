"""SyntheticNoiseDataset: scikit-image photos or a folder, per-image seeds, split, clipping, option errors."""
import os
import random
from os import path as osp

import numpy as np
import pytest
import torch
from basicsr.data import build_dataset

from lan_basicsr.data.synthetic_noise_dataset import SKIMAGE_PHOTOS, SyntheticNoiseDataset, skimage_image_path
from lan_basicsr.utils.errors import DataError, OptionError

NOISE = {'type': 'GaussianNoise', 'sigma': 25}


def sk_opt(**kw):
    opt = {
        'name': 'sk',
        'phase': 'test',
        'skimage_images': ['astronaut', 'camera', 'chelsea'],
        'noise': NOISE,
        'crop': {
            'size': 64
        },
        'seed': 10
    }
    opt.update(kw)
    return opt


def test_bundled_photos_need_no_download():
    for name in SKIMAGE_PHOTOS:
        assert osp.isfile(skimage_image_path(name))
    with pytest.raises(OptionError, match='"eagle" is not an image bundled with scikit-image.*astronaut'):
        skimage_image_path('eagle')  # fetched with pooch in recent scikit-image: refused


def test_items_and_per_image_seed():
    ds = build_dataset(dict(sk_opt(), type='SyntheticNoiseDataset'))
    assert isinstance(ds, SyntheticNoiseDataset) and len(ds) == 3
    item = ds[1]
    assert set(item) == {'lq', 'gt', 'lq_path', 'gt_path', 'name'}
    assert item['name'] == 'camera' and item['gt_path'].endswith('camera.png')
    assert item['lq'].shape == item['gt'].shape == (3, 64, 64)
    assert torch.equal(item['gt'][0], item['gt'][2])  # grayscale photo replicated
    again = SyntheticNoiseDataset(sk_opt())[1]
    assert torch.equal(item['lq'], again['lq'])  # same seed, same noise, new dataset object
    assert torch.equal(ds[1]['lq'], item['lq'])  # and in every epoch
    # seed of image i is seed + i: image 1 of seed 10 has the noise of image 0 of seed 11
    noise_1 = item['lq'] - item['gt']
    shifted = SyntheticNoiseDataset(sk_opt(seed=11, skimage_images=['camera']))[0]
    assert torch.allclose(noise_1, shifted['lq'] - shifted['gt'], atol=1e-6)
    assert not torch.allclose(noise_1, ds[0]['lq'] - ds[0]['gt'], atol=1e-3)


def test_noise_statistics_and_clipping():
    ds = SyntheticNoiseDataset(sk_opt(skimage_images=['astronaut'], crop={'size': 256, 'position': 'center'}))
    item = ds[0]
    lq, gt = item['lq'], item['gt']
    assert lq.min() >= 0 and lq.max() <= 1
    inside = (gt > 0.25) & (gt < 0.75)  # far from the clipping bounds
    assert (lq - gt)[inside].std().item() == pytest.approx(25 / 255, rel=0.05)
    unclipped = SyntheticNoiseDataset(sk_opt(skimage_images=['astronaut'], clip=False, crop={'size': 256}))[0]
    assert unclipped['lq'].min() < 0 or unclipped['lq'].max() > 1


def test_split_heldout():
    names = ['astronaut', 'camera', 'chelsea', 'coffee']
    train = SyntheticNoiseDataset(sk_opt(skimage_images=names, split='train', heldout=1))
    held = SyntheticNoiseDataset(sk_opt(skimage_images=names, split='heldout', heldout=1))
    assert train.names == ['astronaut', 'camera', 'chelsea'] and held.names == ['coffee']
    held = SyntheticNoiseDataset(sk_opt(skimage_images=names, split='heldout', heldout=['camera', 'astronaut']))
    assert held.names == ['astronaut', 'camera']
    with pytest.raises(OptionError, match=r'datasets\.test\.heldout.*"moon" is not among'):
        SyntheticNoiseDataset(sk_opt(skimage_images=names, split='train', heldout=['moon']))
    with pytest.raises(OptionError, match='leaves no image'):
        SyntheticNoiseDataset(sk_opt(skimage_images=names, split='train', heldout=4))


def test_train_phase_random_crop_reproducible(paired_folder):
    opt = {
        'phase': 'train',
        'dataroot_gt': osp.join(paired_folder, 'gt'),
        'gt_size': 16,
        'noise': {
            'type': 'PoissonGaussianNoise',
            'photons': 40,
            'read_sigma': 3
        }
    }
    ds = SyntheticNoiseDataset(opt)
    random.seed(5)
    first = [ds[0]['lq'] for _ in range(2)]
    random.seed(5)
    second = [ds[0]['lq'] for _ in range(2)]
    assert first[0].shape == (3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # reproducible under BasicSR's seeding
    assert not torch.equal(first[0], first[1])  # but new noise/crop each time in training
    fixed = SyntheticNoiseDataset(dict(opt, fixed_noise=True, clip=False, noise=NOISE))
    a, b = fixed[3], fixed[3]  # random crops, but the same noise field (seed + index) every time
    assert torch.allclose(a['lq'] - a['gt'], b['lq'] - b['gt'], atol=1e-6)


def test_option_errors(paired_folder):
    with pytest.raises(OptionError, match=r'datasets\.test\.noise.*not set'):
        SyntheticNoiseDataset({'phase': 'test', 'skimage_images': ['astronaut']})
    with pytest.raises(OptionError, match='unknown type "Speckle"'):
        SyntheticNoiseDataset(sk_opt(noise={'type': 'Speckle'}))
    with pytest.raises(OptionError, match='exactly one of dataroot_gt or skimage_images'):
        SyntheticNoiseDataset(sk_opt(dataroot_gt=osp.join(paired_folder, 'gt')))
    with pytest.raises(DataError, match=r'datasets\.test\.dataroot_gt.*does not exist'):
        SyntheticNoiseDataset({'phase': 'test', 'dataroot_gt': '/no/such/dir', 'noise': NOISE})
    with pytest.raises(OptionError, match='split'):
        SyntheticNoiseDataset(sk_opt(split='val'))


def test_folder_source_with_every_noise_model(paired_folder):
    for noise in ({
            'type': 'CorrelatedGaussianNoise',
            'sigma': 15,
            'kernel_sigma': 1
    }, {
            'type': 'SpatiallyVaryingGaussianNoise',
            'sigma_min': 0,
            'sigma_max': 40,
            'direction': 'vertical'
    }):
        ds = SyntheticNoiseDataset({'phase': 'val', 'dataroot_gt': osp.join(paired_folder, 'gt'), 'noise': noise})
        item = ds[0]
        assert len(ds) == 6 and item['name'] == 'img000' and item['lq'].shape == (3, 24, 32)
        assert not torch.equal(item['lq'], item['gt'])
        np.testing.assert_array_equal(ds[0]['lq'].numpy(), item['lq'].numpy())


def test_cache_is_never_modified():
    ds = SyntheticNoiseDataset(sk_opt(phase='train', skimage_images=['chelsea'], gt_size=32, crop=None))
    random.seed(0)
    for _ in range(6):  # random crops with in-place flips/rotations
        ds[0]['gt'].mul_(0)
    path = ds.paths[0]
    assert list(ds.cache) == [path]
    fresh = SyntheticNoiseDataset(sk_opt(skimage_images=['chelsea'], crop=None, cache_images=False))
    assert fresh.cache is None
    np.testing.assert_array_equal(ds.cache[path], fresh[0]['gt'].permute(1, 2, 0).numpy())
    test_ds = SyntheticNoiseDataset(sk_opt(skimage_images=['chelsea'], crop=None))
    test_ds[0]['gt'].mul_(0)
    assert test_ds[0]['gt'].max() > 0  # the returned tensor does not share memory with the cache


def test_channel_shuffle_permutes_the_clean_colours(tmp_path):
    import cv2
    os.makedirs(tmp_path / 'gt')
    colour = np.array([51, 128, 204], np.uint8)  # RGB
    cv2.imwrite(str(tmp_path / 'gt' / 'flat.png'), np.broadcast_to(colour[::-1], (40, 40, 3)).copy())
    camera_off = {'type': 'CameraNoise', 'shot': 0, 'read': 0, 'jpeg_quality': None}  # zero noise: lq = gt
    opt = {'phase': 'train', 'dataroot_gt': str(tmp_path / 'gt'), 'gt_size': 16, 'noise': camera_off}
    random.seed(0)
    plain = {tuple((SyntheticNoiseDataset(opt)[0]['gt'][:, 0, 0] * 255).round().int().tolist()) for _ in range(12)}
    assert plain == {(51, 128, 204)}
    ds = SyntheticNoiseDataset(dict(opt, use_channel_shuffle=True))
    seen = set()
    for _ in range(40):
        item = ds[0]
        assert torch.equal(item['lq'], item['gt'])
        seen.add(tuple((item['gt'][:, 0, 0] * 255).round().int().tolist()))
    assert len(seen) == 6 and all(sorted(s) == [51, 128, 204] for s in seen)  # every permutation, nothing else
