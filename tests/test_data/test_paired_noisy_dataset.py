"""PairedNoisyDataset and NoisyImageDataset: folders, LMDBs, crops, and every input error naming its file/key."""
import gc
import os
import random
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils.lmdb_util import LmdbMaker

from lan_basicsr.data.noisy_image_dataset import NoisyImageDataset
from lan_basicsr.data.paired_noisy_dataset import PairedNoisyDataset
from lan_basicsr.utils.errors import DataError, OptionError


def folder_opt(root, **kw):
    opt = {
        'name': 'pairs',
        'phase': 'test',
        'dataroot_lq': osp.join(root, 'lq'),
        'dataroot_gt': osp.join(root, 'gt'),
        'io_backend': {
            'type': 'disk'
        }
    }
    opt.update(kw)
    return opt


def make_lmdb(path, images, meta_extra=(), skip_meta=()):
    """LMDB of {key: BGR uint8 array} via BasicSR's LmdbMaker, optionally with a doctored meta_info.txt."""
    maker = LmdbMaker(path, map_size=1 << 24)
    for key, img in images.items():
        maker.put(cv2.imencode('.png', img)[1].tobytes(), key, (*img.shape[:2], 3))
    maker.close()
    meta = osp.join(path, 'meta_info.txt')
    lines = [line for line in open(meta) if line.split('.')[0] not in skip_meta]
    with open(meta, 'w') as f:
        f.writelines(lines + [f'{k}.png (8,8,3) 1\n' for k in meta_extra])
    return path


def rand_imgs(keys, size=(20, 24), seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.integers(0, 256, (*size, 3), dtype=np.uint8) for k in keys}


def test_folder_items_match_files(paired_folder):
    ds = build_dataset(dict(folder_opt(paired_folder), type='PairedNoisyDataset'))
    assert isinstance(ds, PairedNoisyDataset) and len(ds) == 6
    item = ds[2]
    assert set(item) == {'lq', 'gt', 'lq_path', 'gt_path', 'name'}
    assert item['name'] == 'img002' and item['lq_path'].endswith(osp.join('lq', 'img002.png'))
    assert item['lq'].shape == (3, 24, 32) and item['lq'].dtype == torch.float32
    gt = cv2.imread(item['gt_path'])[..., ::-1] / 255.
    np.testing.assert_allclose(item['gt'].permute(1, 2, 0).numpy(), gt, atol=1e-6)


def test_fixed_crop_top_left_and_center(paired_folder):
    full = PairedNoisyDataset(folder_opt(paired_folder))[0]
    tl = PairedNoisyDataset(folder_opt(paired_folder, crop={'size': 16, 'position': 'top_left'}))[0]
    ce = PairedNoisyDataset(folder_opt(paired_folder, crop={'size': [8, 16], 'position': 'center'}))[0]
    assert torch.equal(tl['lq'], full['lq'][:, :16, :16]) and torch.equal(tl['gt'], full['gt'][:, :16, :16])
    assert torch.equal(ce['lq'], full['lq'][:, 8:16, 8:24])


def test_train_random_crop_keeps_pairs_aligned(tmp_path):
    root = str(tmp_path)
    for side in ('lq', 'gt'):
        os.makedirs(osp.join(root, side))
    for k, img in rand_imgs(['a', 'b']).items():  # lq == gt: any misalignment shows
        cv2.imwrite(osp.join(root, 'lq', f'{k}.png'), img)
        cv2.imwrite(osp.join(root, 'gt', f'{k}.png'), img)
    ds = PairedNoisyDataset(folder_opt(root, phase='train', gt_size=8, use_hflip=True, use_rot=True))
    random.seed(0)
    for i in range(8):
        item = ds[i % 2]
        assert item['lq'].shape == (3, 8, 8) and torch.equal(item['lq'], item['gt'])
    with pytest.raises(OptionError, match='datasets.train.gt_size'):
        PairedNoisyDataset(folder_opt(root, phase='train'))[0]


