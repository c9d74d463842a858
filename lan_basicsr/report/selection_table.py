"""The comparison table of the GT-free selection (docs/selection.md) from results folders; nothing is recomputed.

Per dataset: the noisy input, step 0, every run at its last step (each single adapter and loss), the best of those in
hindsight, every run's selected result (``selected.csv``, ``adapt.select``), and the per-image choice of a run by the
rule's own score among the runs that share the rule's settings ("rule across methods"). For each row: the mean PSNR and
SSIM, the worst image's PSNR and its worst loss against step 0, and how many images end below step 0, more than
``tolerance`` dB below step 0, and below the noisy input.

Runs over different image sets (e.g. another helper's run over all PolyU tiles and a run over every 20th tile) are
compared on the images of the run with the fewest, which every other run must hold; ``every=k`` keeps every k-th of
those in image-name order (a fixed choice made without looking at any score).
"""
import json
import math
from collections import OrderedDict
from os import path as osp

import numpy as np

from lan_basicsr.models.step_store import read_selected_csv
from lan_basicsr.utils.errors import DataError, OptionError
from .results import Run

__all__ = [
    'SelectionRow', 'selection_rows', 'split_rows', 'polyu_camera', 'selection_markdown', 'subset_images', 'goals'
]


def subset_images(images, every=None):
    """Every ``every``-th of ``images`` in sorted order (all of them when ``every`` is None or 1)."""
    images = sorted(images)
    return images if not every or every == 1 else images[::every]


class SelectionRow:
    """One row: ``label``, ``kind`` (noisy | step0 | last | best | selected | across), per-image PSNR and SSIM
    (arrays in the dataset's image order) and, where known, the runs chosen per image."""

    def __init__(self, label, kind, psnr, ssim, runs=None):
        self.label, self.kind = label, kind
        self.psnr, self.ssim = np.asarray(psnr, dtype=np.float64), np.asarray(ssim, dtype=np.float64)
        self.runs = runs

    def stats(self, step0, noisy, tolerance=0.05):
        """``dict(mean, ssim, worst, worst_drop, below0, below0_tol, below_noisy)``."""
        drop = self.psnr - step0
        return {
            'mean': float(self.psnr.mean()),
            'ssim': float(np.nanmean(self.ssim)),
            'worst': float(self.psnr.min()),
            'worst_drop': float(drop.min()),
            'below0': int(np.sum(drop < 0)),
            'below0_tol': int(np.sum(drop < -tolerance)),
            'below_noisy': int(np.sum(self.psnr < noisy)),
        }


def _rule_of(run):
    select = (run.settings.get('adapt') or {}).get('select')
    return None if select in (None, 'last', {'type': 'Last'}) else json.dumps(select, sort_keys=True)


def _label(run):
    return f'{run.method} + {run.loss}'


def selection_rows(results, every=None, labels=None, split=None):
    """``OrderedDict{dataset: (images, [SelectionRow, ...], reference run name)}`` (see the module doc).

    Per dataset the rows are compared on the images of the run with the fewest (every ``every``-th of them when
    given); every other run must hold all of those images (a run over a whole set is compared on a subset run's images;
    the table names the reference run). ``split`` (image name -> group, e.g. :func:`polyu_camera`) adds one table per
    group after each dataset's, keyed ``<dataset> / <group>``.
    """
    labels = labels or {}
    runs = [r if isinstance(r, Run) else Run(r, labels.get(osp.basename(osp.normpath(str(r))))) for r in results]
    if not runs:
        raise OptionError('no results folders given')
    tables = OrderedDict()
    datasets = list(dict.fromkeys(ds for r in runs for ds in r.datasets))
    for dataset in datasets:
        group = [r for r in runs if dataset in r.scores]
        reference = min(group, key=lambda r: len(r.images(dataset)))
        images = subset_images(reference.images(dataset), every)
        for r in group:
            missing = sorted(set(images) - set(r.images(dataset)))
            if missing:
                raise DataError(f'{dataset}: {r.folder} lacks image {missing[0]} of {reference.folder}; compare runs '
                                'over the same images (or over a subset that every run holds)')
        if not images:
            continue
        rows = []
        noisy = next((r.inputs[dataset] for r in group if dataset in r.inputs), None)
        if noisy is not None:
            rows.append(
                SelectionRow('Noisy input', 'noisy', [noisy[i][0] for i in images], [noisy[i][1] for i in images]))
        first = group[0].scores[dataset]
        for r in group[1:]:
            if r.steps and any(abs(r.scores[dataset][i][0, 0] - first[i][0, 0]) > 1e-4 for i in images):
                raise DataError(f'{dataset}: {r.folder} and {group[0].folder} score step 0 differently: they start '
                                'from different networks; compare runs of one network at a time')
        rows.append(
            SelectionRow('Step 0 (pretrained)', 'step0', [first[i][0, 0] for i in images],
                         [first[i][0, 1] for i in images]))
        singles = []
        for r in group:
            if r.steps == 0:
                continue
            s = r.scores[dataset]
            row = SelectionRow(f'{_label(r)}, k = {r.steps}', 'last', [s[i][-1, 0] for i in images],
                               [s[i][-1, 1] for i in images], [r.name] * len(images))
            singles.append(row)
        rows += singles
        if singles:
            best = max(singles, key=lambda row: row.psnr.mean())
            rows.append(SelectionRow(f'best single in hindsight ({best.label})', 'best', best.psnr, best.ssim))
        chosen = OrderedDict()
        for r in group:
            path = osp.join(r.folder, 'selected.csv')
            rule = _rule_of(r)
            if rule is None or not osp.isfile(path):
                continue
            sel = read_selected_csv(path)
            lacking = [i for i in images if (dataset, i) not in sel]
            if lacking:
                raise DataError(f'{path}: no selected row for {dataset}/{lacking[0]}; let the run finish')
            picks = [sel[(dataset, i)] for i in images]
            rows.append(
                SelectionRow(f'{_label(r)}, selected', 'selected', [p['psnr'] for p in picks],
                             [p['ssim'] for p in picks], [r.name] * len(images)))
            chosen.setdefault(rule, []).append((r, picks))
        for rule, members in chosen.items():
            if len(members) < 2:
                continue
            psnr, ssim, names = [], [], []
            for k in range(len(images)):
                run, picks = min(members, key=lambda m: m[1][k]['score'])  # the rule's score, lower is better
                psnr.append(picks[k]['psnr'])
                ssim.append(picks[k]['ssim'])
                names.append(run.name)
            rows.append(SelectionRow(f'rule across {len(members)} methods', 'across', psnr, ssim, names))
        tables[dataset] = (images, rows, reference.name)
        if split is not None:
            tables.update(split_rows(dataset, images, rows, reference.name, split))
    return tables


