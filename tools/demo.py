# Usage: python tools/demo.py [-opt options/demo_lan_dncnn_gaussian.yml] [--methods pretrained lan ...]
#            [--cfg-options KEY=VALUE ...]
"""Run the demo: one ``tools/test.py`` run per method listed in the option file's ``demo.methods``, then one table.

Each method is ``{key, label, cfg_options}``: its run is ``tools/test.py -opt OPT --cfg-options name=<name>_<key>
<cfg_options> <your --cfg-options>`` and writes ``results/<name>_<key>/`` (summary.csv, per_step.csv, denoised images
under visualization/). The noisy and clean inputs go to ``results/<name>_inputs/``, the combined table (PSNR / SSIM
per method and step, from each run's summary.csv) to ``results/<name>_table.md`` and the console. A run whose
results exist is not redone (LANModel skips adapted images), so a second call only prints the table again.
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


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', '--opt', default=DEFAULT_OPT, help=f'option file (default: {DEFAULT_OPT})')
    parser.add_argument('--methods', nargs='+', metavar='KEY', help='run only these demo.methods keys')
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
        if not (isinstance(m, dict) and isinstance(m.get('key'), str) and isinstance(m.get('cfg_options', {}), dict)):
            raise OptionError(f'demo.methods[{i}]: expected {{key: str, label: str, cfg_options: {{...}}}}, got {m!r}')
    if only:
        unknown = sorted(set(only) - {m['key'] for m in methods})
        if unknown:
            raise OptionError(f'--methods: unknown key(s) {", ".join(unknown)}; the option file has '
                              f'{", ".join(m["key"] for m in methods)}')
        methods = [m for m in methods if m['key'] in only]
    return methods


def read_summary(path):
    """``{dataset: {step: (psnr, ssim, images)}}`` from a LANModel summary.csv (datasets in file order; the step of a
    selection rule's row is the string ``selected``)."""
    if not osp.isfile(path):
        raise OptionError(f'{path}: missing (the run did not finish)')
    table = {}
    with open(path, newline='', encoding='utf-8') as f:
        for row in csv.DictReader(f):
            psnr = float(row['psnr']) if row['psnr'] else float('nan')
            ssim = float(row['ssim']) if row['ssim'] else float('nan')
            step = int(row['step']) if row['step'].isdigit() else row['step']  # 'selected' with adapt.select
            table.setdefault(row['dataset'], {})[step] = (psnr, ssim, int(row['images']))
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


def write_inputs(opt, folder):
    """Save each test dataset's noisy and clean images (the runs draw the same noise) as PNG; score the noisy ones.

    Returns ``{dataset: (mean PSNR, mean SSIM)}`` of the noisy inputs against the clean images (official scoring).
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
                if key in item:
                    imwrite(tensor2img(item[key]), osp.join(folder, ds_opt['name'], f'{name}_{suffix}.png'))
            if 'gt' in item:
                rows.append(score_images(item['lq'], item['gt'], metrics))
        if rows and 'psnr' in rows[0] and 'ssim' in rows[0]:
            scores[ds_opt['name']] = tuple(sum(r[k] for r in rows) / len(rows) for k in ('psnr', 'ssim'))
    return scores


def main(argv=None):
    from lan_basicsr.utils.options import load_config, merge_cfg_options
    args = parse_args(argv)
    # runs start in the repository root, where the option files' relative paths (checkpoint, data) point
    opt_path = osp.abspath(args.opt) if osp.isfile(args.opt) else osp.join(ROOT, args.opt)
    opt = merge_cfg_options(load_config(opt_path), args.cfg_options)
    name = opt.get('name') or osp.splitext(osp.basename(args.opt))[0]
    methods = demo_methods(opt, args.methods)
    results = osp.join(ROOT, 'results')
    user = [f'{k}={_cli_value(v)}' for k, v in (args.cfg_options or {}).items()]
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    start = time.time()
    summaries = []
    for i, method in enumerate(methods, 1):
        run_name = f'{name}_{method["key"]}'
        overrides = [f'name={run_name}'] + [f'{k}={_cli_value(v)}' for k, v in method.get('cfg_options', {}).items()]
        cmd = ['tools/test.py', '-opt', osp.relpath(opt_path, ROOT), '--cfg-options'] + overrides + user
        print(f'[{i}/{len(methods)}] {method.get("label", method["key"])}: python {" ".join(cmd)}', flush=True)
        t0 = time.time()
        proc = subprocess.run([sys.executable] + cmd, cwd=ROOT, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = '\n'.join(proc.stderr.strip().splitlines()[-15:])
            print(tail, file=sys.stderr)
            sys.exit(proc.returncode)
        print(f'      done in {time.time() - t0:.0f} s -> results/{run_name}/', flush=True)
        summaries.append(read_summary(osp.join(results, run_name, 'summary.csv')))
    inputs = osp.join(results, f'{name}_inputs')
    table = format_table(methods, summaries, write_inputs(opt, inputs))
    table_path = osp.join(results, f'{name}_table.md')
    with open(table_path, 'w', encoding='utf-8') as f:
        f.write(table)
    print('\n' + table)
    print(f'Denoised images: results/{name}_<method>/visualization/<dataset>/; noisy and clean inputs: '
          f'results/{name}_inputs/; this table: results/{name}_table.md. Total {time.time() - start:.0f} s.')


if __name__ == '__main__':
    run(main)
