"""DenoiseModel: the official recipes' training extras, and plain inference under torchrun equal to one process."""
import json
import os
import subprocess
import sys
from os import path as osp

import cv2
import pytest
import torch
import yaml
from basicsr.losses.basic_loss import CharbonnierLoss
from conftest import tiny_dncnn

from lan_basicsr.archs.dncnn_arch import DnCNN
from lan_basicsr.models.denoise_model import DenoiseModel, Mixup, ProgressiveSchedule
from lan_basicsr.test import test_pipeline as run_test_pipeline
from lan_basicsr.train import train_pipeline
from lan_basicsr.utils.errors import OptionError
from tests.conftest import make_paired_folder

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _opt(train=None, batch_size=4, gt_size=16):
    train = {'optim_g': {'type': 'SGD', 'lr': 1.}, 'pixel_opt': {'type': 'MSELoss'}, **(train or {})}
    return {
        'name': 'denoise_test',
        'model_type': 'DenoiseModel',
        'num_gpu': 0,
        'is_train': True,
        'dist': False,
        'rank': 0,
        'world_size': 1,
        'path': {},
        'network_g': tiny_dncnn(),
        'datasets': {
            'train': {
                'batch_size_per_gpu': batch_size,
                'gt_size': gt_size
            }
        },
        'train': train,
    }


def _batch(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, 3, size, size, generator=g)
    return {'lq': gt + 0.1 * torch.randn(gt.shape, generator=g), 'gt': gt}


@pytest.mark.parametrize('train,max_norm', [({'grad_clip': 1e-3}, 1e-3), ({'use_grad_clip': True}, 0.01)])
def test_grad_clip_bounds_the_update(train, max_norm):
    torch.manual_seed(0)
    model = DenoiseModel(_opt(train))
    before = [p.detach().clone() for p in model.net_g.parameters()]
    model.feed_data(_batch())
    model.optimize_parameters(1)
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.net_g.parameters())])
    assert model.log_dict['grad_norm'] > 10 * max_norm  # the raw gradient was clipped...
    assert step.norm().item() == pytest.approx(max_norm, rel=1e-4)  # ...so SGD(lr=1) moved by max_norm


def test_no_scheduler_keeps_lr_and_named_scheduler_is_built():
    model = DenoiseModel(_opt())
    assert model.schedulers == []
    model.update_learning_rate(5)
    assert model.get_current_learning_rate() == [1.]
    model = DenoiseModel(
        _opt({'scheduler': {
            'type': 'CosineAnnealingRestartCyclicLR',
            'periods': [2, 2],
            'eta_mins': [1., 0.]
        }}))
    lrs = []
    for it in range(1, 6):
        model.update_learning_rate(it)
        lrs.append(model.get_current_learning_rate()[0])
    assert lrs == pytest.approx([1., 1., 1., 0.5, 0.])


def test_progressive_schedule_stages_and_crop():
    schedule = ProgressiveSchedule(iters=[2, 3, 1], mini_batch_sizes=[4, 2, 1], gt_sizes=[16, 12, 8])
    assert [schedule(it) for it in range(1, 9)] == [(4, 16)] * 2 + [(2, 12)] * 3 + [(1, 8)] * 3
    data = _batch(4, 16)
    lq, gt = ProgressiveSchedule.crop(data['lq'], 2 * data['lq'], 2, 12)
    assert lq.shape == (2, 3, 12, 12) and torch.equal(gt, 2 * lq)  # same images, same window
    assert any(
        torch.equal(lq[0], data['lq'][i, :, t:t + 12, s:s + 12]) for i in range(4) for t in range(5) for s in range(5))


def test_progressive_training_crops_each_iteration():
    model = DenoiseModel(_opt({'progressive': {'iters': [1, 1], 'mini_batch_sizes': [4, 2], 'gt_sizes': [16, 8]}}))
    shapes = []
    for it in (1, 2, 3):
        model.feed_data(_batch())
        model.optimize_parameters(it)
        shapes.append(tuple(model.output.shape))
    assert shapes == [(4, 3, 16, 16), (2, 3, 8, 8), (2, 3, 8, 8)]


