# python benchmarks/device_agreement.py --device cuda      # run by benchmarks/gpu_check.sh
"""The adaptation loop on a GPU against the same loop on the CPU: per-step PSNR/SSIM agreement.

LAN and FullTrainable, ZS-N2N and Neighbor2Neighbor (its masks drawn from the same per-image CPU generators on both
devices), batch sizes 1 and 4, on ``--images`` synthetic 256x256 images (adapt_cost's), ``--steps`` steps, with the
embedded DnCNN and adapt_cost's small Restormer. The GPU runs twice: with torch's defaults (TF32 allowed in cuDNN
convolutions, what a user gets) and with TF32 off (float32 throughout, which should agree with the CPU to ~1e-5 dB).
Printed per row: the largest difference over images and steps of PSNR and SSIM, and of the step-N mean PSNR; also the
on-device scoring against BasicSR's numpy scoring of the same outputs. Exits non-zero if the TF32-off run misses
``--tolerance`` dB (1e-4) or 1e-6 SSIM at any step, or the on-device scoring misses 1e-6 dB.
"""
import argparse
import sys
from os import path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for _path in (ROOT, osp.join(ROOT, 'benchmarks')):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from adapt_cost import CONFIGS, METRICS, _build, _test_image  # noqa: E402
from throughput import EMBEDDED  # noqa: E402


def _run(arch_opt, ckpt, adapter_type, loss, device, batch, images, steps):
    import torch
    from basicsr.utils.registry import LOSS_REGISTRY

    from lan_basicsr.models.lan_model import SpeedModes, adapt_batch, build_adapter
    from lan_basicsr.utils.checkpoint import load_network
    net = _build(arch_opt, device, seed=1)
    if ckpt:
        load_network(net, ckpt)
    speed = SpeedModes()
    speed.prepare(net)
    adapter = build_adapter(net, {'type': adapter_type})
    loss_fn = LOSS_REGISTRY.get(loss)().to(device)
    out = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        lq = torch.cat([a for a, _ in chunk]).to(device).contiguous(memory_format=torch.channels_last)
        gt = torch.cat([b for _, b in chunk]).to(device)
        generators = [torch.Generator().manual_seed(1 + start + i) for i in range(len(chunk))]
        out += adapt_batch(net, adapter, loss_fn, lq, gt, steps, generators, METRICS, speed=speed)
    return out


def _tf32(on):
    import torch
    torch.backends.cudnn.allow_tf32 = on
    torch.backends.cuda.matmul.allow_tf32 = on


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--images', type=int, default=4)
    parser.add_argument('--steps', type=int, default=20)
    parser.add_argument('--tolerance', type=float, default=1e-4)
    parser.add_argument('--archs', nargs='+', default=['DnCNN', 'Restormer'])
    args = parser.parse_args(argv)
    import torch

    import lan_basicsr  # noqa: F401
    from lan_basicsr.embedded import embedded_model
    from lan_basicsr.metrics import TensorScorer, score_images
    images = [_test_image(256, 100 + i, 'cpu') for i in range(args.images)]
    name = torch.cuda.get_device_name(args.device) if args.device.startswith('cuda') else args.device
    print(f'device agreement: {name} vs CPU; {args.images} images of 256x256, '
          f'{args.steps} steps; max over images and steps')
    failures = []
    # the on-device scoring of a GPU output against BasicSR's numpy scoring of the same output
    lq, gt = (t.to(args.device) for t in images[0])
    scores = TensorScorer(gt, METRICS)(lq)
    ref = score_images(lq, gt, METRICS)
    dp, ds = abs(scores['psnr'].item() - ref['psnr']), abs(scores['ssim'].item() - ref['ssim'])
    print(f'on-device scoring vs BasicSR numpy: |dPSNR| {dp:.1e} dB, |dSSIM| {ds:.1e}')
    if dp > 1e-6 or ds > 1e-8:
        failures.append('on-device scoring')
    header = (f'| arch | method | loss | B | TF32 | max \\|dPSNR\\| (dB) | max \\|dSSIM\\| | '
              f'\\|d mean PSNR at step {args.steps}\\| (dB) |')
    print(header)
    print('|' + '---|' * 8)
    for arch in args.archs:
        arch_opt, ckpt = (embedded_model('dncnn_gaussian')[1],
                          EMBEDDED) if arch == 'DnCNN' else (CONFIGS['small'][arch], None)
        for adapter_type in ('LAN', 'FullTrainable'):
            for loss in ('ZSN2NLoss', 'Nbr2NbrLoss'):
                cpu = _run(arch_opt, ckpt, adapter_type, loss, 'cpu', 1, images, args.steps)
                for batch in (1, 4):
                    for tf32 in (True, False):
                        _tf32(tf32)
                        gpu = _run(arch_opt, ckpt, adapter_type, loss, args.device, batch, images, args.steps)
                        dp = max(abs(a - b) for c, g in zip(cpu, gpu) for a, b in zip(c.psnr, g.psnr))
                        ds = max(abs(a - b) for c, g in zip(cpu, gpu) for a, b in zip(c.ssim, g.ssim))
                        last = abs(sum(c.psnr[-1] - g.psnr[-1] for c, g in zip(cpu, gpu)) / len(cpu))
                        print(
                            f'| {arch} | {adapter_type} | {loss} | {batch} | {"on" if tf32 else "off"} | '
                            f'{dp:.1e} | {ds:.1e} | {last:.1e} |',
                            flush=True)
                        if not tf32 and (dp > args.tolerance or ds > 1e-6):
                            failures.append(f'{arch} {adapter_type} {loss} B={batch}')
    _tf32(True)
    if failures:
        print(f'FAILED (TF32 off beyond {args.tolerance} dB / 1e-6 SSIM): {"; ".join(failures)}')
        sys.exit(1)
    print(f'OK: with TF32 off every step within {args.tolerance} dB / 1e-6 SSIM of the CPU')


if __name__ == '__main__':
    main()
