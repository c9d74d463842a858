# python benchmarks/adapt_cost.py                       # small configs on CPU (a few minutes), full ones on a GPU
# python benchmarks/adapt_cost.py --configs full --device cuda --steps 10
"""Cost of test-time adaptation: LAN vs FullTrainable (the paper's Table 2); the official loop re-enacted.

Part 1, for each arch and each loss at 256x256: time per adaptation step (loss forward + backward + optimiser
step; best of ``--steps`` after one warm-up step, the least disturbed by other load on the machine) and peak
memory, LAN vs FullTrainable side by side with the ratio. Every measurement runs in a fresh subprocess. Memory on
CPU: peak RSS (VmHWM, reset through ``/proc/self/clear_refs`` once the imports are done) minus the RSS at that
moment, so it counts the network, the optimiser state and the activations, not the Python/torch baseline. On GPU:
``torch.cuda.max_memory_allocated`` (network included).

``official_image`` re-enacts the official per-image loop (chjinny/LAN ``main.py``: model re-created and checkpoint
re-read from disk for every image, an extra no-grad forward every step just for scoring); ``benchmarks/throughput.py``
times our loop against it.

``--configs small`` (default without CUDA) uses reduced widths/depths so that the CPU run takes minutes; the ratios,
not the absolute times, are the point there. ``--configs full`` builds the released configurations.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from os import path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

CONFIGS = {
    'small': {
        'DnCNN': {
            'type': 'DnCNN',
            'in_nc': 3,
            'out_nc': 3,
            'nc': 16,
            'nb': 8,
            'act_mode': 'BR'
        },
        'Restormer': {
            'type': 'Restormer',
            'dim': 8,
            'num_blocks': [1, 1, 1, 2],
            'num_refinement_blocks': 1,
            'heads': [1, 1, 2, 2],
            'ffn_expansion_factor': 2.66,
            'bias': False,
            'LayerNorm_type': 'BiasFree'
        },
        'Uformer': {
            'type': 'Uformer',
            'img_size': 128,
            'embed_dim': 8,
            'depths': [1, 1, 1, 1, 1, 1, 1, 1, 1],
            'num_heads': [1, 1, 2, 2, 2, 2, 2, 1, 1],
            'win_size': 8,
            'mlp_ratio': 2.,
            'token_mlp': 'leff',
            'modulator': True
        },
    },
}
# The released configurations: the network_g blocks of the official checkpoints, one source of truth.
FULL_CONFIG_FILES = {'DnCNN': 'dncnn_sidd.yml', 'Restormer': 'restormer_sidd.yml', 'Uformer': 'uformer_b_sidd.yml'}
LOSSES = ('ZSN2NLoss', 'Nbr2NbrLoss')
METHODS = ('LAN', 'FullTrainable')
METRICS = {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}, 'ssim': {'type': 'calculate_ssim', 'crop_border': 0}}


def _rss_kib(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'{field} not in /proc/self/status')


def _test_image(size, seed, device):
    """A smooth colour image with Gaussian noise (sigma 15/255): (noisy, clean), 1,3,size,size."""
    import torch
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(1, 3, 8, 8, generator=g) * 0.8 + 0.1
    clean = torch.nn.functional.interpolate(clean, size=(size, size), mode='bicubic', align_corners=False).clamp(0, 1)
    noisy = clean + 15 / 255 * torch.randn(clean.shape, generator=g)
    return noisy.to(device), clean.to(device)


def arch_config(configs, arch):
    """``network_g`` options of ``arch``: the small CPU config, or the released one from options/_base_/networks."""
    if configs == 'small':
        return CONFIGS['small'][arch]
    from lan_basicsr.utils.options import load_config
    return load_config(osp.join(ROOT, 'options', '_base_', 'networks', FULL_CONFIG_FILES[arch]))['network_g']


def _build(arch_opt, device, seed=0):
    import torch
    from basicsr.archs import build_network
    torch.manual_seed(seed)
    return build_network(dict(arch_opt)).to(device).eval()


def _sync(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def measure(args):
    """Child process: time per step and peak memory of one (arch, loss, method); prints one JSON line."""
    import torch
    from basicsr.utils.registry import LOSS_REGISTRY

    import lan_basicsr  # noqa: F401
    from lan_basicsr.models.lan_model import build_adapter
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    arch_opt = arch_config(args.configs, args.arch)
    cpu = device.type == 'cpu'
    if cpu:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak RSS: count only what comes next
        base = _rss_kib('VmRSS')
    else:
        torch.cuda.reset_peak_memory_stats(device)
    net = _build(arch_opt, device)
    loss_fn = LOSS_REGISTRY.get(args.loss)().to(device)
    adapter = build_adapter(net, {'type': args.method})
    lq, _ = _test_image(args.size, 0, device)
    optimizer = adapter.reset(lq)
    generators = [torch.Generator().manual_seed(0)]
    times = []
    for step in range(args.steps + 1):  # step 0 is the warm-up
        _sync(device)
        start = time.perf_counter()
        out = loss_fn(net, adapter.adapted_input(lq), step, args.steps + 1, generators=generators)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - start)
        del out
    memory = (_rss_kib('VmHWM') - base) * 1024 if cpu else torch.cuda.max_memory_allocated(device)
    print(
        json.dumps({
            'time': min(times[1:]),
            'memory': memory,
            'trainable': sum(p.numel() for p in adapter.trainable_parameters())
        }))


def _child(args, arch, loss, method):
    cmd = [
        sys.executable,
        osp.abspath(__file__), '--measure', arch, loss, method, '--configs', args.configs, '--device', args.device,
        '--size',
        str(args.size), '--steps',
        str(args.steps), '--threads',
        str(args.threads)
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def official_image(ckpt, arch_opt, loss_fn, lq, gt, steps, generator, device):
    """The official per-image loop (chjinny/LAN main.py, method lan), re-enacted: fresh model, extra scoring pass."""
    import torch

    from lan_basicsr.metrics import score_images
    from lan_basicsr.utils.checkpoint import load_network
    net = _build(arch_opt, device, seed=1)  # get_model(): a new network ...
    load_network(net, ckpt)  # ... and the checkpoint read from disk, for every image
    for p in net.parameters():
        p.requires_grad = False
    phi = torch.nn.Parameter(torch.zeros_like(lq))
    optimizer = torch.optim.Adam([phi], lr=5e-4)
    psnr = []
    for i in range(steps):
        optimizer.zero_grad()
        adapted = lq + torch.tanh(phi)
        with torch.no_grad():
            pred = net(adapted).clip(0, 1)  # the extra forward, for scoring only
        loss = loss_fn(net, adapted, i, steps, generators=[generator]).loss
        loss.backward()
        optimizer.step()
        psnr.append(score_images(pred, gt, METRICS))
    with torch.no_grad():
        pred = net(lq + torch.tanh(phi)).clip(0, 1)
    psnr.append(score_images(pred, gt, METRICS))
    return [s['psnr'] for s in psnr], [s['ssim'] for s in psnr]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--measure', nargs=3, metavar=('ARCH', 'LOSS', 'METHOD'), help=argparse.SUPPRESS)
    parser.add_argument('--configs', choices=['full', 'small'], default=None, help='default: full on CUDA, else small')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--size', type=int, default=256, help='image side (default 256, as Table 2)')
    parser.add_argument('--steps', type=int, default=4, help='timed steps per measurement (best kept), after a warm-up')
    parser.add_argument('--threads', type=int, default=None, help='torch threads on CPU (default: all cores)')
    parser.add_argument('--archs', nargs='+', default=list(CONFIGS['small']), choices=list(CONFIGS['small']))
    args = parser.parse_args(argv)
    import torch

    import lan_basicsr  # noqa: F401
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    args.configs = args.configs or ('full' if args.device.startswith('cuda') else 'small')
    args.threads = args.threads or os.cpu_count()
    if args.measure:
        args.arch, args.loss, args.method = args.measure
        return measure(args)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    unit = 'MiB (peak RSS over baseline)' if device.type == 'cpu' else 'MiB (max_memory_allocated)'
    print(f'adapt_cost: {args.configs} configs on {args.device} ({torch.get_num_threads()} threads), '
          f'{args.size}x{args.size}, best of {args.steps} steps after 1 warm-up; memory in {unit}')
    header = (f'{"arch":<10} {"loss":<12} {"LAN s/step":>11} {"Full s/step":>12} {"time %":>7} '
              f'{"LAN MiB":>9} {"Full MiB":>9} {"mem %":>6} {"LAN params":>11} {"Full params":>12}')
    print(header)
    print('-' * len(header))
    start = time.time()
    for arch in args.archs:
        for loss in LOSSES:
            lan, full = (_child(args, arch, loss, method) for method in METHODS)
            print(
                f'{arch:<10} {loss:<12} {lan["time"]:11.4f} {full["time"]:12.4f} '
                f'{100 * lan["time"] / full["time"]:6.1f}% {lan["memory"] / 2**20:9.1f} '
                f'{full["memory"] / 2**20:9.1f} {100 * lan["memory"] / full["memory"]:5.1f}% '
                f'{lan["trainable"]:11d} {full["trainable"]:12d}',
                flush=True)
    print('(paper, LAN / full-trainable at 256x256, time / memory: Restormer ZS-N2N 79.9% / 93.3%, Nbr2Nbr 93.0% / '
          '92.2%; Uformer ZS-N2N 74.1% / 73.8%, Nbr2Nbr 85.2% / 74.2%)')
    print(f'total {time.time() - start:.0f} s')


if __name__ == '__main__':
    main()
