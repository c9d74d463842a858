"""A prepared SIDD-style LMDB read end to end: BasicSR dataloaders (train and val) and plain inference with PSNR."""
import os
from os import path as osp

import cv2
import numpy as np
import pytest
import torch
import yaml
from basicsr.data import build_dataloader, build_dataset
from basicsr.metrics import calculate_psnr
from conftest import tiny_dncnn

from lan_basicsr.data.prepare_util import prepare_sidd_lmdb, scan_sidd


@pytest.fixture
def sidd_lmdb(tmp_path):
    rng = np.random.default_rng(0)
    scene = tmp_path / 'Data' / '0001_001_S6_00100_00060_3200_L'
    os.makedirs(scene)
    yy, xx = np.mgrid[0:100, 0:120]
    gt = np.stack([xx * 2, yy * 2, xx + yy], axis=2).astype(np.uint8)
    noisy = np.clip(gt + rng.normal(0, 15, gt.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(scene / '0001_GT_SRGB_010.PNG'), gt)
    cv2.imwrite(str(scene / '0001_NOISY_SRGB_010.PNG'), noisy)
    summary = prepare_sidd_lmdb(
        scan_sidd(str(tmp_path / 'Data')), str(tmp_path / 'train'), size=64, overlap=16, progress=False)
    assert summary.outputs == 2 * 3  # rows [0, 36], columns [0, 48, 56]
    return str(tmp_path / 'train')


def test_train_loader_from_lmdb(sidd_lmdb):
    opt = {
        'name': 'SIDD',
        'type': 'PairedNoisyDataset',
        'phase': 'train',
        'io_backend': {
            'type': 'lmdb'
        },
        'dataroot_lq': osp.join(sidd_lmdb, 'lq.lmdb'),
        'dataroot_gt': osp.join(sidd_lmdb, 'gt.lmdb'),
        'gt_size': 32,
        'use_hflip': True,
        'use_rot': True,
        'batch_size_per_gpu': 2,
        'num_worker_per_gpu': 0
    }
    loader = build_dataloader(build_dataset(opt), opt, num_gpu=0, dist=False, sampler=None, seed=0)
    batch = next(iter(loader))
    assert batch['lq'].shape == batch['gt'].shape == (2, 3, 32, 32)
    assert batch['lq_path'][0].startswith('0001_SRGB_010_s00')


def test_plain_inference_and_psnr_from_lmdb(sidd_lmdb):
    opt = {
        'name': 'SIDD_val',
        'type': 'PairedNoisyDataset',
        'phase': 'val',
        'io_backend': {
            'type': 'lmdb'
        },
        'dataroot_lq': osp.join(sidd_lmdb, 'lq.lmdb'),
        'dataroot_gt': osp.join(sidd_lmdb, 'gt.lmdb'),
        'crop': {
            'size': 48,
            'position': 'top_left'
        }
    }
    loader = build_dataloader(build_dataset(opt), opt)
    net = torch.nn.Conv2d(3, 3, 3, padding=1, bias=False)  # identity: the prediction is the noisy input
    with torch.no_grad():
        net.weight.zero_()
        net.weight[range(3), range(3), 1, 1] = 1
    psnrs = []
    for batch in loader:
        with torch.no_grad():
            out = net(batch['lq']).clamp(0, 1)
        torch.testing.assert_close(out, batch['lq'])
        pred, gt = (t[0].permute(1, 2, 0).numpy() * 255. for t in (out, batch['gt']))
        psnrs.append(calculate_psnr(pred, gt, crop_border=0))
    assert len(psnrs) == 6 and all(20 < p < 30 for p in psnrs)  # sigma 15 noise: ~24.6 dB


def test_tiny_lan_test_job_on_prepared_lmdb(tmp_path):
    """Issue 5, point 3: LANModel's test pipeline reading an LMDB made by the SIDD preparation."""
    from basicsr.utils.registry import ARCH_REGISTRY

    from lan_basicsr.test import test_pipeline

    scene = tmp_path / 'Data' / '0001_001_S6_00100_00060_3200_L'
    os.makedirs(scene)
    gt = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(scene / '0001_GT_SRGB_010.PNG'), gt)
    cv2.imwrite(str(scene / '0001_NOISY_SRGB_010.PNG'), 255 - gt)
    prepare_sidd_lmdb(scan_sidd(str(tmp_path / 'Data')), str(tmp_path / 'sidd'), size=64, overlap=48, progress=False)
    net_opt = tiny_dncnn()
    net = ARCH_REGISTRY.get('DnCNN')(**{k: v for k, v in net_opt.items() if k != 'type'})
    torch.save({'params': net.state_dict()}, str(tmp_path / 'net.pth'))
    opt = {
        'name': 'tiny_lan_lmdb',
        'model_type': 'LANModel',
        'num_gpu': 0,
        'manual_seed': 0,
        'network_g': net_opt,
        'path': {
            'pretrain_network_g': str(tmp_path / 'net.pth')
        },
        'adapt': {
            'type': 'LAN',
            'steps': 2,
            'loss': {
                'type': 'ZSN2NLoss'
            },
            'report_steps': [0, 2]
        },
        'datasets': {
            'test': {
                'name': 'sidd_lmdb',
                'type': 'PairedNoisyDataset',
                'io_backend': {
                    'type': 'lmdb'
                },
                'dataroot_lq': str(tmp_path / 'sidd' / 'lq.lmdb'),
                'dataroot_gt': str(tmp_path / 'sidd' / 'gt.lmdb'),
                'crop': {
                    'size': 16
                }
            }
        },
        'val': {
            'save_img': False,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 0
                }
            }
        }
    }
    with open(tmp_path / 'tiny.yml', 'w') as f:
        yaml.safe_dump(opt, f)
    test_pipeline(str(tmp_path), argv=['-opt', str(tmp_path / 'tiny.yml')])
    rows = open(tmp_path / 'results' / 'tiny_lan_lmdb' / 'per_step.csv').read().splitlines()
    images = sorted({row.split(',')[1] for row in rows[1:]})
    assert images == ['0001_SRGB_010_s001', '0001_SRGB_010_s002'] and len(rows) == 1 + 2 * 3