def test_missing_dataroot_names_the_option(paired_folder):
    opt = folder_opt(paired_folder)
    del opt['dataroot_lq']
    with pytest.raises(DataError, match=r'datasets\.test\.dataroot_lq.*"pairs".*not set'):
        PairedNoisyDataset(opt)
    with pytest.raises(DataError, match=r'datasets\.test\.dataroot_gt.*/nowhere does not exist'):
        PairedNoisyDataset(folder_opt(paired_folder, dataroot_gt='/nowhere'))


def test_missing_partner_and_orphan(paired_folder):
    os.remove(osp.join(paired_folder, 'lq', 'img003.png'))
    with pytest.raises(DataError, match=r'lq/img003\.png: missing \(partner of .*gt/img003\.png\)'):
        PairedNoisyDataset(folder_opt(paired_folder))
    os.remove(osp.join(paired_folder, 'gt', 'img003.png'))
    os.remove(osp.join(paired_folder, 'gt', 'img004.png'))
    with pytest.raises(DataError, match=r'lq/img004\.png: no GT partner'):
        PairedNoisyDataset(folder_opt(paired_folder))


def test_size_mismatch_and_corrupt_file(paired_folder):
    cv2.imwrite(osp.join(paired_folder, 'gt', 'img001.png'), np.zeros((10, 10, 3), np.uint8))
    with open(osp.join(paired_folder, 'lq', 'img005.png'), 'wb') as f:
        f.write(b'garbage')
    ds = PairedNoisyDataset(folder_opt(paired_folder))
    with pytest.raises(DataError, match=r'size mismatch: .*lq/img001\.png is 24x32, .*gt/img001\.png is 10x10'):
        ds[1]
    with pytest.raises(DataError, match=r'lq/img005\.png: cannot decode'):
        ds[5]


def test_lmdb_items_and_checks(tmp_path):
    imgs = rand_imgs(['k0', 'k1', 'k2'])
    lq = make_lmdb(str(tmp_path / 'lq.lmdb'), imgs)
    gt = make_lmdb(str(tmp_path / 'gt.lmdb'), imgs)
    opt = {'phase': 'val', 'dataroot_lq': lq, 'dataroot_gt': gt, 'io_backend': {'type': 'lmdb'}}
    ds = PairedNoisyDataset(dict(opt))
    assert len(ds) == 3
    item = ds[1]
    assert item['name'] == item['lq_path'] == 'k1'
    np.testing.assert_allclose(item['lq'].permute(1, 2, 0).numpy(), imgs['k1'][..., ::-1] / 255., atol=1e-6)

    extra = make_lmdb(str(tmp_path / 'extra.lmdb'), imgs, meta_extra=['ghost'])
    with pytest.raises(DataError, match='key "ghost" of .*extra.lmdb is not in'):
        PairedNoisyDataset(dict(opt, dataroot_lq=extra))
    both = make_lmdb(str(tmp_path / 'both.lmdb'), imgs, meta_extra=['ghost'])
    with pytest.raises(DataError, match=r'extra\.lmdb: key "ghost" is listed in meta_info.txt but not in the database'):
        PairedNoisyDataset(dict(opt, dataroot_lq=extra, dataroot_gt=both))
    unlisted = make_lmdb(str(tmp_path / 'unlisted.lmdb'), imgs, skip_meta=['k2'])
    unlisted_gt = make_lmdb(str(tmp_path / 'unlisted_gt.lmdb'), imgs, skip_meta=['k2'])
    with pytest.raises(DataError, match=r'unlisted\.lmdb: key "k2" is in the database but not in meta_info.txt'):
        PairedNoisyDataset(dict(opt, dataroot_lq=unlisted, dataroot_gt=unlisted_gt))


def test_lmdb_meta_shape_disagreement(tmp_path):
    imgs = rand_imgs(['k0'])
    lq = make_lmdb(str(tmp_path / 'lq.lmdb'), imgs)
    gt = make_lmdb(str(tmp_path / 'gt.lmdb'), imgs)
    meta = osp.join(gt, 'meta_info.txt')
    open(meta, 'w').write('k0.png (99,24,3) 1\n')
    ds = PairedNoisyDataset({'phase': 'test', 'dataroot_lq': lq, 'dataroot_gt': gt, 'io_backend': {'type': 'lmdb'}})
    with pytest.raises(DataError, match=r'LMDB key "k0" \(gt\): meta_info.txt says 99x24'):
        ds[0]
    open(meta, 'w').write('k0 without shape\n')
    with pytest.raises(DataError, match=r'meta_info.txt:1: malformed line'):
        PairedNoisyDataset({'phase': 'test', 'dataroot_lq': lq, 'dataroot_gt': gt, 'io_backend': {'type': 'lmdb'}})


