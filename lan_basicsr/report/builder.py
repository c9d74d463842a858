"""The whole report of some results folders: tables, figures, per-image pictures and ``index.html``.

``build_report(results, out)`` writes under ``out``: ``table1.md`` / ``table1.csv`` / ``table1_long.csv``,
``gains.md`` / ``gains.csv``, ``fig5_<dataset>.{png,svg}``, ``gains_<dataset>.{png,svg}``, for runs with saved offsets
``fig4_<run>_<dataset>_<image>.{png,svg}``, ``fig6_<run>_<dataset>.{png,svg}`` and ``noise_stats.csv``, the pictures
the page shows under ``images/``, and ``index.html`` (self-contained: relative links to these files only).
"""
import csv
import io
import os
import re
import shutil
from collections import OrderedDict
from os import path as osp

import numpy as np
from basicsr.utils import get_root_logger
from tqdm import tqdm

from .figures import fig4, fig5, fig6, gains_figure, noise_residuals, noise_stats, save_figure, series_labels
from .page import write_page
from .results import check_comparable, load_runs
from .tables import gains_table, table1

__all__ = ['build_report', 'MAX_POOLED']

MAX_POOLED = 2_000_000  # values per noise kind pooled for Fig. 6 (seeded subsample beyond that)
NOISE_KEYS = ('train', 'before', 'after', 'clean')


def _slug(text):
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', str(text)).strip('_') or 'x'


def _write(path, text):
    with open(path, 'w', encoding='utf-8', newline='') as f:
        f.write(text)
    return path


def _gains_markdown(rows):
    lines = [
        '| dataset | method | loss | images | helps | hurts | mean gain (dB) | median | min | max | below noisy input '
        'at step 0 | below noisy input at the last step |', '|---' * 12 + '|'
    ]
    for r in rows:
        below0 = '' if r['below_noisy_step0'] is None else r['below_noisy_step0']
        below = '' if r['below_noisy_last'] is None else r['below_noisy_last']
        lines.append(f'| {r["dataset"]} | {r["method"]} | {r["loss"]} | {r["images"]} | {r["helps"]} | '
                     f'{r["hurts"]} | {r["mean_gain"]:+.3f} | {r["median_gain"]:+.3f} | {r["min_gain"]:+.3f} | '
                     f'{r["max_gain"]:+.3f} | {below0} | {below} |')
    return '\n'.join(lines) + '\n'


def _gains_csv(runs):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(['dataset', 'method', 'loss', 'results', 'image', 'psnr_step0', 'psnr_last', 'gain', 'noisy_psnr'])
    for run in runs:
        if run.steps == 0:
            continue
        for ds in run.datasets:
            for image, scores in run.scores[ds].items():
                noisy = run.noisy(ds, image)
                writer.writerow([
                    ds, run.method, run.loss, run.folder, image, f'{scores[0, 0]:.6f}', f'{scores[-1, 0]:.6f}',
                    f'{scores[-1, 0] - scores[0, 0]:.6f}', '' if noisy is None else f'{noisy[0]:.6f}'
                ])
    return buf.getvalue()


def _pool(parts, seed=0):
    """Concatenate per-image noise arrays (same pixels for every kind), subsampled to MAX_POOLED values."""
    pooled = {}
    for key in NOISE_KEYS:
        if any(p.get(key) is None for p in parts):
            pooled[key] = None
            continue
        pooled[key] = np.concatenate([p[key].ravel() for p in parts])
    total = len(pooled['before'])
    if total > MAX_POOLED:
        keep = np.sort(np.random.default_rng(seed).choice(total, MAX_POOLED, replace=False))
        pooled = {k: (v[keep] if v is not None else None) for k, v in pooled.items()}
    pooled['offset'] = np.concatenate([p['offset'].ravel() for p in parts])
    return pooled


def _noise_figures(runs, out, images_per_dataset, labels):
    """Fig. 4 (a few images) and Fig. 6 (pooled) per run and dataset with saved offsets; returns page entries."""
    entries, stats_rows = [], []
    for run in runs:
        if run.steps == 0:  # nothing adapted: the offset is zero, before == after
            continue
        for ds in run.datasets:
            names = run.offset_images(ds)
            if not names:
                continue
            if run.selects:
                get_root_logger().warning(f'{run.folder}: offsets saved, but its visualization/ images are the ones '
                                          'adapt.select chose; Fig. 4/6 need a run without adapt.select')
                continue
            if not any(run.image_path('step0', ds, im) for im in names):
                get_root_logger().warning(f'{run.folder}: offsets saved but no compare/ images; Fig. 4/6 need '
                                          'adapt.save_compare=True as well')
                continue
            parts, figs4 = [], []
            for i, image in enumerate(tqdm(names, desc=f'noise {run.name}/{ds}', unit='image', leave=False)):
                res = noise_residuals(run, ds, image, seed=i)
                row = {'results': run.folder, 'dataset': ds, 'image': image, **noise_stats(res)}
                stats_rows.append(row)
                if i < images_per_dataset:
                    title = f'{labels[run.folder]} on {ds}/{image}'
                    stem = f'fig4_{_slug(run.name)}_{_slug(ds)}_{_slug(image)}'
                    figs4.append((image, save_figure(fig4(res, title), out, stem), row))
                parts.append(res)
            pooled = _pool(parts)
            pooled_stats = noise_stats(pooled)
            stats_rows.append({'results': run.folder, 'dataset': ds, 'image': '(all)', **pooled_stats})
            title = f'{labels[run.folder]} on {ds}: noise pooled over {len(parts)} images'
            stem = f'fig6_{_slug(run.name)}_{_slug(ds)}'
            entries.append({
                'run': run,
                'dataset': ds,
                'fig6': save_figure(fig6(pooled, title), out, stem),
                'fig4': figs4,
                'stats': pooled_stats,
                'images': len(parts),
                'train_noise': run.report_opt.get('train_noise')
            })
    if stats_rows:
        fields = list(stats_rows[0])
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator='\n')
        writer.writerow(fields)
        for r in stats_rows:
            writer.writerow([f'{r[k]:.6f}' if isinstance(r[k], float) else r[k] for k in fields])
        _write(osp.join(out, 'noise_stats.csv'), buf.getvalue())
    return entries