@pytest.mark.parametrize('progressive,dataset_key,match', [
    ({
        'iters': [1],
        'mini_batch_sizes': [8],
        'gt_sizes': [16]
    }, None, 'larger than datasets.train.batch_size_per_gpu'),
    ({
        'iters': [1],
        'mini_batch_sizes': [4],
        'gt_sizes': [32]
    }, None, 'larger than datasets.train.gt_size'),
    ({
        'iters': [1, 2],
        'mini_batch_sizes': [4],
        'gt_sizes': [16]
    }, None, 'same length'),
    (None, 'gt_sizes', 'go in a "train.progressive'),
])
def test_progressive_options_are_checked(progressive, dataset_key, match):
    opt = _opt({'progressive': progressive} if progressive else None)
    if dataset_key:
        opt['datasets']['train'][dataset_key] = [16]
    with pytest.raises(OptionError, match=match):
        DenoiseModel(opt)


def test_mixup_mixes_pairs_alike_and_respects_start_iter():
    torch.manual_seed(0)
    lq = torch.rand(4, 3, 8, 8)
    mixup = Mixup(beta=1.2, prob=1., per_sample=True, start_iter=3)
    assert mixup(lq, 2 * lq, 2)[0] is lq
    mixed_lq, mixed_gt = mixup(lq, 2 * lq, 3)
    assert not torch.equal(mixed_lq, lq)
    assert torch.allclose(mixed_gt, 2 * mixed_lq, atol=1e-6)


def test_charbonnier_eps_is_configurable():
    # BasicSR's CharbonnierLoss computes sqrt(d^2 + eps): Uformer's sqrt(d^2 + 1e-3^2) is eps 1e-6.
    pred, target = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    uformer = torch.mean(torch.sqrt((pred - target)**2 + 1e-3**2))
    assert torch.allclose(CharbonnierLoss(eps=1e-6)(pred, target), uformer, rtol=1e-6, atol=0)


def test_torchrun_inference_equals_single_process(tmp_path):
    """A 2-process test job shards the images (5: uneven) and gathers scores equal to a single process's.

    BatchNorm (buffers) matters: a DDP-wrapped forward would broadcast them collectively and hang on the uneven split.
    """
    pairs = make_paired_folder(str(tmp_path / 'pairs'), num=5, size=(20, 24))
    torch.manual_seed(0)
    torch.save({'params': DnCNN(3, 3, 4, 3, 'BR').state_dict()}, tmp_path / 'net.pth')  # BatchNorm buffers
    opt = {
        'name': 'ddp_test',
        'model_type': 'DenoiseModel',
        'num_gpu': 0,
        'manual_seed': 0,
        'network_g': tiny_dncnn('BR'),
        'path': {
            'pretrain_network_g': str(tmp_path / 'net.pth')
        },
        'datasets': {
            'test': {
                'name': 'pairs',
                'type': 'PairedNoisyDataset',
                'dataroot_lq': f'{pairs}/lq',
                'dataroot_gt': f'{pairs}/gt'
            }
        },
        'val': {
            'save_img': False,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr'
                },
                'ssim': {
                    'type': 'calculate_ssim'
                }
            }
        },
    }
    opt_path = tmp_path / 'test.yml'
    opt_path.write_text(yaml.safe_dump(opt))
    out = tmp_path / 'out'
    out.mkdir()
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
        osp.join(ROOT, 'tests', 'helpers', 'ddp_worker.py'), 'test',
        str(tmp_path / 'dist'),
        str(out), '-opt',
        str(opt_path), '--launcher', 'pytorch'
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={
            **os.environ, 'OMP_NUM_THREADS': '1'
        })
    assert result.returncode == 0, result.stderr[-3000:]
    single = run_test_pipeline(str(tmp_path / 'single'), argv=['-opt', str(opt_path)]).metric_results
    assert set(single) == {'psnr', 'ssim'}
    for rank in (0, 1):
        assert json.loads((out / f'metrics_rank{rank}.json').read_text()) == single


