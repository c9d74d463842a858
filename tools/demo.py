# Usage: python tools/demo.py [-opt options/demo_lan_dncnn_gaussian.yml] [--methods pretrained lan ...]
#            [--cfg-options KEY=VALUE ...]
#        python tools/demo.py --real-pairs DIR [--methods camera_pretrained ...] [--nproc 2]   (DIR/lq, DIR/gt)
"""Run the demo: one ``tools/test.py`` run per method listed in the option file's ``demo.methods``, then one table.

Each method is ``{key, label, cfg_options}`` and optionally ``model`` (an embedded model of ``lan_basicsr.embedded``:
its checkpoint and ``network_g`` block, added to the cfg_options): its run is ``tools/test.py -opt OPT --cfg-options
name=<name>_<key> <model> <cfg_options> <your --cfg-options>`` and writes ``results/<name>_<key>/`` (summary.csv,
per_step.csv, denoised images under visualization/). The noisy and clean inputs go to ``results/<name>_inputs/``,
the combined table (PSNR / SSIM per method and step, from each run's summary.csv) to ``results/<name>_table.md`` and
the console. A run whose results exist is not redone (LANModel skips adapted images), so a second call only prints
the table again.

``--real-pairs DIR``: the same table on real noise, from a folder with ``lq/`` (noisy) and ``gt/`` (clean) images of
the same names (e.g. ``datasets/PolyU`` made by ``tools/prepare_polyu.py``): option file
``options/demo_lan_dncnn_real.yml`` (both embedded defaults, step 0 and LAN / FullTrainable at 20 steps, the official
top-left 256x256 crops) with the data paths set to ``DIR``, run name ``demo_real_<folder name>``; the noisy inputs are
scored but not copied.
"""
import argparse
import csv
import os
import subprocess
import sys
import time
from os import path as osp

from _entry import ROOT, run

from lan_basicsr.utils.errors import OptionError

DEFAULT_OPT = osp.join('options', 'demo_lan_dncnn_gaussian.yml')
REAL_PAIRS_OPT = osp.join('options', 'demo_lan_dncnn_real.yml')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '-opt', '--opt', default=None, help=f'option file (default: {DEFAULT_OPT}; with --real-pairs {REAL_PAIRS_OPT})')
    parser.add_argument(
        '--real-pairs', metavar='DIR', help='real noisy/clean pairs: a folder with lq/ and gt/ (same file names)')
    parser.add_argument('--methods', nargs='+', metavar='KEY', help='run only these demo.methods keys')
    parser.add_argument(
        '--nproc',
        type=int,
        default=1,
        help='processes per run (torchrun --standalone; the images are split between them, results are the same)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default=None,
        metavar='KEY=VALUE',
        help='overrides for every run, e.g. num_gpu=0')
    return parser.parse_args(argv)


def _cli_value(value):
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(_cli_value(v) for v in value) + ']'
    return 'None' if value is None else str(value)


def demo_methods(opt, only=None):
    """The ``demo.methods`` entries (filtered by key), checked."""
    methods = (opt.get('demo') or {}).get('methods')
    if not isinstance(methods, list) or not methods:
        raise OptionError('demo.methods: the option file lists no demo methods ({key, label, cfg_options} entries)')
    for i, m in enumerate(methods):
        if not (isinstance(m, dict) and isinstance(m.get('key'), str) and isinstance(m.get('cfg_options', {}), dict)
                and isinstance(m.get('model', ''), str)):
            raise OptionError(f'demo.methods[{i}]: expected {{key: str, label: str, cfg_options: {{...}}}} (and '
                              f'optionally model: <embedded model name>), got {m!r}')
    if only:
        unknown = sorted(set(only) - {m['key'] for m in methods})
        if unknown:
            raise OptionError(f'--methods: unknown key(s) {", ".join(unknown)}; the option file has '
                              f'{", ".join(m["key"] for m in methods)}')
        methods = [m for m in methods if m['key'] in only]
    return methods


