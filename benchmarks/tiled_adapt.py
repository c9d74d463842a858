# python benchmarks/tiled_adapt.py --archs DnCNN --sizes 1 4 12         # embedded DnCNN, tiled vs untiled, on CPU
# python benchmarks/tiled_adapt.py --archs Restormer --sizes 1 4 --steps 1
# python benchmarks/tiled_adapt.py --accuracy                            # tiled vs whole-image adaptation results
"""Peak memory and time per step of test-time adaptation vs image size, tiled and untiled, side by side.

One LAN + ZS-N2N adaptation (``--steps`` steps of the self-supervised loss, backward and Adam, as LANModel's loop
does them) of a synthetic noisy image of 1, 4, 12 MP (4:3) per measurement, each in a fresh process. Networks: the
embedded DnCNN that ``lan-denoise`` uses (``lan_basicsr.embedded.DEFAULT_REAL_PHOTO_MODEL``, its weights) and a
Restormer: on CPU the reduced ``small`` configuration of ``benchmarks/adapt_cost.py`` (random weights: the cost does
not depend on them), on a GPU the released one
(``options/_base_/networks/restormer_sidd.yml``). Tiled: ``adapt.tile`` with ``--tile`` px and the automatic pad
(the receptive radius for DnCNN, 32 px for Restormer).

Memory on CPU: the process's peak RSS (VmHWM, everything: Python, torch, the network, the image) and, for reference,
the RSS after imports and model building; on GPU ``torch.cuda.max_memory_allocated``. Time: CPU seconds
(``time.process_time``, all threads) and wall seconds per step, the mean over the steps after the first (the first
when ``--steps 1``).

Untiled runs need memory linear in the image (about 1.7 KB/pixel for the embedded DnCNN): one is only started where
the line through the untiled anchor sizes (``--anchors``, measured first) predicts at most ``--rss-limit`` GiB;
the others are printed as the extrapolation ("~N GiB, extrapolated from ..."). Every child is also watched and killed
if its RSS passes ``--rss-limit`` (a machine shared with others must not swap).
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

from adapt_cost import CONFIGS  # noqa: E402  (benchmarks/ is the script's folder, first on sys.path)

RESTORMER_SMALL = CONFIGS['small']['Restormer']  # the CPU-sized Restormer of adapt_cost.py
ANCHORS = {'DnCNN': [1, 2], 'Restormer': [0.0625, 0.125]}  # untiled sizes (MP) that fit safely everywhere
GIB = 2**30


def image_shape(megapixels):
    """4:3 height, width (multiples of 8) of about ``megapixels`` MP; 12 MP = 3000 x 4000."""
    width = int(round((megapixels * 1e6 * 4 / 3)**0.5 / 8)) * 8
    return width * 3 // 4 // 8 * 8, width


def _status(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


def build_network(arch, device):
    import torch
    from basicsr.archs import build_network as build

    from lan_basicsr.embedded import embedded_model
    from lan_basicsr.utils.checkpoint import load_network
    if arch == 'DnCNN':
        weights, opt = embedded_model()  # DEFAULT_REAL_PHOTO_MODEL: the one lan-denoise uses
        net = build(opt)
        load_network(net, weights)
    else:
        if device.type == 'cuda':
            from lan_basicsr.utils.options import load_config
            opt = load_config(osp.join(ROOT, 'options', '_base_', 'networks', 'restormer_sidd.yml'))['network_g']
        else:
            opt = RESTORMER_SMALL
        torch.manual_seed(0)
        net = build(dict(opt))
    return net.to(device).eval()


def measure(args):
    """Child process: one adaptation; prints one JSON line."""
    import torch
    from basicsr.utils.registry import LOSS_REGISTRY

    import lan_basicsr  # noqa: F401
    from lan_basicsr.models.lan_model import build_adapter
    from lan_basicsr.models.tiling import build_tiled
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    net = build_network(args.arch, device)
    if args.tile:
        net, tile = build_tiled(net, {'size': args.tile, 'pad': None})
    h, w = image_shape(args.mp)
    g = torch.Generator().manual_seed(0)
    clean = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 16, generator=g), size=(h, w), mode='bilinear')
    lq = (clean + 15 / 255 * torch.randn(clean.shape, generator=g)).to(device)
    del clean
    adapter = build_adapter(net, {'type': 'LAN'})
    loss_fn = LOSS_REGISTRY.get('ZSN2NLoss')()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    base = _status('VmRSS')
    optimizer = adapter.reset(lq)
    cpu, wall = [], []
    for step in range(args.steps):
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        c0, w0 = time.process_time(), time.perf_counter()
        out = loss_fn(net, adapter.adapted_input(lq), step, args.steps)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        del out
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    timed = slice(1, None) if args.steps > 1 else slice(None)
    print(
        json.dumps({
            'shape': [h, w],
            'tile': getattr(net, 'size', None),
            'pad': getattr(net, 'pad', None),
            'peak_rss': _status('VmHWM'),
            'base_rss': base,
            'gpu_peak': torch.cuda.max_memory_allocated(device) if device.type == 'cuda' else None,
            'cpu_s': sum(cpu[timed]) / len(cpu[timed]),
            'wall_s': sum(wall[timed]) / len(wall[timed]),
        }))


def run_child(args, arch, mp, tile):
    """Run one measurement in a fresh process, killed if its RSS passes ``--rss-limit``; returns its JSON or None."""
    import psutil
    cmd = [
        sys.executable,
        osp.abspath(__file__), '--measure', arch,
        str(mp),
        str(tile), '--steps',
        str(args.steps), '--threads',
        str(args.threads), '--device', args.device
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watched, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        if peak > args.rss_limit * GIB:
            proc.kill()
            proc.wait()
            print(f'  {arch} {mp} MP tile {tile}: killed at {peak / GIB:.1f} GiB RSS (--rss-limit)', flush=True)
            return None
        time.sleep(0.2)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f'{" ".join(cmd)} failed:\n{err[-3000:]}')
    return json.loads(out.strip().splitlines()[-1])


def _line(points):
    """Least-squares line ``(intercept, slope)`` through ``[(pixels, value), ...]`` (two points at least)."""
    n = len(points)
    mx, my = sum(p for p, _ in points) / n, sum(v for _, v in points) / n
    slope = sum((p - mx) * (v - my) for p, v in points) / sum((p - mx)**2 for p, _ in points)
    return my - slope * mx, slope


def _fmt_memory(result, device):
    value = result['gpu_peak'] if device == 'cuda' else result['peak_rss']
    return f'{value / GIB:.2f} GiB'


def sweep(args):
    import torch
    cuda = args.device.startswith('cuda')
    what = 'max_memory_allocated' if cuda else 'peak RSS of the whole process'
    from lan_basicsr.embedded import DEFAULT_REAL_PHOTO_MODEL, EMBEDDED_MODELS
    dncnn = EMBEDDED_MODELS[DEFAULT_REAL_PHOTO_MODEL]['network_g']
    print(
        f'tiled_adapt: DnCNN = embedded {DEFAULT_REAL_PHOTO_MODEL} (nc {dncnn["nc"]}, nb {dncnn["nb"]}); '
        f'LAN + ZS-N2N on {args.device} ({args.threads} threads), {args.steps} step(s) per '
        f'measurement, tiles of {args.tile} px; memory = {what}; time = CPU s (wall s) per step',
        flush=True)
    rows = []
    for arch in args.archs:
        anchors = {mp: run_child(args, arch, mp, 0) for mp in args.anchors or ANCHORS[arch]}
        points = [(r['shape'][0] * r['shape'][1], r) for r in anchors.values() if r]
        memory = _line([(p, r['gpu_peak'] if cuda else r['peak_rss']) for p, r in points])
        cpu = _line([(p, r['cpu_s']) for p, r in points])
        for mp, r in anchors.items():
            rows.append((arch, mp, r, None))
            print(
                f'  anchor {arch} {mp} MP untiled: {_fmt_memory(r, args.device)}, {r["cpu_s"]:.1f} CPU s/step',
                flush=True)
        for mp in args.sizes:
            h, w = image_shape(mp)
            predicted = memory[0] + memory[1] * h * w
            untiled = anchors.get(mp)
            if untiled is None and predicted <= args.rss_limit * GIB:
                untiled = run_child(args, arch, mp, 0)
            tiled = run_child(args, arch, mp, args.tile)
            extrapolated = None
            if untiled is None:
                extrapolated = (predicted, cpu[0] + cpu[1] * h * w)
            rows.append((arch, mp, untiled or extrapolated, tiled))
            print(f'  {arch} {mp} MP done', flush=True)
    anchors_text = {a: ' and '.join(f'{m:g}' for m in args.anchors or ANCHORS[a]) for a in args.archs}
    print()
    print(f'| network | image | untiled memory | untiled CPU s/step | tiled ({args.tile} px) memory | '
          'tiled CPU s (wall s) per step |')
    print('|---|---|---|---|---|---|')
    for arch, mp, untiled, tiled in rows:
        if tiled is None:
            continue
        h, w = image_shape(mp)
        if isinstance(untiled, tuple):
            u_mem = f'~{untiled[0] / GIB:.1f} GiB (extrapolated from {anchors_text[arch]} MP)'
            u_cpu = f'~{untiled[1]:.0f}'
        else:
            u_mem, u_cpu = _fmt_memory(untiled, args.device), f'{untiled["cpu_s"]:.1f}'
        print(f'| {arch} | {w}x{h} ({h * w / 1e6:.1f} MP) | {u_mem} | {u_cpu} | {_fmt_memory(tiled, args.device)} '
              f'(pad {tiled["pad"]}) | {tiled["cpu_s"]:.1f} ({tiled["wall_s"]:.1f}) |')
    base = next((r for _, _, r, _ in rows if isinstance(r, dict)), None)
    if base and not cuda:
        print(f'(RSS after imports and model building: {base["base_rss"] / GIB:.2f} GiB; torch '
              f'{torch.__version__})')


def accuracy(args):
    """Tiled vs whole-image adaptation on small images: per-step PSNR differences and the final output's."""
    import torch

    import lan_basicsr  # noqa: F401
    from lan_basicsr.archs.dncnn_arch import DnCNN
    from lan_basicsr.archs.restormer_arch import Restormer
    from lan_basicsr.archs.uformer_arch import Uformer
    from lan_basicsr.losses import Nbr2NbrLoss, ZSN2NLoss
    from lan_basicsr.models.lan_model import adapt_image, build_adapter
    from lan_basicsr.models.tiling import TiledNetwork
    torch.set_num_threads(args.threads)
    nets = {
        'DnCNN (nb 4)':
        lambda: DnCNN(3, 3, 8, 4, 'R'),
        'Restormer (tiny)':
        lambda: Restormer(**{
            k: v
            for k, v in RESTORMER_SMALL.items() if k != 'type'
        }),
        'Uformer (tiny)':
        lambda: Uformer(
            img_size=64,
            embed_dim=4,
            depths=[2] * 9,
            num_heads=[1, 1, 2, 2, 2, 2, 2, 1, 1],
            win_size=4,
            modulator=True,
            drop_path_rate=0.),
    }
    g = torch.Generator().manual_seed(0)
    clean = torch.nn.functional.interpolate(
        torch.rand(1, 3, 8, 8, generator=g) * .8 + .1, size=(128, 128), mode='bicubic').clamp(0, 1)
    lq = clean + 15 / 255 * torch.randn(clean.shape, generator=g)
    print('Tiled vs whole-image adaptation, 128x128, tiles of 64 px, 20 steps, random-weight networks')
    print('| network | method | loss | pad | whole: PSNR step 0 -> 20 | tiled: step 0 -> 20 | max abs dPSNR | '
          'gain difference | max abs d output |')
    print('|---|---|---|---|---|---|---|---|---|')
    for name, make in nets.items():
        for method in ('LAN', 'FullTrainable'):
            for loss_cls in (ZSN2NLoss, Nbr2NbrLoss):
                for pad in ((4, ) if name.startswith('DnCNN') else (16, 32)):
                    results = []
                    for tiled in (False, True):
                        torch.manual_seed(0)
                        net = make().eval()
                        model = TiledNetwork(net, 64, pad) if tiled else net
                        adapter = build_adapter(model, {'type': method})
                        results.append(
                            adapt_image(model, adapter, loss_cls(), lq, clean, args.steps_accuracy,
                                        torch.Generator().manual_seed(1)))
                    a, b = results
                    diff = max(abs(x - y) for x, y in zip(a.psnr, b.psnr))
                    gain = (b.psnr[-1] - b.psnr[0]) - (a.psnr[-1] - a.psnr[0])
                    out = float((a.output - b.output).abs().max())
                    print(
                        f'| {name} | {method} | {loss_cls.__name__} | {pad} | {a.psnr[0]:.3f} -> {a.psnr[-1]:.3f} '
                        f'| {b.psnr[0]:.3f} -> {b.psnr[-1]:.3f} | {diff:.2g} | {gain:+.2g} | {out:.2g} |',
                        flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--measure', nargs=3, metavar=('ARCH', 'MP', 'TILE'), help=argparse.SUPPRESS)
    parser.add_argument('--archs', nargs='+', default=['DnCNN', 'Restormer'], choices=['DnCNN', 'Restormer'])
    parser.add_argument('--sizes', nargs='+', type=float, default=[1, 4, 12], help='image sizes in MP')
    parser.add_argument('--tile', type=int, default=512, help='tile size (px) of the tiled runs')
    parser.add_argument('--steps', type=int, default=2, help='adaptation steps per measurement')
    parser.add_argument('--threads', type=int, default=None, help='torch threads (default: all cores)')
    parser.add_argument('--device', default=None, help='cpu or cuda (default: cuda when available)')
    parser.add_argument(
        '--rss-limit',
        type=float,
        default=7.5,
        help='GiB: untiled runs predicted above it are '
        'extrapolated, not run; any child above it is killed')
    parser.add_argument(
        '--anchors', nargs='+', type=float, default=None, help='untiled anchor sizes in MP '
        f'(default: {ANCHORS})')
    parser.add_argument('--accuracy', action='store_true', help='tiled vs whole-image results on small images')
    parser.add_argument('--steps-accuracy', type=int, default=20, help='adaptation steps of --accuracy')
    args = parser.parse_args(argv)
    import torch

    import lan_basicsr  # noqa: F401  (first: the compat shim basicsr needs)
    args.device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    args.threads = args.threads or os.cpu_count()
    if args.measure:
        args.arch, mp, tile = args.measure
        args.mp, args.tile = float(mp), int(tile)
        return measure(args)
    if args.accuracy:
        return accuracy(args)
    return sweep(args)


if __name__ == '__main__':
    main()
