# python benchmarks/real_pairs_report.py --real-pairs datasets/PolyU [--name demo_real_PolyU] [--bm3d bm3d_PolyU]
"""The real-noise comparison of the embedded defaults, from finished results folders and the images themselves.

Reads the runs of ``tools/demo.py --real-pairs DIR`` (``results/<name>_<key>/per_step.csv`` and the denoised images
in ``visualization/``), the BM3D run of ``benchmarks/bm3d_real_pairs.py`` (``results/<bm3d>/``) and the noisy/clean
pairs of ``DIR`` (same crop), and writes one Markdown report (``results/<name>_report.md`` and the console):

- overall and per camera (the file-name prefix before ``_<scene>_<index>``): mean PSNR / SSIM of the noisy input, of
  BM3D, of each default at step 0 and after the last adaptation step of LAN and FullTrainable;
- the number of images that end worse (PSNR) than their noisy input;
- the colour-cast check: an image passes when each channel's mean of the output (the saved 8-bit image) is within
  1/255 of the noisy input's;
- the issue's goals, met or missed, with the numbers.

Runs that have not finished every image are named at the end and left out of the tables.

Nothing is recomputed but the noisy inputs' scores and the channel means; every number comes from files on disk.
"""
import argparse
import os
import sys
from collections import OrderedDict
from os import path as osp

import cv2
import numpy as np

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'tools'))
from _entry import ROOT, run  # noqa: E402  (the repository root on sys.path; one-line errors, exit status 2)

import lan_basicsr  # noqa: E402,F401  (compat shim before basicsr)
from lan_basicsr.utils.errors import DataError, OptionError  # noqa: E402

# (key in the demo option file, row label, model); the step-0 row of a model comes from its *_pretrained run
ROWS = (
    ('gaussian_pretrained', 'Gaussian default, step 0', 'gaussian'),
    ('gaussian_lan', 'Gaussian default + LAN', 'gaussian'),
    ('gaussian_full', 'Gaussian default + FullTrainable', 'gaussian'),
    ('camera_pretrained', 'camera-noise default, step 0', 'camera'),
    ('camera_lan', 'camera-noise default + LAN', 'camera'),
    ('camera_full', 'camera-noise default + FullTrainable', 'camera'),
)
COLOUR_TOLERANCE = 1.  # in 0-255 units


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--real-pairs', required=True, metavar='DIR', help='folder with lq/ and gt/ (same names)')
    parser.add_argument('--name', help='demo run prefix (default: demo_real_<folder name>)')
    parser.add_argument('--bm3d', help='BM3D results folder name (default: bm3d_<folder name>)')
    parser.add_argument('--crop', type=int, default=256, help='top-left crop of the runs (0: full); default 256')
    parser.add_argument('--results', default=osp.join(ROOT, 'results'), help='results root (default: results/)')
    parser.add_argument('--out', help='report file (default: results/<name>_report.md)')
    return parser.parse_args(argv)


def camera_of(image):
    """``Canon5D2_bag_0003`` -> ``Canon5D2`` (everything before ``_<scene>_<index>``)."""
    parts = image.rsplit('_', 2)
    return parts[0] if len(parts) == 3 else image


def read_rgb(path, crop=0):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f'{path}: cannot read the image')
    img = img[..., ::-1]
    return np.ascontiguousarray(img[:crop, :crop] if crop else img)


def read_run(folder):
    """``({image: {step: (psnr, ssim)}}, {image: (psnr, ssim)} of the noisy inputs)`` of a results folder, or None."""
    from lan_basicsr.models.step_store import read_inputs_csv, read_step_csv
    if not osp.isfile(osp.join(folder, 'per_step.csv')):
        return None
    scores = {}
    for (_, image), rows in read_step_csv(osp.join(folder, 'per_step.csv')).items():
        scores[image] = {int(r[2]): (float(r[3]), float(r[4])) for r in rows}
    inputs = {image: v for (_, image), v in read_inputs_csv(osp.join(folder, 'inputs.csv')).items()}
    return scores, inputs


