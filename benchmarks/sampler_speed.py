# PYTHONPATH=. python benchmarks/sampler_speed.py [--device cpu|cuda] [--repeats 20] [--threads N]
"""Speed of the Neighbor2Neighbor sub-sampler: ours (vectorised gather) against a per-channel loop.

The per-channel reference follows the official Neighbor2Neighbor / LAN approach (boolean masks over the
space-to-depth layout, a Python loop over channels); it is written here only for comparison. Both draw one neighbour
pair per 2x2 cell and build the two sub-images g1(y), g2(y). The script first checks that, given the same draw, both
produce identical sub-images, then prints the median time of each.
Run from the repository root (``PYTHONPATH=.`` is not needed once the package is installed).
"""
import argparse
import statistics
import time

import torch
from torch.nn import functional as F

import lan_basicsr  # noqa: F401  (compat shim before basicsr)
from lan_basicsr.losses import NEIGHBOUR_PAIRS, sample_neighbour_pairs, subsample


def per_channel_masks(draw):
    """Boolean masks over the flattened (B, H/2, W/2, 4) cell layout, one True per cell, from pair indices 0..7."""
    pairs = torch.tensor(NEIGHBOUR_PAIRS, device=draw.device)[draw.flatten()]  # N,2
    base = 4 * torch.arange(draw.numel(), device=draw.device)
    masks = []
    for k in range(2):
        mask = torch.zeros(4 * draw.numel(), dtype=torch.bool, device=draw.device)
        mask[base + pairs[:, k]] = True
        masks.append(mask)
    return masks


def per_channel_subimage(img, mask):
    """Sub-image selected by ``mask``, one channel at a time (the straightforward way)."""
    b, c, h, w = img.shape
    out = torch.zeros(b, c, h // 2, w // 2, dtype=img.dtype, device=img.device)
    for ch in range(c):
        cells = F.unfold(img[:, ch:ch + 1], 2, stride=2)  # B,4,H/2*W/2
        cells = cells.view(b, 4, h // 2, w // 2).permute(0, 2, 3, 1).reshape(-1)
        out[:, ch] = cells[mask].view(b, h // 2, w // 2)
    return out


def run_per_channel(img):
    draw = torch.randint(len(NEIGHBOUR_PAIRS), (img.shape[0], img.shape[2] // 2, img.shape[3] // 2), device=img.device)
    mask1, mask2 = per_channel_masks(draw)
    return per_channel_subimage(img, mask1), per_channel_subimage(img, mask2)


def run_ours(img, generators):
    idx1, idx2 = sample_neighbour_pairs(img, generators)
    return subsample(img, idx1), subsample(img, idx2)


def check_same(img):
    """Same draw -> identical sub-images from both implementations."""
    draw = torch.randint(len(NEIGHBOUR_PAIRS), (img.shape[0], img.shape[2] // 2, img.shape[3] // 2), device=img.device)
    pairs = torch.tensor(NEIGHBOUR_PAIRS, device=img.device)[draw]
    for k, mask in enumerate(per_channel_masks(draw)):
        assert torch.equal(subsample(img, pairs[..., k]), per_channel_subimage(img, mask))


def time_ms(fns, repeats, device):
    """Per function: (median, min) in ms. Runs are interleaved so that load from other processes hits all alike."""
    times = [[] for _ in fns]
    for fn in fns:
        fn()  # warm-up
    for _ in range(repeats):
        for fn, acc in zip(fns, times):
            if device.type == 'cuda':
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == 'cuda':
                torch.cuda.synchronize()
            acc.append(1000 * (time.perf_counter() - start))
    return [(statistics.median(t), min(t)) for t in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f'device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, '
          f'median (min) of {args.repeats} interleaved runs, draw + both sub-images')
    print('| input | vectorised, per-image CPU generator (ms) | per-channel loop (ms) | speed-up |')
    print('|---|---|---|---|')
    for size in (256, 1024):
        img = torch.rand(1, 3, size, size, device=device)
        check_same(img)
        gens = [torch.Generator().manual_seed(0)]
        (ours, ours_min), (ref, ref_min) = time_ms([lambda: run_ours(img, gens), lambda: run_per_channel(img)],
                                                   args.repeats, device)
        print(f'| 1x3x{size}x{size} | {ours:.2f} ({ours_min:.2f}) | {ref:.2f} ({ref_min:.2f}) | {ref / ours:.1f}x |')


if __name__ == '__main__':
    main()