def read_summary(path):
    """``{dataset: {step: (psnr, ssim, images)}}`` from a LANModel summary.csv (datasets in file order)."""
    if not osp.isfile(path):
        raise OptionError(f'{path}: missing (the run did not finish)')
    table = {}
    with open(path, newline='', encoding='utf-8') as f:
        for row in csv.DictReader(f):
            psnr = float(row['psnr']) if row['psnr'] else float('nan')
            ssim = float(row['ssim']) if row['ssim'] else float('nan')
            table.setdefault(row['dataset'], {})[int(row['step'])] = (psnr, ssim, int(row['images']))
    return table


def format_table(methods, summaries, inputs=None, steps=None):
    """Markdown: one table per dataset, a row per method, a column per reported step (PSNR dB / SSIM).

    ``inputs``: ``{dataset: (psnr, ssim)}`` of the noisy inputs, shown above each table.
    """
    datasets = list(dict.fromkeys(ds for s in summaries for ds in s))
    lines = []
    for ds in datasets:
        cols = steps or sorted({step for s in summaries for step in s.get(ds, {})})
        images = max((v[2] for s in summaries for v in s.get(ds, {}).values()), default=0)
        noisy = (inputs or {}).get(ds)
        noisy = f' (noisy input: {noisy[0]:.2f} / {noisy[1]:.4f})' if noisy else ''
        lines += [
            f'{ds} ({images} images), PSNR (dB) / SSIM after k adaptation steps{noisy}:', '',
            '| method | ' + ' | '.join(f'k = {k}' for k in cols) + ' |', '|---' * (len(cols) + 1) + '|'
        ]
        for method, summary in zip(methods, summaries):
            cells = []
            for k in cols:
                value = summary.get(ds, {}).get(k)
                cells.append('' if value is None else f'{value[0]:.2f} / {value[1]:.4f}')
            lines.append(f'| {method.get("label", method["key"])} | ' + ' | '.join(cells) + ' |')
        lines.append('')
    return '\n'.join(lines)


def method_overrides(method):
    """The ``--cfg-options`` of one demo method: its embedded model (checkpoint, network_g keys), then cfg_options."""
    overrides = {}
    if method.get('model'):
        from lan_basicsr.embedded import embedded_model
        path, network_g = embedded_model(method['model'])
        overrides['path.pretrain_network_g'] = path
        overrides.update({f'network_g.{k}': v for k, v in network_g.items()})
    overrides.update(method.get('cfg_options', {}))
    return [f'{k}={_cli_value(v)}' for k, v in overrides.items()]


def real_pairs_options(folder):
    """``(name, --cfg-options dict)`` that point the real-pairs demo at ``folder`` (with ``lq/`` and ``gt/``)."""
    folder = osp.abspath(folder)
    missing = [sub for sub in ('lq', 'gt') if not osp.isdir(osp.join(folder, sub))]
    if missing:
        raise OptionError(f'--real-pairs {folder}: no {" or ".join(missing)}/ folder inside; expected lq/ (noisy) and '
                          'gt/ (clean) images with the same names, e.g. from tools/prepare_polyu.py')
    label = osp.basename(folder.rstrip(os.sep)) or 'pairs'
    name = f'demo_real_{label}'
    return name, {
        'name': name,
        'datasets.test.name': label,
        'datasets.test.dataroot_lq': osp.join(folder, 'lq'),
        'datasets.test.dataroot_gt': osp.join(folder, 'gt')
    }


