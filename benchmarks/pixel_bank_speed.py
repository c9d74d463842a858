# PYTHONPATH=. python benchmarks/pixel_bank_speed.py [--device cpu|cuda] [--sizes 256 512] [--repeats 3] [--threads N]
"""Speed of the pixel bank (PixelBankLoss, built once per image) against a per-pixel loop, and of one loss draw.

The per-pixel reference (a Python loop over pixels, numpy patch distances) is written here only for comparison and runs
on a small crop; the script first checks that it finds the same bank as the vectorised builder there (same distances,
so the same entries unless two are exactly tied). Then it prints, per image size, the median CPU time
(``time.process_time``; on CUDA wall time after synchronising) of building the bank and of one pseudo-instance draw.
"""
import argparse
import statistics
import time

import numpy as np
import torch

import lan_basicsr  # noqa: F401  (compat shim before basicsr)
from lan_basicsr.losses.pixel_bank_loss import build_pixel_bank, pick_entries, sample_bank_entries


def per_pixel_bank(img, bank_size, window, patch, exclude):
    """The bank by a loop over pixels and offsets (reflect padding, centre left out of the distance)."""
    c, h, w = img.shape
    radius, half = window // 2, patch // 2
    pad = np.pad(img, ((0, 0), (half, half), (half, half)), mode='reflect')
    out = np.zeros((bank_size, h, w), dtype=np.int64)
    for r in range(h):
        for col in range(w):
            ref = pad[:, r:r + patch, col:col + patch]
            found = []
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    if max(abs(dy), abs(dx)) <= exclude or not (0 <= r + dy < h and 0 <= col + dx < w):
                        continue
                    other = pad[:, r + dy:r + dy + patch, col + dx:col + dx + patch]
                    d = ((ref - other)**2).sum() - ((ref[:, half, half] - other[:, half, half])**2).sum()
                    found.append((d, (r + dy) * w + col + dx))
            found.sort(key=lambda t: t[0])
            out[:, r, col] = [i for _, i in found[:bank_size]]
    return out


def timed(fn, device, repeats):
    times = []
    for _ in range(repeats):
        if device.type == 'cuda':
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        else:
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--sizes', nargs='+', type=int, default=[256, 512])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: leave as is)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    opt = dict(bank_size=8, window=21, patch=7, exclude=2)
    small = torch.rand(1, 3, 24, 24, dtype=torch.float64)
    ours = build_pixel_bank(small, **opt)[0].numpy()
    ref = per_pixel_bank(small[0].numpy(), **opt)
    agree = (ours == ref).mean()
    print(f'vectorised vs per-pixel bank on 24x24: {100 * agree:.2f}% of entries equal')
    if agree < 0.999:
        raise SystemExit('the banks differ')
    start = time.process_time()
    per_pixel_bank(small[0].numpy(), **opt)
    loop = time.process_time() - start
    fast = timed(lambda: build_pixel_bank(small.float(), **opt), torch.device('cpu'), args.repeats)
    print(f'24x24 on the CPU: per-pixel loop {loop:.2f} s, vectorised {fast * 1000:.1f} ms ({loop / fast:.0f}x)')
    for size in args.sizes:
        img = torch.rand(1, 3, size, size, device=device)
        bank = build_pixel_bank(img, **opt)
        build = timed(lambda: build_pixel_bank(img, **opt), device, args.repeats)
        gens = [torch.Generator().manual_seed(0)]

        def draw():
            a, b = sample_bank_entries(bank, gens)
            pick_entries(img, bank, a), pick_entries(img, bank, b)

        print(f'{size}x{size} on {device}: bank {build:.3f} s, one pair of pseudo instances '
              f'{timed(draw, device, args.repeats) * 1000:.1f} ms')


if __name__ == '__main__':
    main()