def noisy_inputs(folder, crop, runs):
    """``{image: (psnr, ssim, channel means in 0-255 units)}`` of each noisy image against its clean one.

    PSNR / SSIM come from the runs' ``inputs.csv`` (which must agree) where one covers every image, else they are
    computed here (official scoring); the channel means always come from the images.
    """
    from basicsr.metrics import calculate_psnr, calculate_ssim
    from tqdm import tqdm
    names = sorted(osp.splitext(n)[0] for n in os.listdir(osp.join(folder, 'lq')) if n.lower().endswith('.png'))
    if not names:
        raise DataError(f'{folder}/lq: no PNG images')
    stored = [(folder_name, inputs) for folder_name, (_, inputs) in runs.items() if set(names) <= set(inputs)]
    for run_name, inputs in stored[1:]:
        diff = max(abs(inputs[k][0] - stored[0][1][k][0]) for k in names)
        if diff > 1e-4:
            raise DataError(f'{run_name}/inputs.csv differs from {stored[0][0]}/inputs.csv by up to {diff:.4f} dB: the '
                            'runs did not score the same noisy images (mixed data?)')
    out = OrderedDict()
    for name in tqdm(names, desc='noisy inputs', unit='image', dynamic_ncols=True):
        lq = read_rgb(osp.join(folder, 'lq', f'{name}.png'), crop).astype(np.float64)
        if stored:
            psnr, ssim = stored[0][1][name]
        else:
            gt = read_rgb(osp.join(folder, 'gt', f'{name}.png'), crop).astype(np.float64)
            psnr, ssim = calculate_psnr(lq, gt, 0), calculate_ssim(lq, gt, 0)
        out[name] = (psnr, ssim, lq.reshape(-1, 3).mean(0))
    return out


def colour_shift(folder, images, noisy):
    """``{image: shift}``: the largest difference (0-255 units) between a channel mean of the saved output and the
    noisy input's; the colour check passes when it is at most 1."""
    result = {}
    for image in images:
        path = osp.join(folder, f'{image}.png')
        if not osp.isfile(path):
            continue
        means = read_rgb(path).astype(np.float64).reshape(-1, 3).mean(0)
        result[image] = float(np.abs(means - noisy[image][2]).max())
    return result


def collect(args):
    folder = osp.abspath(args.real_pairs)
    label = osp.basename(folder.rstrip(os.sep))
    name = args.name or f'demo_real_{label}'
    bm3d = args.bm3d or f'bm3d_{label}'
    specs = [(bm3d, 'BM3D (sigma from the image)', None)] + [(f'{name}_{key}', lab, m) for key, lab, m in ROWS]
    runs = OrderedDict()
    for folder_name, _, _ in specs:
        found = read_run(osp.join(args.results, folder_name))
        if found is not None:
            runs[folder_name] = found
    noisy = noisy_inputs(folder, args.crop, runs)
    rows, unfinished = OrderedDict(), []
    rows['noisy input'] = {'scores': {k: v[:2] for k, v in noisy.items()}, 'colour': {}, 'model': None, 'steps': 0}
    for folder_name, row_label, model in specs:
        if folder_name not in runs:
            continue
        per_step = runs[folder_name][0]
        missing = sorted(set(noisy) - set(per_step))
        if missing:  # a run still going: named in the report, left out of the tables
            unfinished.append(f'{folder_name} ({len(noisy) - len(missing)} of {len(noisy)} images)')
            continue
        last = max(max(steps) for steps in per_step.values())
        vis = osp.join(args.results, folder_name, 'visualization', label)
        rows[row_label] = {
            'scores': {
                k: per_step[k][last]
                for k in noisy
            },
            'step0': {
                k: per_step[k][0]
                for k in noisy
            },
            'colour': colour_shift(vis, noisy, noisy),
            'model': model,
            'steps': last,
            'run': folder_name
        }
    return label, name, noisy, rows, unfinished


def _stats(row, images, noisy):
    psnr = np.array([row['scores'][k][0] for k in images])
    ssim = np.array([row['scores'][k][1] for k in images])
    base = np.array([noisy[k][0] for k in images])
    shifts = np.array([row['colour'][k] for k in images if k in row['colour']])
    return {
        'n': len(images),
        'psnr': psnr.mean(),
        'ssim': ssim.mean(),
        'gain': (psnr - base).mean(),
        'worse': int((psnr < base).sum()),
        'worst': float((psnr - base).min()),
        'colour': int((shifts <= COLOUR_TOLERANCE + 1e-9).sum()),
        'colour_n': len(shifts),
        'shift': np.percentile(shifts, [50, 95]) if len(shifts) else None
    }


def _pct(k, n):
    return f'{k} ({100. * k / n:.1f}%)' if n else '-'