def write_inputs(opt, folder, save=True):
    """Save each test dataset's noisy and clean images (the runs draw the same noise) as PNG; score the noisy ones.

    Returns ``{dataset: (mean PSNR, mean SSIM)}`` of the noisy inputs against the clean images (official scoring).
    ``save=False`` only scores them (real pairs are on disk already).
    """
    from basicsr.data import build_dataset
    from basicsr.utils import imwrite, tensor2img

    import lan_basicsr  # noqa: F401  (registers the datasets)
    from lan_basicsr.metrics import score_images
    metrics = (opt.get('val') or {}).get('metrics') or {
        'psnr': {
            'type': 'calculate_psnr'
        },
        'ssim': {
            'type': 'calculate_ssim'
        }
    }
    scores = {}
    for phase, ds_opt in sorted(opt['datasets'].items()):
        dataset = build_dataset({**ds_opt, 'phase': phase.split('_')[0]})
        rows = []
        for i in range(len(dataset)):
            item = dataset[i]
            name = item.get('name', f'{i:04d}')
            for key, suffix in (('lq', 'noisy'), ('gt', 'clean')):
                if save and key in item:
                    imwrite(tensor2img(item[key]), osp.join(folder, ds_opt['name'], f'{name}_{suffix}.png'))
            if 'gt' in item:
                rows.append(score_images(item['lq'], item['gt'], metrics))
        if rows and 'psnr' in rows[0] and 'ssim' in rows[0]:
            scores[ds_opt['name']] = tuple(sum(r[k] for r in rows) / len(rows) for k in ('psnr', 'ssim'))
    return scores


def main(argv=None):
    from lan_basicsr.utils.options import load_config, merge_cfg_options
    args = parse_args(argv)
    if args.nproc < 1:
        raise OptionError(f'--nproc: expected a positive number of processes, got {args.nproc}')
    opt_arg = args.opt or (REAL_PAIRS_OPT if args.real_pairs else DEFAULT_OPT)
    if args.real_pairs:  # the folder's options first, so that the user's --cfg-options still win
        _, folder_opts = real_pairs_options(args.real_pairs)
        args.cfg_options = {**folder_opts, **(args.cfg_options or {})}
    # runs start in the repository root, where the option files' relative paths (checkpoint, data) point
    opt_path = osp.abspath(opt_arg) if osp.isfile(opt_arg) else osp.join(ROOT, opt_arg)
    opt = merge_cfg_options(load_config(opt_path), args.cfg_options)
    name = opt.get('name') or osp.splitext(osp.basename(opt_arg))[0]
    methods = demo_methods(opt, args.methods)
    results = osp.join(ROOT, 'results')
    # 'name' is each run's own (<name>_<key>); every other override goes to every run
    user = [f'{k}={_cli_value(v)}' for k, v in (args.cfg_options or {}).items() if k != 'name']
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    start = time.time()
    summaries = []
    for i, method in enumerate(methods, 1):
        run_name = f'{name}_{method["key"]}'
        overrides = [f'name={run_name}'] + method_overrides(method)
        cmd = ['tools/test.py', '-opt', osp.relpath(opt_path, ROOT), '--cfg-options'] + overrides + user
        launcher = []
        if args.nproc > 1:
            launcher = ['-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={args.nproc}']
            cmd += ['--launcher', 'pytorch']
        shown = ' '.join(['torchrun'] + launcher[2:] if launcher else ['python'])
        print(f'[{i}/{len(methods)}] {method.get("label", method["key"])}: {shown} {" ".join(cmd)}', flush=True)
        t0 = time.time()
        proc = subprocess.run([sys.executable] + launcher + cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = '\n'.join(proc.stderr.strip().splitlines()[-15:])
            print(tail, file=sys.stderr)
            sys.exit(proc.returncode)
        print(f'      done in {time.time() - t0:.0f} s -> results/{run_name}/', flush=True)
        summaries.append(read_summary(osp.join(results, run_name, 'summary.csv')))
    inputs = osp.join(results, f'{name}_inputs')
    table = format_table(methods, summaries, write_inputs(opt, inputs, save=not args.real_pairs))
    table_path = osp.join(results, f'{name}_table.md')
    with open(table_path, 'w', encoding='utf-8') as f:
        f.write(table)
    print('\n' + table)
    where_inputs = args.real_pairs if args.real_pairs else f'results/{name}_inputs/'
    print(f'Denoised images: results/{name}_<method>/visualization/<dataset>/; noisy and clean inputs: '
          f'{where_inputs}; this table: results/{name}_table.md. Total {time.time() - start:.0f} s.')


if __name__ == '__main__':
    run(main)
