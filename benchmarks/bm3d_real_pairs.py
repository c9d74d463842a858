# python benchmarks/bm3d_real_pairs.py --real-pairs datasets/PolyU [--name bm3d_PolyU] [--limit N] [--workers 2]
"""BM3D on real noisy/clean pairs: what a user would otherwise pick, on the same tiles as the LAN runs.

CBM3D (pip ``bm3d``, the authors' Python package: ``pip install -e ".[bm3d]"``; free for non-commercial use) with
its default ``np`` profile, on each noisy image alone: the noise level is estimated from that image by scikit-image's
``estimate_sigma`` (wavelet median absolute deviation, averaged over the three channels), nothing is tuned on the
clean images. Same data path as ``tools/demo.py --real-pairs`` (``PairedNoisyDataset``, the official top-left
256x256 crop) and the same scoring (``options/_base_/lan_base.yml``'s metrics). Deterministic.

Writes ``results/<name>/`` as a LANModel run does (``lan_basicsr.models.step_store``): ``per_step.csv`` (one step-0
row per image), ``inputs.csv`` (the noisy inputs' scores), ``summary.csv``, ``visualization/<dataset>/<image>.png``,
plus ``sigma.csv`` (the estimated sigma in 0-255 units and the CPU seconds per image). Images already in
``per_step.csv`` are skipped, so a stopped run continues and ``--limit N`` splits the work into several jobs.
"""
import argparse
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from os import path as osp
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools'))
from _entry import ROOT, run  # noqa: E402  (the repository root on sys.path; one-line errors, exit status 2)

import lan_basicsr  # noqa: E402,F401  (compat shim before basicsr; registers the datasets)
from lan_basicsr.models.step_store import StepStore, image_csv, input_csv, summarise, write_summary  # noqa: E402
from lan_basicsr.utils.errors import OptionError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--real-pairs', required=True, metavar='DIR', help='folder with lq/ and gt/ (same names)')
    parser.add_argument('--name', help='results folder name (default: bm3d_<folder name>)')
    parser.add_argument('--crop', type=int, default=256, help='top-left crop size (0: full images); default 256')
    parser.add_argument('--profile', default='np', help="BM3D profile (default 'np', the package's default)")
    parser.add_argument('--limit', type=int, default=None, help='denoise at most N new images in this run')
    parser.add_argument('--workers', type=int, default=1, help='denoising processes (results are written in order)')
    parser.add_argument('--results', default=osp.join(ROOT, 'results'), help='results root (default: results/)')
    return parser.parse_args(argv)


def bm3d_denoise(noisy, profile='np'):
    """``(denoised, sigma)`` for an RGB float image in [0, 1]: sigma estimated from the image alone."""
    try:
        import bm3d
    except ImportError:
        raise OptionError('BM3D needs the optional package bm3d: pip install -e ".[bm3d]"') from None
    from skimage.restoration import estimate_sigma
    sigma = float(estimate_sigma(noisy, channel_axis=-1, average_sigmas=True))
    return np.asarray(bm3d.bm3d_rgb(noisy, max(sigma, 1e-6), profile=profile)), sigma


def main(argv=None):
    from basicsr.data import build_dataset
    from basicsr.utils import get_root_logger, imwrite
    from tqdm import tqdm

    from lan_basicsr.utils.options import load_config
    args = parse_args(argv)
    if args.workers < 1:
        raise OptionError(f'--workers: expected a positive number of processes, got {args.workers}')
    folder = osp.abspath(args.real_pairs)
    label = osp.basename(folder.rstrip(os.sep))
    for sub in ('lq', 'gt'):
        if not osp.isdir(osp.join(folder, sub)):
            raise OptionError(f'--real-pairs {folder}: no {sub}/ folder inside (expected lq/ and gt/)')
    name = args.name or f'bm3d_{label}'
    out_root = osp.join(args.results, name)
    os.makedirs(osp.join(out_root, 'visualization', label), exist_ok=True)
    metrics = load_config(osp.join(ROOT, 'options', '_base_', 'lan_base.yml'))['val']['metrics']
    dataset = build_dataset({
        'name': label,
        'type': 'PairedNoisyDataset',
        'phase': 'test',
        'dataroot_lq': osp.join(folder, 'lq'),
        'dataroot_gt': osp.join(folder, 'gt'),
        'crop': {
            'size': args.crop,
            'position': 'top_left'
        } if args.crop else None
    })
    store = StepStore(out_root, 0, 0)
    done = set(store.consolidate())  # complete images only; a half-written one is redone
    todo = [i for i in range(len(dataset)) if (label, _stem(dataset.paths[i]['lq_path'])) not in done]
    if args.limit is not None:
        todo = todo[:args.limit]
    get_root_logger().info(f'BM3D ({args.profile}) on {len(dataset)} pairs of {folder}: {len(dataset) - len(todo)} '
                           f'done, {len(todo)} now -> {out_root}')
    psnrs = []
    work = _Denoiser(dataset, args.profile, metrics)
    pool = ProcessPoolExecutor(
        args.workers, mp_context=multiprocessing.get_context('spawn')) if args.workers > 1 else None
    results = pool.map(work, todo) if pool else map(work, todo)  # in order: one writer, the same files
    try:
        for name, out, scores, noisy_scores, sigma, cpu in tqdm(
                results, total=len(todo), unit='image', desc='BM3D', dynamic_ncols=True):
            imwrite(out, osp.join(out_root, 'visualization', label, f'{name}.png'))
            sigma_csv = osp.join(out_root, 'sigma.csv')
            header = '' if osp.isfile(sigma_csv) else 'dataset,image,sigma,cpu_s\n'
            with open(sigma_csv, 'a', encoding='utf-8') as f:  # (a redone image's last row counts)
                f.write(f'{header}{label},{name},{sigma * 255:.4f},{cpu:.2f}\n')
            result = SimpleNamespace(psnr=[scores['psnr']], ssim=[scores['ssim']], loss=[], stopped_at=None)
            store.append(
                image_csv(label, name, result, 0), input_csv(label, name, noisy_scores['psnr'], noisy_scores['ssim']))
            psnrs.append(scores['psnr'])
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    groups = store.consolidate()
    write_summary(out_root, summarise(groups, [0]))
    if psnrs:
        get_root_logger().info(f'BM3D: {len(psnrs)} images in this run, mean PSNR {np.mean(psnrs):.2f} dB; '
                               f'{len(groups)} of {len(dataset)} done')


class _Denoiser:
    """Picklable per-image work: BM3D on one item, its scores and the 8-bit BGR output image."""

    def __init__(self, dataset, profile, metrics):
        self.dataset, self.profile, self.metrics = dataset, profile, metrics

    def __call__(self, index):
        from basicsr.utils import tensor2img

        from lan_basicsr.metrics import score_images
        item = self.dataset[index]
        noisy = item['lq'].permute(1, 2, 0).numpy().astype(np.float64)
        start = time.process_time()
        denoised, sigma = bm3d_denoise(noisy, self.profile)
        cpu = time.process_time() - start
        out = torch.from_numpy(np.clip(denoised, 0, 1).transpose(2, 0, 1).astype(np.float32))
        return (item['name'], tensor2img(out), score_images(out, item['gt'], self.metrics),
                score_images(item['lq'], item['gt'], self.metrics), sigma, cpu)


def _stem(path):
    return osp.splitext(osp.basename(path))[0]


if __name__ == '__main__':
    run(main)