def _copy(src, out, *parts):
    dst = osp.join(out, 'images', *[_slug(p) for p in parts])
    os.makedirs(osp.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def _pictures(runs, out, images_per_dataset, labels):
    """Noisy | pretrained | adapted (one per run) | GT for the first images of each dataset; returns page entries."""
    entries = []
    datasets = list(dict.fromkeys(ds for r in runs for ds in r.datasets))
    for ds in datasets:
        group = [r for r in runs if ds in r.scores]
        shown = 0
        for image in group[0].images(ds):
            if shown >= images_per_dataset:
                break
            source = next((r for r in group if r.image_path('noisy', ds, image)), None)
            finals = [(r, _final_panel(r, ds, image)) for r in group if r.steps > 0]
            adapted = [(r, panel) for r, panel in finals if panel is not None]
            if source is None or not adapted:
                continue
            panels = []
            noisy = source.noisy(ds, image)
            panels.append(('noisy input', source.image_path('noisy', ds, image), noisy))
            pretrained = next((r for r in group if r.steps == 0 and r.image_path('adapted', ds, image)), None)
            if pretrained is not None:
                panels.append(
                    (labels[pretrained.folder], pretrained.image_path('adapted', ds,
                                                                      image), tuple(pretrained.scores[ds][image][0])))
            else:
                start = next((r for r, _ in adapted if r.image_path('step0', ds, image)), None)
                if start is not None:
                    panels.append((f'step 0 (no adaptation) of {labels[start.folder]}',
                                   start.image_path('step0', ds, image), tuple(start.scores[ds][image][0])))
            for r, (label, path, scores) in adapted:
                panels.append((f'{labels[r.folder]}, {label}', path, scores))
            gt = source.image_path('gt', ds, image)
            if gt:
                panels.append(('ground truth', gt, None))
            copied = [(name, _copy(path, out, ds, image, f'{i}.png'), scores)
                      for i, (name, path, scores) in enumerate(panels)]
            entries.append({'dataset': ds, 'image': image, 'panels': copied})
            shown += 1
    return entries


def _final_panel(run, dataset, image):
    """``(label, path, (psnr, ssim))`` of the image an adapting run saved, or None: its last step's, or with
    ``adapt.select`` the one its rule chose (scored as ``selected.csv`` records it)."""
    path = run.image_path('adapted', dataset, image)
    if path is not None:
        return f'step {run.steps}', path, tuple(run.scores[dataset][image][-1])
    path, choice = run.image_path('selected', dataset, image), run.selected(dataset, image)
    if path is None or choice is None:
        return None
    return (f'selected by the rule (step {choice["step"]}, α {choice["alpha"]:.2f})', path, (choice['psnr'],
                                                                                             choice['ssim']))


def build_report(results, out, labels=None, steps=None, images=3, title=None):
    """Write the report of ``results`` (LANModel results folders) under ``out``; return ``{name: path}``.

    Args:
        results (list[str]): results folders, in the order of the table rows and legends.
        out (str): output folder (created; files of an earlier report there are overwritten).
        labels (dict | None): ``{folder or base name: display label}`` (see :func:`~lan_basicsr.report.table1`).
        steps (list[int] | None): Table 1 columns; default the runs' report steps.
        images (int): images per dataset shown as pictures (and as Fig. 4).
        title (str | None): page title.
    """
    runs = load_runs(results, labels)
    check_comparable(runs)
    os.makedirs(out, exist_ok=True)
    logger = get_root_logger()
    paths = OrderedDict()
    table = table1(runs, steps)
    paths.update(zip(('table1.md', 'table1.csv', 'table1_long.csv'), table.write(out)))
    gains = gains_table(runs)
    if gains:
        paths['gains.md'] = _write(osp.join(out, 'gains.md'), _gains_markdown(gains))
        paths['gains.csv'] = _write(osp.join(out, 'gains.csv'), _gains_csv(runs))
    labels_by_folder = series_labels(runs)
    figures = []
    for ds in table.datasets:
        entry = {'dataset': ds}
        fig = fig5(runs, ds)
        if fig is not None:
            entry['fig5'] = save_figure(fig, out, f'fig5_{_slug(ds)}')
        fig = gains_figure(runs, ds)
        if fig is not None:
            entry['gains'] = save_figure(fig, out, f'gains_{_slug(ds)}')
        figures.append(entry)
    noise = _noise_figures(runs, out, images, labels_by_folder)
    pictures = _pictures(runs, out, images, labels_by_folder)
    for entry in figures:
        for key in ('fig5', 'gains'):
            if key in entry:
                paths[f'{key}_{entry["dataset"]}'] = entry[key][0]
    paths['index.html'] = write_page(
        osp.join(out, 'index.html'),
        title=title or 'LAN test-time adaptation: report',
        runs=runs,
        labels=labels_by_folder,
        table=table,
        gains=gains,
        figures=figures,
        noise=noise,
        pictures=pictures)
    logger.info(f'Report of {len(runs)} runs: {paths["index.html"]}')
    return paths
