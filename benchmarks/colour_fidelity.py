# python benchmarks/colour_fidelity.py [--models dncnn_camera dncnn_gaussian]
"""Colour fidelity of the embedded denoisers on synthetic inputs only: does a network move channel means?

A denoiser should not change the mean colour of a region it denoises. Two checks that need no real data:

1. Flat colours without noise: 18 patches (grey 0.3, 0.5, 0.75 with one channel 0.05 below or above the others); the
   output's channel means against the input's (0-255 units). A network that learned a colour prior from its training
   photographs pulls some of them towards the colours it has seen.
2. The three held-out photographs (astronaut, chelsea, coffee), clean and under camera noise (shot 1e-4, JPEG 60-100,
   seed 0 + index): the largest channel-mean shift of the output against its input.

The pass line is the colour check of benchmarks/real_pairs_report.py: every channel mean within 1/255 of the input's.
"""
import argparse
import sys
from os import path as osp

import cv2
import numpy as np
import torch

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools'))
from _entry import run  # noqa: E402  (the repository root on sys.path; one-line errors, exit status 2)

import lan_basicsr  # noqa: E402,F401


def load(name):
    from basicsr.utils.registry import ARCH_REGISTRY

    from lan_basicsr.embedded import embedded_model
    from lan_basicsr.utils.checkpoint import load_network
    path, network_g = embedded_model(name)
    net = ARCH_REGISTRY.get(network_g.pop('type'))(**network_g)
    load_network(net, path, strict=True)
    return net.eval()


def denoise(net, img):
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]).clamp(0, 1)
    return out[0].numpy().transpose(1, 2, 0)


def shift(net, img):
    """Channel-mean change (0-255 units, R, G, B) of the 8-bit output against the input."""
    out = np.round(denoise(net, img) * 255.)
    return out.reshape(-1, 3).mean(0) - img.reshape(-1, 3).mean(0) * 255.


def main(argv=None):
    from lan_basicsr.data.camera_noise import CameraNoise
    from lan_basicsr.data.synthetic_noise_dataset import skimage_image_path
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=['dncnn_camera', 'dncnn_gaussian'], help='embedded models')
    args = parser.parse_args(argv)
    flats = []
    for base in (0.3, 0.5, 0.75):
        for channel in range(3):
            for delta in (-0.05, 0.05):
                colour = np.full(3, base, np.float32)
                colour[channel] += delta
                flats.append((f'{base:.2f} {"RGB"[channel]}{delta:+.2f}', colour))
    photos = [
        cv2.imread(skimage_image_path(n))[..., ::-1].astype(np.float32) / 255.
        for n in ('astronaut', 'chelsea', 'coffee')
    ]
    noise = CameraNoise(shot=1e-4)
    noisy = [noise(p, np.random.default_rng(i)) for i, p in enumerate(photos)]
    print('1. flat colours, no noise: channel-mean shift of the output (0-255 units, R / G / B)')
    nets = {name: load(name) for name in args.models}
    print('| colour | ' + ' | '.join(args.models) + ' |\n|---|' + '---|' * len(args.models))
    worst = {name: [] for name in nets}
    for label, colour in flats:
        img = np.broadcast_to(colour, (64, 64, 3)).copy()
        cells = []
        for name, net in nets.items():
            s = shift(net, img)
            worst[name].append(np.abs(s).max())
            cells.append(' / '.join(f'{v:+.1f}' for v in s))
        print(f'| {label} | ' + ' | '.join(cells) + ' |')
    for name in nets:
        w = np.array(worst[name])
        print(f'{name}: {(w <= 1 + 1e-9).sum()} of {len(w)} flat colours within 1/255; largest shift {w.max():.1f}')
    print('\n2. held-out photographs: largest channel-mean shift (0-255 units), clean / camera noise (shot 1e-4)')
    for name, net in nets.items():
        cells = [
            f'{np.abs(shift(net, c)).max():.2f} / {np.abs(shift(net, n)).max():.2f}' for c, n in zip(photos, noisy)
        ]
        print(f'{name}: astronaut {cells[0]}, chelsea {cells[1]}, coffee {cells[2]}')


if __name__ == '__main__':
    torch.set_num_threads(1)
    run(main)
