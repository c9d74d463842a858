"""The paper's Table 1 layout from results folders: methods x report steps x losses, PSNR / SSIM, best marked.

Every cell is the mean over a dataset's images of the scores in ``per_step.csv`` at that step (so at the report steps
it equals ``summary.csv``); nothing is recomputed. Step 0 (the network before any update) does not depend on the loss,
so it is one column; the adapted steps get one column group per loss.
"""
import csv
import io
import math
import os
from collections import OrderedDict
from os import path as osp

import numpy as np

from lan_basicsr.utils.errors import DataError, OptionError
from .results import check_comparable, load_runs

__all__ = ['Table1', 'table1', 'gains_table', 'DEFAULT_STEPS', 'PSNR_DIGITS', 'SSIM_DIGITS']

DEFAULT_STEPS = (0, 5, 10, 20)  # the paper reports 5, 10, 20; 0 = the pretrained network
PSNR_DIGITS, SSIM_DIGITS = 2, 4  # shown in Markdown / HTML; best-of-column ties are judged at this precision
LONG_FIELDS = ('dataset', 'network', 'method', 'loss', 'step', 'psnr', 'ssim', 'images', 'best_psnr', 'best_ssim',
               'results')


def _mean(values):
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def _fmt(value, digits):
    return '' if value is None or math.isnan(value) else f'{value:.{digits}f}'


class Table1:
    """A built Table 1: ``cells`` (one dict per dataset, network, method, loss, step; keys as :data:`LONG_FIELDS`;
    ``loss`` is '' at step 0), ``noisy`` (``{dataset: (psnr, ssim, images)}`` where ``inputs.csv`` gives them),
    ``steps``, ``losses``, ``datasets``, and ``rows`` (``{dataset: [(network, method), ...]}`` in input order)."""

    def __init__(self, cells, noisy, steps, losses, datasets, rows):
        self.cells, self.noisy, self.steps, self.losses = cells, noisy, list(steps), list(losses)
        self.datasets, self.rows = list(datasets), rows
        self._index = {(c['dataset'], c['network'], c['method'], c['loss'], c['step']): c for c in cells}

    def cell(self, dataset, method, step, loss='', network=None):
        """The cell dict, or None. ``loss`` is ignored at step 0; ``network`` may be left out when unambiguous."""
        loss = '' if step == 0 else loss
        for (ds, net, m, lo, st), c in self._index.items():
            if (ds, m, lo, st) == (dataset, method, loss, step) and network in (None, net):
                return c
        return None

    def get(self, dataset, network, method, loss, step):
        """The cell of one row (network, method) and column (loss, step; loss '' at step 0), or None."""
        return self._index.get((dataset, network, method, '' if step == 0 else loss, step))

    def column_title(self, loss, step):
        """The column's heading: ``k = 0``, or ``<loss> k = <step>``."""
        return self._column_title(loss, step)

    def networks(self, dataset):
        """The networks of ``dataset``'s rows (a network column is shown when there are several)."""
        return self._networks(dataset)

    def columns(self):
        """``[(loss, step), ...]`` in display order: step 0 once, then each loss's adapted steps."""
        cols = [('', 0)] if 0 in self.steps else []
        return cols + [(loss, step) for loss in self.losses for step in self.steps if step > 0]

    def _column_title(self, loss, step):
        if step == 0:
            return 'k = 0'
        return f'{loss} k = {step}' if len(self.losses) > 1 or loss else f'k = {step}'

    def _networks(self, dataset):
        return list(dict.fromkeys(net for net, _ in self.rows[dataset]))

    def markdown(self):
        """One Markdown table per dataset; best PSNR and best SSIM of each column (per network) in bold."""
        lines = []
        for ds in self.datasets:
            images = max(c['images'] for c in self.cells if c['dataset'] == ds)
            noisy = self.noisy.get(ds)
            noisy = f'; noisy input {noisy[0]:.{PSNR_DIGITS}f} / {noisy[1]:.{SSIM_DIGITS}f}' if noisy else ''
            many = len(self._networks(ds)) > 1
            cols = self.columns()
            head = (['network'] if many else []) + ['method'] + [self._column_title(lo, st) for lo, st in cols]
            lines += [
                f'**{ds}** ({images} images{noisy}). PSNR (dB) / SSIM after k adaptation steps; best of each column '
                'in bold.', '', '| ' + ' | '.join(head) + ' |', '|---' * len(head) + '|'
            ]
            for network, method in self.rows[ds]:
                cells = []
                for loss, step in cols:
                    c = self._index.get((ds, network, method, loss, step))
                    cells.append(_markdown_cell(c))
                lines.append('| ' + ' | '.join(([network] if many else []) + [method] + cells) + ' |')
            lines.append('')
        return '\n'.join(lines)

    def csv(self):
        """The same layout as CSV: a row per dataset, network and method; ``<column> PSNR`` / ``<column> SSIM``."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator='\n')
        cols = self.columns()
        head = ['dataset', 'network', 'method']
        for loss, step in cols:
            title = self._column_title(loss, step)
            head += [f'{title} PSNR', f'{title} SSIM']
        writer.writerow(head)
        for ds in self.datasets:
            for network, method in self.rows[ds]:
                row = [ds, network, method]
                for loss, step in cols:
                    c = self._index.get((ds, network, method, loss, step))
                    row += [_fmt(c['psnr'], 6), _fmt(c['ssim'], 6)] if c else ['', '']
                writer.writerow(row)
        return buf.getvalue()

    def long_csv(self):
        """One line per cell (``LONG_FIELDS``, best flags 0/1), plus a ``Noisy input`` line per dataset when known."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator='\n')
        writer.writerow(LONG_FIELDS)
        for ds in self.datasets:
            if ds in self.noisy:
                psnr, ssim, n = self.noisy[ds]
                writer.writerow([ds, '', 'Noisy input', '', '', _fmt(psnr, 6), _fmt(ssim, 6), n, '', '', ''])
            for c in self.cells:
                if c['dataset'] == ds:
                    writer.writerow([
                        ds, c['network'], c['method'], c['loss'], c['step'],
                        _fmt(c['psnr'], 6),
                        _fmt(c['ssim'], 6), c['images'],
                        int(c['best_psnr']),
                        int(c['best_ssim']), c['results']
                    ])
        return buf.getvalue()

    def write(self, out_dir, stem='table1'):
        """Write ``<stem>.md``, ``<stem>.csv`` (the layout) and ``<stem>_long.csv``; return the three paths."""
        os.makedirs(out_dir, exist_ok=True)
        paths = []
        for suffix, text in (('.md', self.markdown()), ('.csv', self.csv()), ('_long.csv', self.long_csv())):
            path = osp.join(out_dir, stem + suffix)
            with open(path, 'w', encoding='utf-8', newline='') as f:
                f.write(text)
            paths.append(path)
        return paths


