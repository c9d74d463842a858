# python benchmarks/throughput.py --threads 1                       # CPU: small configs (the embedded DnCNN)
# python benchmarks/throughput.py --device cuda --out gpu.md         # GPU: the released configurations
"""Throughput of test-time adaptation: our loop (batch sizes, speed modes) against the official loop re-enacted.

For each arch and loss, LAN on ``--images`` synthetic 256x256 images (adapt_cost's smooth colour image with Gaussian
noise), ``--steps`` steps each. Runners:

- ``official``: ``adapt_cost.official_image`` (chjinny/LAN main.py re-enacted: model re-created and checkpoint
  re-read for every image, an extra no-grad forward every step for scoring, BasicSR's numpy PSNR/SSIM per step);
- ``ours B=b <mode>``: ``lan_basicsr.models.lan_model.adapt_batch`` over batches of b, in the default mode
  (channels-last) or a speed mode (``bf16``: autocast; ``compile``: torch.compile, static shapes).

The runners alternate in the same process, ``--rounds`` times (the starting runner rotates), so that load from other
processes on a shared machine falls on all of them alike; per image we report the median over rounds of the CPU time
(``time.process_time``, all threads) and of the wall time, with the spread (min-max), and the ratio of medians
against the official loop. A warm-up image (1 step) per runner comes first and is not timed; for ``compile`` its time
(the compilations) is printed. Agreement is asserted: every step's mean PSNR of each default-mode runner within
``--tolerance`` dB (1e-3) of the official loop's. Each speed mode's deviation from the default mode (B=1) is printed:
at the last step and the largest over steps.

Small configs (default on CPU): the embedded DnCNN with its weights (``lan_basicsr/weights/dncnn_gaussian.pth``) and
adapt_cost's small Restormer (random weights); ``--configs full`` (default on CUDA): the released DnCNN (SIDD
block) and Restormer configurations with random weights (the speed does not depend on the values).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from os import path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for _path in (ROOT, osp.join(ROOT, 'benchmarks')):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from adapt_cost import CONFIGS, METRICS, _build, _test_image, arch_config, official_image  # noqa: E402

EMBEDDED = osp.join(ROOT, 'lan_basicsr', 'weights', 'dncnn_gaussian.pth')
MODES = {'default': {}, 'bf16': {'amp': 'bf16'}, 'compile': {'compile': True}}


def network(configs, arch):
    """``(network_g options, checkpoint to write or None for the embedded one)``."""
    if configs == 'small' and arch == 'DnCNN':
        from lan_basicsr.embedded import embedded_model
        return embedded_model('dncnn_gaussian')[1], EMBEDDED
    return arch_config(configs, arch) if configs == 'full' else CONFIGS['small'][arch], None


def _sync(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


class Ours:
    """Our loop at one batch size and speed mode, on a network built once and loaded once."""

    def __init__(self, arch_opt, ckpt, loss_fn, device, batch, mode):
        import torch

        from lan_basicsr.models.lan_model import SpeedModes, build_adapter
        from lan_basicsr.utils.checkpoint import load_network
        self.name = f'ours B={batch} {mode}'
        self.batch, self.mode, self.device, self.loss_fn = batch, mode, device, loss_fn
        self.speed = SpeedModes(**MODES[mode])
        self.net = _build(arch_opt, device, seed=1)
        load_network(self.net, ckpt)
        self.speed.prepare(self.net)
        self.adapter = build_adapter(self.net, {'type': 'LAN'})
        self.torch = torch

    def run(self, images, steps, seeds):
        from lan_basicsr.models.lan_model import adapt_batch
        psnr = []
        for start in range(0, len(images), self.batch):
            chunk = images[start:start + self.batch]
            lq = self.torch.cat([lq for lq, _ in chunk])
            if self.speed.channels_last:
                lq = lq.contiguous(memory_format=self.torch.channels_last)
            gt = self.torch.cat([gt for _, gt in chunk])
            generators = [self.torch.Generator().manual_seed(s) for s in seeds[start:start + self.batch]]
            results = adapt_batch(
                self.net, self.adapter, self.loss_fn, lq, gt, steps, generators, METRICS, speed=self.speed)
            psnr += [r.psnr for r in results]
        return psnr


class Official:
    name = 'official'
    batch = 1
    mode = 'official'

    def __init__(self, arch_opt, ckpt, loss_fn, device):
        self.arch_opt, self.ckpt, self.loss_fn, self.device = arch_opt, ckpt, loss_fn, device

    def run(self, images, steps, seeds):
        import torch
        psnr = []
        for (lq, gt), seed in zip(images, seeds):
            generator = torch.Generator().manual_seed(seed)
            scores = official_image(self.ckpt, self.arch_opt, self.loss_fn, lq, gt, steps, generator, self.device)
            psnr.append(scores[0])
        return psnr


def _timed(runner, images, steps, seeds, device):
    _sync(device)
    cpu, wall = time.process_time(), time.perf_counter()
    psnr = runner.run(images, steps, seeds)
    _sync(device)
    return time.process_time() - cpu, time.perf_counter() - wall, psnr


def _mean_per_step(psnr):
    return [statistics.fmean(column) for column in zip(*psnr)]


def _spread(values):
    return f'{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]'


def bench(args, arch, loss_name, device):
    """Rows of one (arch, loss): every runner's per-image times and its PSNR agreement."""
    import torch
    from basicsr.utils.registry import LOSS_REGISTRY
    loss_fn = LOSS_REGISTRY.get(loss_name)().to(device)
    arch_opt, ckpt = network(args.configs, arch)
    with tempfile.TemporaryDirectory() as tmp:
        if ckpt is None:
            ckpt = osp.join(tmp, 'net.pth')
            torch.save({'params': _build(arch_opt, 'cpu').state_dict()}, ckpt)
        runners = [Official(arch_opt, ckpt, loss_fn, device)]
        for mode in args.modes:
            sizes = args.batch_sizes if mode == 'default' else args.speed_batch_sizes
            runners += [Ours(arch_opt, ckpt, loss_fn, device, b, mode) for b in sizes]
        images = [_test_image(args.size, 100 + i, device) for i in range(args.images)]
        seeds = [1 + i for i in range(args.images)]
        warm = {r.name: _timed(r, images[:r.batch], 1, seeds[:r.batch], device)[1] for r in runners}
        times, psnr = {r.name: [] for r in runners}, {}
        for k in range(args.rounds):  # interleaved; the first runner rotates
            for runner in runners[k % len(runners):] + runners[:k % len(runners)]:
                cpu, wall, scores = _timed(runner, images, args.steps, seeds, device)
                times[runner.name].append((cpu / len(images), wall / len(images)))
                psnr[runner.name] = _mean_per_step(scores)
    cpu_official = statistics.median(t[0] for t in times['official'])
    wall_official = statistics.median(t[1] for t in times['official'])
    reference = psnr[runners[1].name]  # ours, B=1, default mode
    rows = []
    for runner in runners:
        cpu, wall = [t[0] for t in times[runner.name]], [t[1] for t in times[runner.name]]
        curve = psnr[runner.name]
        rows.append({
            'arch': arch,
            'loss': loss_name,
            'runner': runner.name,
            'images_per_s': 1 / statistics.median(wall),
            'cpu_s': _spread(cpu),
            'wall_s': _spread(wall),
            'cpu_ratio': statistics.median(cpu) / cpu_official,
            'wall_ratio': statistics.median(wall) / wall_official,
            'dpsnr_official': max(abs(a - b) for a, b in zip(curve, psnr['official'])),
            'dpsnr_default_last': abs(curve[-1] - reference[-1]),
            'dpsnr_default_max': max(abs(a - b) for a, b in zip(curve, reference)),
            'warmup_s': warm[runner.name],
            'psnr_last': curve[-1],
        })
        if runner.mode == 'default' and rows[-1]['dpsnr_official'] > args.tolerance:
            raise AssertionError(f'{arch} {loss_name} {runner.name}: per-step mean PSNR differs from the official '
                                 f'loop by {rows[-1]["dpsnr_official"]:.2e} dB > {args.tolerance:g}')
    return rows


