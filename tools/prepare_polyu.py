# Usage: python tools/prepare_polyu.py --src ../shared/datasets/PolyU --dst datasets/PolyU
#        python tools/prepare_polyu.py --src ../shared/datasets/PolyU --dst datasets/PolyU_cropped --cropped
"""PolyU (Xu et al. 2018) -> ``dst/lq`` (noisy) and ``dst/gt`` (clean) PNG folders, the official LAN protocol.

OriginalImages: ``{scene}_Real.JPG`` / ``{scene}_mean.JPG`` cut into non-overlapping 512x512 tiles (ragged edges
dropped), row-major from 0, ``{scene}_{index:04d}.png``. The test options then take the top-left 256x256 of each tile
(``crop: {size: 256, position: top_left}``). ``--cropped``: the 100 CroppedImages pairs as whole images
``{scene}.png``. Unpaired, unreadable or size-mismatched files are reported by name and skipped.
"""
import argparse
import time
from os import path as osp

from _entry import run

import lan_basicsr  # noqa: F401  (compat shim before basicsr)
from lan_basicsr.data.prepare_util import prepare_paired_folder, scan_pairs
from lan_basicsr.utils.errors import DataError
from lan_basicsr.utils.options import LANArgumentParser, add_debug_argument


def parse_args(argv=None):
    parser = LANArgumentParser(
        prog='tools/prepare_polyu.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--src', required=True, help='PolyU root (with OriginalImages/ and CroppedImages/) or an image folder')
    parser.add_argument('--dst', required=True, help='output folder; lq/ and gt/ are created in it (must be empty)')
    parser.add_argument('--cropped', action='store_true', help='use CroppedImages (*_real / *_mean 512x512 crops)')
    parser.add_argument(
        '--tile-size',
        type=int,
        default=None,
        help='tile side; 0 = whole images (default: 512 for OriginalImages, 0 with --cropped)')
    parser.add_argument('--workers', type=int, default=4, help='worker processes (default: 4; 1 = serial)')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression 0-9 (default: 1)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sub = osp.join(args.src, 'CroppedImages' if args.cropped else 'OriginalImages')
    folder = sub if osp.isdir(sub) else args.src
    tile = args.tile_size if args.tile_size is not None else (0 if args.cropped else 512)
    start = time.time()
    scan = scan_pairs(folder, noisy_suffix='_Real', clean_suffix='_mean')
    if not scan.pairs:
        raise DataError(f'{folder}: no {{scene}}_Real / {{scene}}_mean image pairs found')
    summary = prepare_paired_folder(
        scan,
        args.dst,
        tile_size=tile,
        workers=args.workers,
        compress_level=args.compress_level,
        progress=not args.no_progress)
    what = f'{tile}x{tile} tiles' if tile else 'images'
    print(f'PolyU {osp.basename(osp.normpath(folder))}: ' + '\n'.join(summary.report(what)))
    print(f'wrote {osp.join(args.dst, "lq")} and {osp.join(args.dst, "gt")} in {time.time() - start:.1f}s')
    return summary


if __name__ == '__main__':
    run(main)
