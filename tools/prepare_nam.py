# Usage: python tools/prepare_nam.py --src datasets/CC15 --dst datasets/Nam
"""Nam et al. CVPR 2016 (CC15: ``{scene}_real.png`` noisy / ``{scene}_mean.png`` clean) -> ``dst/lq``, ``dst/gt``.

Same layout as PolyU. By default the (512x512) crops are copied whole as ``{scene}.png``; ``--tile-size 512`` tiles
larger images like PolyU (``{scene}_{index:04d}.png``). Other files (e.g. ``*_ours.png``) are ignored. The paper's
Nam crop protocol is not published: the test options use the PolyU rule (top-left 256x256) unless configured.
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
        prog='tools/prepare_nam.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--src', required=True, help='folder with *_real / *_mean images')
    parser.add_argument('--dst', required=True, help='output folder; lq/ and gt/ are created in it (must be empty)')
    parser.add_argument('--tile-size', type=int, default=0, help='tile side; 0 = whole images (default)')
    parser.add_argument('--workers', type=int, default=1, help='worker processes (default: 1 = serial)')
    parser.add_argument('--compress-level', type=int, default=1, help='PNG compression 0-9 (default: 1)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    scan = scan_pairs(args.src, noisy_suffix='_real', clean_suffix='_mean')
    if not scan.pairs:
        raise DataError(f'{args.src}: no {{scene}}_real / {{scene}}_mean image pairs found')
    summary = prepare_paired_folder(
        scan,
        args.dst,
        tile_size=args.tile_size,
        workers=args.workers,
        compress_level=args.compress_level,
        progress=not args.no_progress)
    what = f'{args.tile_size}x{args.tile_size} tiles' if args.tile_size else 'images'
    print('Nam: ' + '\n'.join(summary.report(what)))
    if scan.ignored:
        print(f'  ignored {len(scan.ignored)} other image file(s), e.g. {osp.basename(scan.ignored[0])}')
    print(f'wrote {osp.join(args.dst, "lq")} and {osp.join(args.dst, "gt")} in {time.time() - start:.1f}s')
    return summary


if __name__ == '__main__':
    run(main)