def test_noisy_image_dataset_folder_and_lmdb(paired_folder, tmp_path):
    ds = build_dataset({
        'type': 'NoisyImageDataset',
        'name': 'own',
        'phase': 'test',
        'dataroot_lq': osp.join(paired_folder, 'lq'),
        'crop': {
            'size': 16
        }
    })
    assert isinstance(ds, NoisyImageDataset) and len(ds) == 6
    item = ds[0]
    assert set(item) == {'lq', 'lq_path', 'name'} and item['lq'].shape == (3, 16, 16) and item['name'] == 'img000'
    lq = make_lmdb(str(tmp_path / 'lq.lmdb'), rand_imgs(['a', 'b']))
    ds = NoisyImageDataset({'phase': 'test', 'dataroot_lq': lq, 'io_backend': {'type': 'lmdb'}})
    assert [ds[i]['name'] for i in range(2)] == ['a', 'b']
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(DataError, match='no images found'):
        NoisyImageDataset({'phase': 'test', 'dataroot_lq': str(tmp_path / 'empty')})
    with pytest.raises(OptionError, match='io_backend.type'):
        NoisyImageDataset({'phase': 'test', 'dataroot_lq': lq, 'io_backend': {'type': 'ftp'}})


def test_meta_info_file_selects_and_orders_pairs(paired_folder, tmp_path):
    listing = tmp_path / 'meta_info_sub.txt'
    listing.write_text('img004.png (24,32,3) 1\n\nimg001.png\n')  # BasicSR's line format or bare names
    ds = PairedNoisyDataset(folder_opt(paired_folder, meta_info_file=str(listing)))
    assert [ds[i]['name'] for i in range(len(ds))] == ['img004', 'img001']
    assert torch.equal(ds[1]['lq'], PairedNoisyDataset(folder_opt(paired_folder))[1]['lq'])
    listing.write_text('img001.png\nimg009.png\n')
    with pytest.raises(DataError, match=r'lq/img009.png: missing \(listed in .*meta_info_sub.txt\)|gt/img009.png'):
        PairedNoisyDataset(folder_opt(paired_folder, meta_info_file=str(listing)))
    listing.write_text('img001.png\nimg001.png\n')
    with pytest.raises(DataError, match='meta_info_sub.txt:2: "img001.png" listed twice'):
        PairedNoisyDataset(folder_opt(paired_folder, meta_info_file=str(listing)))
    with pytest.raises(DataError, match=r'datasets\.test\.meta_info_file.*nowhere.txt does not exist'):
        PairedNoisyDataset(folder_opt(paired_folder, meta_info_file=str(tmp_path / 'nowhere.txt')))


def test_meta_info_file_with_lmdb(tmp_path):
    imgs = rand_imgs(['k0', 'k1', 'k2'])
    lq, gt = make_lmdb(str(tmp_path / 'lq.lmdb'), imgs), make_lmdb(str(tmp_path / 'gt.lmdb'), imgs)
    listing = tmp_path / 'list.txt'
    listing.write_text('k2.png\nk0.png\n')
    opt = {'name': 'l', 'dataroot_lq': lq, 'dataroot_gt': gt, 'io_backend': {'type': 'lmdb'}}
    ds = PairedNoisyDataset(dict(opt, meta_info_file=str(listing)))
    assert [ds[i]['name'] for i in range(2)] == ['k2', 'k0']
    np.testing.assert_array_equal((ds[0]['gt'].numpy().transpose(1, 2, 0) * 255).round(), imgs['k2'][..., ::-1])
    del ds  # closes its LMDB environments (one process may open an environment once)
    gc.collect()
    listing.write_text('k3.png\n')
    with pytest.raises(DataError, match='key "k3" is not in'):
        PairedNoisyDataset(dict(opt, meta_info_file=str(listing)))
