"""--auto_resume continues a stopped run exactly: same losses and final weights as an uninterrupted run.

Both runs use the recipe extras that draw random numbers (progressive crops: Python's RNG; mixup: torch's), so a
resume that lost or replayed an RNG stream, the sampler position or the optimiser/scheduler state would differ.
"""
import os
import subprocess
import sys
from os import path as osp

import torch
import yaml
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from conftest import tiny_dncnn

from lan_basicsr.models.denoise_model import DenoiseModel
from lan_basicsr.train import train_pipeline
from tests.conftest import make_paired_folder

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _opt(train_set, batch_size, save_freq):
    return {
        'name': 'resume',
        'model_type': 'DenoiseModel',
        'num_gpu': 0,
        'manual_seed': 3,
        'network_g': tiny_dncnn(),
        'datasets': {
            'train': {
                'name': 'tiny',
                'type': 'PairedNoisyDataset',
                **train_set, 'gt_size': 16,
                'use_hflip': True,
                'use_rot': True,
                'use_shuffle': True,
                'num_worker_per_gpu': 0,
                'batch_size_per_gpu': batch_size
            }
        },
        'train': {
            'total_iter': 8,
            'optim_g': {
                'type': 'AdamW',
                'lr': 1e-2,
                'weight_decay': 1e-4
            },
            'scheduler': {
                'type': 'CosineAnnealingRestartCyclicLR',
                'periods': [3, 5],
                'eta_mins': [1e-2, 1e-4]
            },
            'grad_clip': 0.5,
            'progressive': {
                'iters': [3, 5],
                'mini_batch_sizes': [batch_size, batch_size - 1],
                'gt_sizes': [16, 12]
            },
            'mixup': {
                'beta': 1.2,
                'prob': 0.75
            },
            'pixel_opt': {
                'type': 'MSELoss'
            },
        },
        'logger': {
            'print_freq': 1,
            'save_checkpoint_freq': save_freq
        },
    }


def _write(tmp_path, opt):
    path = tmp_path / 'train.yml'
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def test_single_process_resume_gives_the_same_losses(tmp_path, monkeypatch):
    """9 images, batch 3: 3 iterations per epoch. Stop at 2 (mid-epoch), resume to 6 (an epoch end), resume to 8."""
    pairs = make_paired_folder(str(tmp_path / 'pairs'), num=9)
    opt_path = _write(tmp_path, _opt({'dataroot_lq': f'{pairs}/lq', 'dataroot_gt': f'{pairs}/gt'}, 3, save_freq=2))
    losses = []
    original = DenoiseModel.optimize_parameters

    def recording(self, current_iter):
        original(self, current_iter)
        losses.append((current_iter, self.log_dict['l_pix']))

    monkeypatch.setattr(DenoiseModel, 'optimize_parameters', recording)

    def run(root, *args):
        model = train_pipeline(str(root), argv=['-opt', opt_path, *args])
        return model.get_bare_model(model.net_g).state_dict()

    full_weights = run(tmp_path / 'full')
    full_losses, losses[:] = list(losses), []
    run(tmp_path / 'stopped', '--cfg-options', 'train.total_iter=2')
    run(tmp_path / 'stopped', '--auto_resume', '--cfg-options', 'train.total_iter=6')
    resumed_weights = run(tmp_path / 'stopped', '--auto_resume')
    assert [it for it, _ in full_losses] == list(range(1, 9))
    assert losses == full_losses  # exact floats, iteration by iteration
    assert all(torch.equal(full_weights[k], resumed_weights[k]) for k in full_weights)


def _make_lmdb(root, num):
    pairs = make_paired_folder(osp.join(root, 'pairs'), num=num, size=(20, 20))
    names = sorted(os.listdir(osp.join(pairs, 'gt')))
    for side in ('lq', 'gt'):
        make_lmdb_from_imgs(
            osp.join(pairs, side), osp.join(root, f'{side}.lmdb'), names, [osp.splitext(n)[0] for n in names])
    return {
        'dataroot_lq': osp.join(root, 'lq.lmdb'),
        'dataroot_gt': osp.join(root, 'gt.lmdb'),
        'io_backend': {
            'type': 'lmdb'
        }
    }


def _torchrun(tmp_path, root, out, opt_path, *args):
    os.makedirs(out, exist_ok=True)
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
        osp.join(ROOT, 'tests', 'helpers', 'ddp_worker.py'), 'train',
        str(root),
        str(out), '-opt', opt_path, '--launcher', 'pytorch', *args
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={
            **os.environ, 'OMP_NUM_THREADS': '1'
        })
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(osp.join(out, f'weights_rank{r}.pth'), weights_only=True) for r in (0, 1)]


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_auto_resume_reaches_the_same_weights(tmp_path):
    """2 processes on a tiny LMDB (12 pairs, batch 3 per process: 2 iterations per epoch), stopped at iteration 3
    (mid-epoch) and resumed with --auto_resume to 8: the same final weights as an uninterrupted run, on both ranks.
    """
    opt_path = _write(tmp_path, _opt(_make_lmdb(str(tmp_path), 12), 3, save_freq=3))
    full = _torchrun(tmp_path, tmp_path / 'full', tmp_path / 'out_full', opt_path)
    _torchrun(tmp_path, tmp_path / 'stopped', tmp_path / 'out_stopped', opt_path, '--cfg-options', 'train.total_iter=3')
    assert sorted(os.listdir(tmp_path / 'stopped' / 'experiments' / 'resume' / 'training_states')) == ['3.state']
    resumed = _torchrun(tmp_path, tmp_path / 'stopped', tmp_path / 'out_resumed', opt_path, '--auto_resume')
    assert _equal(full[0], full[1]) and _equal(resumed[0], resumed[1])  # DDP kept the ranks in step
    assert _equal(full[0], resumed[0])
    start = torch.load(tmp_path / 'stopped' / 'experiments' / 'resume' / 'models' / 'net_g_3.pth', weights_only=True)
    assert not _equal(start['params'], full[0])  # the resumed run did train after iteration 3
