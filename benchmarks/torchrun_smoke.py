# python benchmarks/torchrun_smoke.py --nproc 1        # run by benchmarks/gpu_check.sh (nccl on a GPU, else gloo)
"""torchrun smoke runs of the real pipelines, with resume: training (DenoiseModel) and test-time adaptation (LANModel).

Training: a tiny DnCNN on scikit-image photographs with synthetic noise (nothing downloaded), ``--nproc`` processes,
20 iterations uninterrupted, and 10 + ``--auto_resume`` to 20; the resumed weights must equal the uninterrupted ones
(exactly on CPU; on a GPU within 1e-5, since cuDNN may pick other kernels). Adaptation: LANModel, batches of 2, on
four held-out photographs (64x64 crops, Poisson-Gaussian noise), run twice (the second run finds every image done and
adapts nothing). Backend: nccl where CUDA is available (one GPU per process), gloo otherwise. Prints a summary; exit
status 1 on a failed check.
"""
import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from os import path as osp

import yaml

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
WORKER = osp.join(ROOT, 'tests', 'helpers', 'ddp_worker.py')
NET = {'type': 'DnCNN', 'in_nc': 3, 'out_nc': 3, 'nc': 16, 'nb': 4, 'act_mode': 'R'}


def _train_opt():
    return {
        'name': 'smoke_train',
        'model_type': 'DenoiseModel',
        'num_gpu': 'auto',
        'manual_seed': 0,
        'network_g': NET,
        'datasets': {
            'train': {
                'name': 'photos',
                'type': 'SyntheticNoiseDataset',
                'skimage_images': ['camera', 'coins', 'moon', 'rocket'],
                'noise': {
                    'type': 'GaussianNoise',
                    'sigma': 25
                },
                'gt_size': 32,
                'use_hflip': True,
                'use_rot': True,
                'dataset_enlarge_ratio': 100,
                'use_shuffle': True,
                'num_worker_per_gpu': 0,
                'batch_size_per_gpu': 4
            }
        },
        'path': {
            'pretrain_network_g': None,
            'resume_state': None
        },
        'train': {
            'total_iter': 20,
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-3
            },
            'pixel_opt': {
                'type': 'MSELoss'
            }
        },
        'logger': {
            'print_freq': 5,
            'save_checkpoint_freq': 10,
            'use_tb_logger': False
        },
    }


def _test_opt(ckpt):
    return {
        '_base_': osp.join(ROOT, 'options', '_base_', 'lan_base.yml'),
        'name': 'smoke_lan',
        'network_g': NET,
        'path': {
            'pretrain_network_g': ckpt
        },
        'adapt': {
            'steps': 5,
            'batch_size': 2,
            'loss': {
                'type': 'Nbr2NbrLoss'
            }
        },
        'datasets': {
            'test': {
                'name': 'heldout',
                'type': 'SyntheticNoiseDataset',
                'skimage_images': ['astronaut', 'chelsea', 'coffee', 'motorcycle_left'],
                'crop': {
                    'size': 64,
                    'position': 'center'
                },
                'noise': {
                    'type': 'PoissonGaussianNoise',
                    'photons': 20,
                    'read_sigma': 5
                },
                'seed': 0
            }
        },
    }


def _torchrun(nproc, mode, root, opt_path, *args):
    out = osp.join(root, 'out')
    os.makedirs(out, exist_ok=True)
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={nproc}', WORKER, mode, root,
        out, '-opt', opt_path, '--launcher', 'pytorch', *args
    ]
    start = time.time()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    if result.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{result.stderr[-4000:]}')
    print(f'  {mode} {" ".join(args) or "(uninterrupted)"}: {time.time() - start:.1f} s', flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--nproc', type=int, default=1, help='processes (on a GPU machine: at most one per GPU)')
    args = parser.parse_args(argv)
    import torch
    backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    print(f'torchrun smoke: {args.nproc} process(es), backend {backend}')
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        opt_path = osp.join(tmp, 'train.yml')
        with open(opt_path, 'w') as f:
            yaml.safe_dump(_train_opt(), f)
        full = _torchrun(args.nproc, 'train', osp.join(tmp, 'full'), opt_path)
        stopped = osp.join(tmp, 'stopped')
        _torchrun(args.nproc, 'train', stopped, opt_path, '--cfg-options', 'train.total_iter=10')
        resumed = _torchrun(args.nproc, 'train', stopped, opt_path, '--auto_resume')
        a = torch.load(osp.join(full, 'weights_rank0.pth'), weights_only=True)
        b = torch.load(osp.join(resumed, 'weights_rank0.pth'), weights_only=True)
        diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
        states = sorted(os.listdir(osp.join(stopped, 'experiments', 'smoke_train', 'training_states')))
        print(f'  training: states {states}; resumed vs uninterrupted weights: max |diff| {diff:.2e}')
        if diff > (0 if backend == 'gloo' else 1e-5) or '10.state' not in states:
            failures.append('training resume')

        ckpt = osp.join(tmp, 'full', 'experiments', 'smoke_train', 'models', 'net_g_latest.pth')
        test_path = osp.join(tmp, 'lan.yml')
        with open(test_path, 'w') as f:
            yaml.safe_dump(_test_opt(ckpt), f)
        lan_root = osp.join(tmp, 'lan')
        _torchrun(args.nproc, 'test', lan_root, test_path)
        per_step = osp.join(lan_root, 'results', 'smoke_lan', 'per_step.csv')
        with open(per_step) as f:
            first = f.read()
        _torchrun(args.nproc, 'test', lan_root, test_path)
        with open(per_step) as f:
            second = f.read()
        rows = list(csv.DictReader(first.splitlines()))
        images = sorted({r['image'] for r in rows})
        last = [float(r['psnr']) for r in rows if r['step'] == '5']
        first_step = [float(r['psnr']) for r in rows if r['step'] == '0']
        print(f'  LAN: {len(images)} images x 6 steps = {len(rows)} rows; mean PSNR step 0 '
              f'{sum(first_step) / len(first_step):.3f} -> step 5 {sum(last) / len(last):.3f} dB; rerun changed '
              f'nothing: {first == second}')
        if len(rows) != 24 or first != second:
            failures.append('LAN under torchrun')
    if failures:
        print(f'FAILED: {", ".join(failures)}')
        sys.exit(1)
    print('OK')


if __name__ == '__main__':
    main()