def _markdown_cell(c):
    if c is None:
        return ''
    psnr, ssim = _fmt(c['psnr'], PSNR_DIGITS) or '–', _fmt(c['ssim'], SSIM_DIGITS) or '–'
    psnr = f'**{psnr}**' if c['best_psnr'] else psnr
    ssim = f'**{ssim}**' if c['best_ssim'] else ssim
    return f'{psnr} / {ssim}'


def _default_steps(runs):
    steps = sorted({s for r in runs for s in r.summary_steps})
    if not steps:
        steps = sorted({s for s in DEFAULT_STEPS if any(s <= r.steps for r in runs)} | {max(r.steps for r in runs)})
    return steps


def _check_steps(steps, runs):
    if not isinstance(steps, (list, tuple)) or not steps or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in steps):
        raise OptionError(f'steps: expected a list of integers >= 0, got {steps!r}')
    longest = max(r.steps for r in runs)
    beyond = [s for s in steps if s > longest]
    if beyond:
        raise OptionError(f'steps: {beyond[0]} is beyond every run (the longest has {longest} steps)')
    return sorted(set(steps))


def _mark_best(cells):
    """Best PSNR / SSIM of each column (dataset, network, loss, step), compared at the displayed precision; a
    column whose values all tie has none."""
    for c in cells:
        c['best_psnr'] = c['best_ssim'] = False
    columns = OrderedDict()
    for c in cells:
        columns.setdefault((c['dataset'], c['network'], c['loss'], c['step']), []).append(c)
    for group in columns.values():
        for key, digits in (('psnr', PSNR_DIGITS), ('ssim', SSIM_DIGITS)):
            shown = [(round(c[key], digits), c) for c in group if not math.isnan(c[key])]
            if len(shown) < 2:  # nothing to compare with
                continue
            best = max(v for v, _ in shown)
            if all(v == best for v, _ in shown):  # all equal (e.g. step 0 of one network): nothing stands out
                continue
            for v, c in shown:
                c[f'best_{key}'] = v == best