def format_report(label, noisy, rows, unfinished=()):
    images = list(noisy)
    cameras = OrderedDict()
    for image in images:
        cameras.setdefault(camera_of(image), []).append(image)
    stats = {r: _stats(rows[r], images, noisy) for r in rows}
    lines = [
        f'## {label}: {len(images)} images, real noise', '',
        'Mean PSNR (dB) / SSIM against the clean images (official scoring); "worse" = images whose PSNR ends below '
        "their noisy input's; colour check = images whose output has every channel mean within 1/255 of the noisy "
        "input's (shift = the largest channel-mean difference, 0-255 units, median / 95th percentile over images). "
        "Adapted rows: after the run's last step (ZS-N2N).", '',
        '| method | step | PSNR | SSIM | vs noisy | worse than noisy | worst image | colour check | shift p50 / p95 |',
        '|---|---:|---:|---:|---:|---:|---:|---:|---:|'
    ]
    for r, row in rows.items():
        s = stats[r]
        colour = _pct(s['colour'], s['colour_n']) if s['colour_n'] else ''
        shift = f'{s["shift"][0]:.2f} / {s["shift"][1]:.2f}' if s['colour_n'] else ''
        worse = _pct(s['worse'], s['n']) if r != 'noisy input' else ''
        worst = f'{s["worst"]:+.2f}' if r != 'noisy input' else ''
        gain = f'{s["gain"]:+.2f}' if r != 'noisy input' else ''
        lines.append(f'| {r} | {row["steps"]} | {s["psnr"]:.2f} | {s["ssim"]:.4f} | {gain} | {worse} | {worst} | '
                     f'{colour} | {shift} |')
    lines += [
        '', 'Per camera: PSNR / SSIM (images worse than their noisy input)', '',
        '| method | ' + ' | '.join(f'{c} ({len(v)})' for c, v in cameras.items()) + ' |',
        '|---|' + '---:|' * len(cameras)
    ]
    for r, row in rows.items():
        cells = []
        for imgs in cameras.values():
            s = _stats(row, imgs, noisy)
            cells.append(f'{s["psnr"]:.2f} / {s["ssim"]:.4f}' + ('' if r == 'noisy input' else f' ({s["worse"]})'))
        lines.append(f'| {r} | ' + ' | '.join(cells) + ' |')
    lines += [
        '', 'Per camera: images passing the colour check', '',
        '| method | ' + ' | '.join(f'{c} ({len(v)})' for c, v in cameras.items()) + ' |',
        '|---|' + '---:|' * len(cameras)
    ]
    for r, row in rows.items():
        if row['colour']:
            lines.append(f'| {r} | ' + ' | '.join(str(_stats(row, imgs, noisy)['colour'])
                                                  for imgs in cameras.values()) + ' |')
    # the step-0 rows of adapted runs must equal the pretrained run's: a consistency check across runs
    for r, row in rows.items():
        pre = next((p for p, q in rows.items() if q['model'] == row['model'] and q['steps'] == 0), None)
        if row['model'] is not None and pre and pre != r:
            diff = max(abs(row['step0'][k][0] - rows[pre]['scores'][k][0]) for k in images)
            if diff > 1e-4:
                lines.append(f'\nWarning: step 0 of "{r}" differs from "{pre}" by up to {diff:.4f} dB (mixed runs?)')
    lines += ['', goals(stats, rows)]
    if unfinished:
        lines += ['', 'Not finished (left out above): ' + '; '.join(unfinished) + '.']
    return '\n'.join(lines) + '\n'


def goals(stats, rows):
    """The issue's goals for the camera-noise default, met or missed."""
    noisy = stats['noisy input']
    pre, lan = stats.get('camera-noise default, step 0'), stats.get('camera-noise default + LAN')
    bm3d = next((stats[r] for r in stats if r.startswith('BM3D')), None)
    if pre is None:
        return 'Goals: the camera-noise default has no results yet.'
    n = pre['n']
    items = [('step 0 at least +1.5 dB over the noisy input', pre['psnr'] - noisy['psnr']
              >= 1.5, f'{pre["psnr"] - noisy["psnr"]:+.2f} dB'),
             ('at most 2% of images worse than their noisy input', pre['worse'] <= 0.02 * n, _pct(pre['worse'], n)),
             ('at least 98% pass the colour check', pre['colour']
              >= 0.98 * pre['colour_n'], _pct(pre['colour'], pre['colour_n']))]
    if bm3d is not None:
        items.append(('ahead of BM3D', pre['psnr'] > bm3d['psnr'], f'{pre["psnr"] - bm3d["psnr"]:+.2f} dB'))
    if lan is not None:
        items.append(('LAN at the last step not below step 0', lan['psnr']
                      >= pre['psnr'], f'{lan["psnr"] - pre["psnr"]:+.3f} dB'))
    lines = ['Goals (camera-noise default):', '']
    lines += [f'- {"met" if ok else "MISSED"}: {what} ({value})' for what, ok, value in items]
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    for sub in ('lq', 'gt'):
        if not osp.isdir(osp.join(args.real_pairs, sub)):
            raise OptionError(f'--real-pairs {args.real_pairs}: no {sub}/ folder inside (expected lq/ and gt/)')
    label, name, noisy, rows, unfinished = collect(args)
    report = format_report(label, noisy, rows, unfinished)
    out = args.out or osp.join(args.results, f'{name}_report.md')
    with open(out, 'w', encoding='utf-8') as f:
        f.write(report)
    sys.stdout.write(report)
    sys.stdout.write(f'\n(written to {out})\n')


if __name__ == '__main__':
    run(main)