def table(rows):
    head = ('| arch | loss | runner | images/s (wall) | CPU s / image | wall s / image | CPU ÷ official | '
            'wall ÷ official | max \\|ΔPSNR\\| vs official (dB) | ΔPSNR vs default, last / max (dB) | warm-up s |')
    lines = [head, '|' + '---|' * 11]
    for r in rows:
        lines.append(f'| {r["arch"]} | {r["loss"]} | {r["runner"]} | {r["images_per_s"]:.3f} | {r["cpu_s"]} | '
                     f'{r["wall_s"]} | {r["cpu_ratio"]:.3f} | {r["wall_ratio"]:.3f} | {r["dpsnr_official"]:.1e} | '
                     f'{r["dpsnr_default_last"]:.1e} / {r["dpsnr_default_max"]:.1e} | {r["warmup_s"]:.1f} |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--configs', choices=['full', 'small'], default=None, help='default: full on CUDA, else small')
    parser.add_argument('--archs', nargs='+', default=['DnCNN', 'Restormer'], choices=['DnCNN', 'Restormer', 'Uformer'])
    parser.add_argument('--losses', nargs='+', default=['ZSN2NLoss', 'Nbr2NbrLoss'])
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--images', type=int, default=4, help='images per round (a multiple of every batch size)')
    parser.add_argument('--batch-sizes', nargs='+', type=int, default=[1, 2, 4])
    parser.add_argument('--modes', nargs='+', default=list(MODES), choices=list(MODES))
    parser.add_argument(
        '--speed-batch-sizes',
        nargs='+',
        type=int,
        default=None,
        help='batch sizes of the speed modes (default: 1 and the largest of --batch-sizes)')
    parser.add_argument(
        '--tf32',
        action='store_true',
        help='CUDA: allow TF32 in convolutions and matmuls (torch allows it in cuDNN convolutions by '
        'default); off by default here, so that every runner computes in float32 and the PSNR '
        'agreement can be asserted')
    parser.add_argument('--rounds', type=int, default=3, help='interleaved repetitions (medians over them)')
    parser.add_argument('--threads', type=int, default=None, help='torch threads on CPU (default: all cores)')
    parser.add_argument('--tolerance', type=float, default=1e-3, help='dB, default mode vs official, every step')
    parser.add_argument('--out', default=None, help='also write the table (Markdown) and the rows (.json) here')
    args = parser.parse_args(argv)
    import torch

    import lan_basicsr  # noqa: F401
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    args.configs = args.configs or ('full' if args.device.startswith('cuda') else 'small')
    if args.threads:
        torch.set_num_threads(args.threads)
    args.speed_batch_sizes = args.speed_batch_sizes or sorted({1, max(args.batch_sizes)})
    if any(args.images % b for b in args.batch_sizes + args.speed_batch_sizes):
        parser.error('--images must be a multiple of every batch size')
    device = torch.device(args.device)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # as tools/test.py; the warm-up image pays for the tuning
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = args.tf32
        what = f'{torch.cuda.get_device_name(device)} (TF32 {"on" if args.tf32 else "off"})'
    else:
        what = f'CPU, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores'
    header = (f'throughput: {args.configs} configs on {what}; torch {torch.__version__}; LAN, {args.images} images of '
              f'{args.size}x{args.size}, {args.steps} steps, {args.rounds} interleaved rounds; medians [min-max]')
    print(header, flush=True)
    rows = []
    start = time.time()
    for arch in args.archs:
        for loss in args.losses:
            rows += bench(args, arch, loss, device)
            print(table([r for r in rows if r['arch'] == arch and r['loss'] == loss]), flush=True)
    text = f'{header}\n\n{table(rows)}\n\n(total {time.time() - start:.0f} s)\n'
    print(f'total {time.time() - start:.0f} s')
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
        with open(osp.splitext(args.out)[0] + '.json', 'w') as f:
            json.dump({'header': header, 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()