def test_recipe_option_files_are_consistent():
    """The SIDD recipes and the embedded model's file: schedules cover total_iter, crops fit, held-out stays out."""
    from lan_basicsr.models.lr_scheduler import build_scheduler
    from lan_basicsr.utils.options import load_config
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.)
    for arch in ('dncnn', 'restormer', 'uformer'):
        opt = load_config(osp.join(ROOT, 'options', f'train_{arch}_sidd.yml'))
        assert opt['name'] == f'train_{arch}_sidd' and opt['train']['pixel_opt']['type'] == 'MSELoss'
        assert opt['datasets']['train']['dataroot_lq'] == 'datasets/SIDD/train/lq.lmdb'
        build_scheduler(optimizer, opt['train']['scheduler'])
        train, ds = opt['train'], opt['datasets']['train']
        if 'progressive' in train:
            ProgressiveSchedule(batch_size=ds['batch_size_per_gpu'], gt_size=ds['gt_size'], **train['progressive'])
            assert sum(train['progressive']['iters']) == train['total_iter']
        if train['scheduler']['type'] == 'CosineAnnealingRestartCyclicLR':
            assert sum(train['scheduler']['periods']) == train['total_iter']
    restormer = load_config(osp.join(ROOT, 'options', 'train_restormer_sidd.yml'))
    assert restormer['network_g']['LayerNorm_type'] == 'BiasFree' and restormer['train']['grad_clip'] == 0.01
    gaussian = load_config(osp.join(ROOT, 'options', 'train_dncnn_gaussian.yml'))
    demo = load_config(osp.join(ROOT, 'options', 'demo_lan_dncnn_gaussian.yml'))
    heldout = set(gaussian['datasets']['val']['heldout'])
    assert not heldout & set(gaussian['datasets']['train']['skimage_images'])
    assert all(set(ds['heldout']) == heldout and ds['split'] == 'heldout' for ds in demo['datasets'].values())
    assert demo['network_g'] == gaussian['network_g']


def test_grey_network_trains_and_validates_on_colour_data(tmp_path):
    """A grey DnCNN trained on colour pairs without a color option: train and val data both follow the network."""
    pairs = make_paired_folder(str(tmp_path / 'pairs'), num=4, size=(20, 24))
    data = {'type': 'PairedNoisyDataset', 'dataroot_lq': f'{pairs}/lq', 'dataroot_gt': f'{pairs}/gt'}
    opt = {
        'name': 'grey_train',
        'model_type': 'DenoiseModel',
        'num_gpu': 0,
        'manual_seed': 0,
        'network_g': {
            **tiny_dncnn(), 'in_nc': 1,
            'out_nc': 1
        },
        'datasets': {
            'train': {
                **data, 'name': 'tiny',
                'gt_size': 16,
                'batch_size_per_gpu': 2,
                'num_worker_per_gpu': 0
            },
            'val': {
                **data, 'name': 'tiny_val'
            }
        },
        'train': {
            'total_iter': 2,
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-3
            },
            'pixel_opt': {
                'type': 'MSELoss'
            }
        },
        'val': {
            'save_img': True,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr'
                }
            }
        },
    }
    (tmp_path / 'opt.yml').write_text(yaml.safe_dump(opt))
    model = train_pipeline(str(tmp_path), argv=['-opt', str(tmp_path / 'opt.yml')])
    assert 0 < model.metric_results['psnr'] < 100
    saved = cv2.imread(
        str(tmp_path / 'experiments' / 'grey_train' / 'visualization' / 'tiny_val' / 'img000_2.png'),
        cv2.IMREAD_UNCHANGED)
    assert saved.shape == (20, 24)  # validation images saved grey
