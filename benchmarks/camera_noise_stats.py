# python benchmarks/camera_noise_stats.py [--size 512] [--repeats 20] [--seeds 400]
"""CameraNoise: its CPU time on one core, the mean of its noise per design, and what the round trip loses.

1. Speed: the whole model and its stages on a crop of a scikit-image photograph.
OpenCV is limited to one thread (``cv2.setNumThreads(1)``; numpy's element-wise work is single-threaded anyway) and
each figure is the median CPU time (``time.process_time``) of ``--repeats`` calls with different seeds, so the
numbers do not depend on other processes sharing the machine. The stages are timed separately (unprocess, drawing
the raw noise, one forward pipeline with its demosaic, JPEG); ``reference: mean`` and ``clean`` both run the forward
pipeline twice.

2. Mean of the sRGB noise ``d`` (0-255 units) on flat grey patches, for ``reference: mean`` / ``clean`` and
``bounded`` on / off (shot 0.01, JPEG off, the other stages random per seed); the standard error comes from the spread
of the per-seed means (the noise is spatially correlated, so pixels are not independent samples).

3. What the alternative design (noisy = JPEG(P(U(x) + n)) against the target x) would ask the network to undo besides
the noise: PSNR of the noise-free round trip P(U(x)) against x on the three held-out photographs, per demosaic method.
"""
import argparse
import statistics
import sys
import time
from os import path as osp

import cv2
import numpy as np

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import lan_basicsr  # noqa: E402,F401
from lan_basicsr.data.camera_noise import CameraNoise  # noqa: E402
from lan_basicsr.data.synthetic_noise_dataset import skimage_image_path  # noqa: E402


def median_cpu(fn, repeats):
    times = []
    for seed in range(repeats):
        start = time.process_time()
        fn(seed)
        times.append(time.process_time() - start)
    return statistics.median(times), min(times), max(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=512, help='square crop size (default 512)')
    parser.add_argument('--repeats', type=int, default=20, help='timed calls per figure (default 20)')
    parser.add_argument('--seeds', type=int, default=400, help='noise draws per mean (default 400)')
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    img = cv2.imread(skimage_image_path('astronaut'))[..., ::-1].astype(np.float32) / 255.
    img = np.ascontiguousarray(cv2.resize(img, (args.size, args.size), interpolation=cv2.INTER_AREA))
    model = CameraNoise()
    p = model.draw_params(np.random.default_rng(0))
    p['jpeg_quality'] = p['jpeg_quality'] or 90
    raw = model.unprocess(img, p)
    noise = model.draw_raw_noise(raw, p, np.random.default_rng(0))
    rows = [
        ('CameraNoise (all stages, JPEG)', lambda s: model(img, np.random.default_rng(s))),
        ('  unprocess (tone, gamma, CCM, gains, mosaic)', lambda s: model.unprocess(img, p)),
        ('  raw shot + read noise', lambda s: model.draw_raw_noise(raw, p, np.random.default_rng(s))),
        ('  process (gains, demosaic, CCM, gamma, tone), once', lambda s: model.process(raw + noise, p)),
        ('  JPEG round trip', lambda s: CameraNoise.jpeg(img, p['jpeg_quality'], p['jpeg_subsampling'])),
    ]
    print(f'{args.size}x{args.size} RGB, one core, median of {args.repeats} calls (min-max), CPU ms:')
    for label, fn in rows:
        med, low, high = median_cpu(fn, args.repeats)
        print(f'{label:52s} {1e3 * med:7.1f}  ({1e3 * low:.1f}-{1e3 * high:.1f})')

    levels = (0.05, 0.15, 0.5, 0.95)
    print(f'\nmean of d on flat grey 64x64 patches, 0-255 units (+- standard error), {args.seeds} seeds, shot 0.01:')
    print('reference  bounded  ' + '  '.join(f'x = {v:<14}' for v in levels))
    for reference in ('mean', 'clean'):
        for bounded in (True, False):
            m = CameraNoise(shot=0.01, jpeg_quality=None, reference=reference, bounded=bounded)
            cells = []
            for level in levels:
                flat = np.full((64, 64, 3), level, np.float32)
                means = [
                    255. * (m(flat, np.random.default_rng(s)) - flat).mean(dtype=np.float64) for s in range(args.seeds)
                ]
                cells.append(f'{np.mean(means):+6.2f} +- {np.std(means) / np.sqrt(len(means)):4.2f}   ')
            print(f'{reference:9s}  {str(bounded):7s}  ' + '  '.join(cells))

    print('\nnoise-free round trip P(U(x)) vs x (PSNR dB), held-out photographs, 5 random cameras each:')
    for method in ('bilinear', 'EA'):
        m = CameraNoise(demosaic=method)
        psnrs = []
        for name in ('astronaut', 'chelsea', 'coffee'):
            x = cv2.imread(skimage_image_path(name))[..., ::-1].astype(np.float32) / 255.
            for seed in range(5):
                q = m.draw_params(np.random.default_rng(seed))
                y = m.process(m.unprocess(x, q), q)
                psnrs.append(10 * np.log10(1 / np.mean((y - x)**2)))
        print(f'  demosaic {method:8s} mean {np.mean(psnrs):.2f} dB (min {np.min(psnrs):.2f}, max {np.max(psnrs):.2f})')


if __name__ == '__main__':
    main()