def table1(results, steps=None, labels=None):
    """Build :class:`Table1` from results folders (or :class:`~lan_basicsr.report.results.Run` objects).

    Args:
        results (list): LANModel results folders (``results/<name>``), in the row order wanted.
        steps (list[int] | None): report steps; default the union of the runs' ``summary.csv`` steps.
        labels (dict | None): ``{folder or its base name: display label}``; default ``report.json``'s label, else
            the paper's name for the settings (``LAN``, ``Full-trainable``, ``Meta-learning``, ``Pretrained``, ...).

    Runs whose numbers are not comparable (other images, other noisy inputs, other dataset settings under one dataset
    name, a different step 0 from the same network) or two runs for one cell are refused with a DataError.
    """
    runs = load_runs(results, labels)
    check_comparable(runs)
    steps = _check_steps(list(steps), runs) if steps is not None else _default_steps(runs)
    losses = list(dict.fromkeys(r.loss for r in runs if r.steps > 0))
    cells, owner, rows, noisy = [], {}, OrderedDict(), OrderedDict()
    for run in runs:
        for ds in run.datasets:
            rows.setdefault(ds, [])
            if (run.network, run.method) not in rows[ds]:
                rows[ds].append((run.network, run.method))
            for step in steps:
                if step > run.steps:
                    continue
                loss = '' if step == 0 else run.loss
                key = (ds, run.network, run.method, loss, step)
                psnr, ssim = run.step_scores(ds, step)
                cell = {
                    'dataset': ds,
                    'network': run.network,
                    'method': run.method,
                    'loss': loss,
                    'step': step,
                    'psnr': _mean(psnr),
                    'ssim': _mean(ssim),
                    'images': len(psnr),
                    'results': run.folder
                }
                if key in owner:
                    other = owner[key]
                    if step == 0:  # the same method with another loss: step 0 is shared (checked equal)
                        continue
                    raise DataError(f'{other.folder} and {run.folder} both give {run.method} with {loss} on {ds}; '
                                    f'give one a display label (e.g. --label {run.name}="{run.method} (2)") or '
                                    'leave one out')
                owner[key] = run
                cells.append(cell)
            if ds not in noisy:
                inputs = run.inputs.get(ds, {})
                if inputs and set(run.images(ds)) <= set(inputs):
                    values = np.array([inputs[im] for im in run.images(ds)])
                    noisy[ds] = (_mean(values[:, 0]), _mean(values[:, 1]), len(values))
    _mark_best(cells)
    return Table1(cells, noisy, steps, losses, list(rows), rows)


def gains_table(runs, datasets=None):
    """Per run and dataset: how many images the adaptation helps / hurts (PSNR, last step vs step 0) and how many
    end below the noisy input (where ``inputs.csv`` gives it). Returns a list of dicts (runs with steps > 0)."""
    out = []
    for run in runs:
        if run.steps == 0:
            continue
        for ds in datasets or run.datasets:
            if ds not in run.scores or not run.has_gt(ds):
                continue
            curves = run.curves(ds)
            first, last = curves[:, 0, 0], curves[:, -1, 0]
            gain = last - first
            noisy = [run.noisy(ds, im) for im in run.images(ds)]
            known = all(n is not None for n in noisy)
            noisy_psnr = np.array([n[0] for n in noisy]) if known else None
            out.append({
                'dataset': ds,
                'method': run.method,
                'loss': run.loss,
                'network': run.network,
                'results': run.folder,
                'images': len(gain),
                'helps': int((gain > 0).sum()),
                'hurts': int((gain < 0).sum()),
                'mean_gain': float(gain.mean()),
                'median_gain': float(np.median(gain)),
                'min_gain': float(gain.min()),
                'max_gain': float(gain.max()),
                'below_noisy_step0': int((first < noisy_psnr).sum()) if known else None,
                'below_noisy_last': int((last < noisy_psnr).sum()) if known else None,
            })
    return out