def split_rows(dataset, images, rows, reference, split):
    """The tables of ``dataset``'s rows restricted to each group of ``split`` (image name -> group), in order; none
    when the dataset holds one group only (its own table is that group's)."""
    out = OrderedDict()
    groups = list(dict.fromkeys(split(i) for i in images))
    if len(groups) < 2:
        return out
    for group in groups:
        idx = [k for k, i in enumerate(images) if split(i) == group]
        part = [
            SelectionRow(r.label, r.kind, r.psnr[idx], r.ssim[idx],
                         None if r.runs is None else [r.runs[k] for k in idx]) for r in rows
        ]
        out[f'{dataset} / {group}'] = ([images[k] for k in idx], part, reference)
    return out


def polyu_camera(image):
    """The PolyU camera of a tile name ``{scene}_{index}`` (``Nikon_800_carbi_0003`` -> Nikon800)."""
    from lan_basicsr.data.prepare_util import scene_camera
    return scene_camera(image.rsplit('_', 1)[0])


def _fmt(value, digits=2):
    return '' if value is None or (isinstance(value, float) and math.isnan(value)) else f'{value:.{digits}f}'


def selection_markdown(tables, tolerance=0.05, title=None):
    """Markdown: one table per dataset (see the module doc)."""
    lines = [f'## {title}', ''] if title else []
    for dataset, (images, rows, reference) in tables.items():
        step0 = next(r for r in rows if r.kind == 'step0').psnr
        noisy_row = next((r for r in rows if r.kind == 'noisy'), None)
        noisy = noisy_row.psnr if noisy_row is not None else np.full_like(step0, -np.inf)
        lines += [
            f'{dataset} ({len(images)} images, those of {reference}): PSNR (dB) / SSIM', '',
            f'| | mean PSNR | mean SSIM | worst image | worst vs step 0 | < step 0 | < step 0 - {tolerance:g} | '
            '< noisy |', '|---|---|---|---|---|---|---|---|'
        ]
        for r in rows:
            s = r.stats(step0, noisy, tolerance)
            lines.append(f'| {r.label} | {_fmt(s["mean"])} | {_fmt(s["ssim"], 4)} | {_fmt(s["worst"])} | '
                         f'{s["worst_drop"]:+.2f} | {s["below0"]} | {s["below0_tol"]} | {s["below_noisy"]} |')
        lines.append('')
    return '\n'.join(lines)


def goals(tables, ours, lan=None, tolerance=0.05, share=0.05):
    """The issue's goals for the row labelled ``ours`` (a label or a kind such as ``across``) per dataset: mean not
    below step 0, at most ``share`` of the images more than ``tolerance`` dB below step 0, within 0.1 dB of the best
    single run, and the gain over the row labelled ``lan``. Returns ``{dataset: dict}``."""
    out = OrderedDict()
    for dataset, (images, rows, _) in tables.items():
        pick = next((r for r in rows if ours in (r.label, r.kind)), None)
        if pick is None:
            continue
        step0 = next(r for r in rows if r.kind == 'step0').psnr
        best = next((r for r in rows if r.kind == 'best'), None)
        base = next((r for r in rows if lan is not None and r.label == lan), None)
        drop = pick.psnr - step0
        out[dataset] = {
            'mean_vs_step0': float(drop.mean()),
            'share_below_tol': float(np.mean(drop < -tolerance)),
            'vs_best_single': None if best is None else float(pick.psnr.mean() - best.psnr.mean()),
            'vs_lan': None if base is None else float(pick.psnr.mean() - base.psnr.mean()),
            'ok_mean': bool(drop.mean() >= 0),
            'ok_share': bool(np.mean(drop < -tolerance) <= share),
        }
    return out
