"""The results folder of a test-time adaptation run: per-step CSVs (writing, merging, resume), the noisy inputs'
scores, the summary and the settings signature. :class:`~lan_basicsr.models.lan_model.LANModel` is the loop; this
module is everything it leaves on disk.

Files under ``results/<name>/``:

- ``per_step.csv`` (``dataset,image,step,psnr,ssim,loss``): one row per image and step; ``loss`` is the loss
  computed at that step (empty at step N and after a non-finite stop); psnr/ssim are empty without GT. Rows are
  sorted by dataset (in test order), image name, step.
- ``inputs.csv`` (``dataset,image,psnr,ssim``): the noisy input of every image scored against its GT as the steps
  are (written only where there is GT), so that "worse than the noisy input" can be counted without recomputing.
- ``selected.csv`` (``dataset,image,step,alpha,score,psnr,ssim``), with ``adapt.select`` other than ``Last``: per image
  the step a ground-truth-free rule chose, the weight α of the network output in its blend with the noisy input
  (1: the output alone), the rule's score (lower is better) and the selected image scored against GT (empty without
  GT; the rule never reads it). See :mod:`lan_basicsr.models.selection`.
- ``summary.csv`` (``dataset,step,psnr,ssim,images``): means over images at the report steps; with a selection rule,
  one more row per dataset whose step is ``selected``.
- ``adapt_run.json``: the settings that determine the numbers (``LANModel.run_settings``: network, checkpoint
  content hashes, every dataset and noise option, seeds, metrics, adapt) and, per dataset, the image list with the
  files' sizes (:func:`image_manifest`); a rerun with any of it different is refused, naming the keys.

Resume: an image is done when per_step.csv holds its rows for steps 0..N; the same command run again skips done
images, drops a partially written image and redoes it, so the final file equals an uninterrupted run's.
Under torchrun rank 0 appends to ``per_step.csv`` (``inputs.csv``), rank r > 0 to ``per_step.rank<r>.csv``
(``inputs.rank<r>.csv``, ``selected.rank<r>.csv``), so no file has two writers; rank 0 merges the part files
(:meth:`StepStore.consolidate`). inputs.csv and selected.csv rows are written before an image's per-step rows and keep
only the images whose steps are complete, in per_step.csv's order.
"""
import csv
import io
import json
import math
import os
from collections import OrderedDict
from os import path as osp

from basicsr.utils import get_root_logger

from lan_basicsr.utils.errors import OptionError

__all__ = [
    'FIELDS', 'INPUT_FIELDS', 'SELECTED_FIELDS', 'SUMMARY_FIELDS', 'SELECTED_STEP', 'StepStore', 'read_step_csv',
    'read_inputs_csv', 'read_selected_csv', 'image_csv', 'input_csv', 'selected_csv', 'summarise', 'mean',
    'write_summary', 'check_settings', 'write_settings', 'atomic_write', 'fmt_score', 'image_manifest'
]

FIELDS = ('dataset', 'image', 'step', 'psnr', 'ssim', 'loss')
INPUT_FIELDS = ('dataset', 'image', 'psnr', 'ssim')
SELECTED_FIELDS = ('dataset', 'image', 'step', 'alpha', 'score', 'psnr', 'ssim')
SELECTED_STEP = 'selected'  # the summary.csv step of the selected results
SUMMARY_FIELDS = ('dataset', 'step', 'psnr', 'ssim', 'images')
SETTINGS_FILE = 'adapt_run.json'
_NOT_COMPARED = ('datasets', 'files')  # datasets: compared one by one; files: where the compared contents were


def fmt_score(value):
    return '' if math.isnan(value) else format(value, '.6f')


def _fmt_loss(value):
    return repr(float(value))  # shortest exact form; 'nan' / 'inf' for the step that stopped an image


def image_csv(dataset, image, result, steps):
    """CSV text of one image's N + 1 rows (loss empty at step N and after a non-finite stop).

    ``result`` has ``psnr``, ``ssim`` (N + 1 each), ``loss`` (N) and ``stopped_at`` (a step or None).
    """
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    last = steps - 1 if result.stopped_at is None else result.stopped_at
    for step in range(steps + 1):
        loss = _fmt_loss(result.loss[step]) if step <= last else ''
        writer.writerow([dataset, image, step, fmt_score(result.psnr[step]), fmt_score(result.ssim[step]), loss])
    return buf.getvalue()


def input_csv(dataset, image, psnr, ssim):
    """CSV text of one image's noisy-input row."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator='\n').writerow([dataset, image, fmt_score(psnr), fmt_score(ssim)])
    return buf.getvalue()


def selected_csv(dataset, image, step, alpha, score, psnr, ssim):
    """CSV text of one image's selected.csv row (α and the score in their shortest exact form)."""
    score = '' if math.isnan(score) else repr(float(score))
    buf = io.StringIO()
    csv.writer(
        buf, lineterminator='\n').writerow(
            [dataset, image, step, repr(float(alpha)), score,
             fmt_score(psnr), fmt_score(ssim)])
    return buf.getvalue()


def _read_rows(path, fields, what):
    """Complete rows of a CSV written by this module (header ``fields``); a truncated last line is dropped."""
    if not osp.isfile(path):
        return []
    with open(path, newline='', encoding='utf-8') as f:
        text = f.read()
    if not text:
        return []
    lines = text.split('\n')
    if lines[-1] != '':  # the last line was cut mid-write
        lines = lines[:-1]
    rows = list(csv.reader(lines))
    if not rows or tuple(rows[0]) != fields:
        raise OptionError(f'{path}: not a {what} file (expected header {",".join(fields)}); move it away')
    return [row for row in rows[1:] if len(row) == len(fields)]


def read_step_csv(path):
    """Rows of a per-step CSV grouped by image: ``OrderedDict[(dataset, image)] -> list of row lists``.

    A truncated last line (an interrupted write) is dropped; a file with a foreign header is an OptionError.
    """
    groups = OrderedDict()
    for row in _read_rows(path, FIELDS, 'per-step results'):
        groups.setdefault((row[0], row[1]), []).append(row)
    return groups


def read_inputs_csv(path):
    """``{(dataset, image): (psnr, ssim)}`` from an ``inputs.csv`` (NaN for empty cells)."""
    out = {}
    for row in _read_rows(path, INPUT_FIELDS, 'noisy-input scores'):
        out[(row[0], row[1])] = tuple(float(v) if v else math.nan for v in row[2:])
    return out


def read_selected_csv(path):
    """``{(dataset, image): {'step': int, 'alpha', 'score', 'psnr', 'ssim': float}}`` from a ``selected.csv``."""
    out = {}
    for row in _read_rows(path, SELECTED_FIELDS, 'selected-step'):
        values = [float(v) if v else math.nan for v in row[3:]]
        out[(row[0], row[1])] = {'step': int(row[2]), **dict(zip(SELECTED_FIELDS[3:], values))}
    return out


def _complete(rows, steps):
    return [r[2] for r in rows] == [str(s) for s in range(steps + 1)]


def atomic_write(path, text):
    """Write ``text`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    tmp = f'{path}.tmp'
    with open(tmp, 'w', newline='', encoding='utf-8') as f:
        f.write(text)
    os.replace(tmp, path)


def _append(path, header, text):
    new = not osp.isfile(path) or osp.getsize(path) == 0
    with open(path, 'a', newline='', encoding='utf-8') as f:
        if new:
            f.write(','.join(header) + '\n')
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class StepStore:
    """The per-step and noisy-input CSV files of one results folder, seen from one rank (see the module doc)."""

    def __init__(self, root, rank, steps):
        self.root = root
        self.rank = rank
        self.steps = steps
        self.main = osp.join(root, 'per_step.csv')
        self.inputs = osp.join(root, 'inputs.csv')
        self.selected = osp.join(root, 'selected.csv')

    def _own(self, stem):
        return osp.join(self.root, f'{stem}.csv' if self.rank == 0 else f'{stem}.rank{self.rank}.csv')

    def _parts(self, stem):
        if not osp.isdir(self.root):
            return []
        names = [n for n in os.listdir(self.root) if n.startswith(f'{stem}.rank') and n.endswith('.csv')]
        return [osp.join(self.root, n) for n in sorted(names)]

    def consolidate(self, dataset_order=()):
        """Rank 0 only: merge part files into per_step.csv / inputs.csv, keep only complete images, sort; return
        the per-step groups ``OrderedDict[(dataset, image)] -> rows``."""
        merged, dropped = OrderedDict(), []
        for path in [self.main] + self._parts('per_step'):
            for key, rows in read_step_csv(path).items():
                if key in merged:
                    continue
                if _complete(rows, self.steps):
                    merged[key] = rows
                else:
                    dropped.append(key)
        for key in dropped:
            if key not in merged:
                get_root_logger().info(f'per_step.csv: {key[0]}/{key[1]} was written incompletely; it is redone')
        order = list(dict.fromkeys([k[0] for k in merged] + list(dataset_order)))
        keys = sorted(merged, key=lambda k: (order.index(k[0]), k[1]))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator='\n')
        writer.writerow(FIELDS)
        for key in keys:
            writer.writerows(merged[key])
        os.makedirs(self.root, exist_ok=True)
        atomic_write(self.main, buf.getvalue())
        for stem, fields in _SIDE_FILES:
            self._consolidate_side(stem, fields, keys)
        for part in self._parts('per_step') + [p for stem, _ in _SIDE_FILES for p in self._parts(stem)]:
            os.remove(part)
        return OrderedDict((k, merged[k]) for k in keys)

    def _consolidate_side(self, stem, fields, keys):
        """A side file (inputs.csv, selected.csv) keeps the rows of the images whose steps are complete, in
        per_step.csv's order (the first row of an image wins: the main file, then the part files)."""
        main = osp.join(self.root, f'{stem}.csv')
        rows = {}
        for path in [main] + self._parts(stem):
            for row in _read_rows(path, fields, f'{stem}.csv'):
                rows.setdefault((row[0], row[1]), row)
        kept = [k for k in keys if k in rows]
        if not kept:
            if osp.isfile(main):
                os.remove(main)
            return
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator='\n')
        writer.writerow(fields)
        writer.writerows(rows[k] for k in kept)
        atomic_write(main, buf.getvalue())

    def has_rows(self):
        """Whether per_step.csv or a part file holds more than a header."""
        size = len(','.join(FIELDS)) + 1
        return any(osp.isfile(p) and osp.getsize(p) > size for p in [self.main] + self._parts('per_step'))

    def append(self, text, input_text=None):
        """Append one image's rows (its noisy-input row first): the per-step rows mark it done."""
        os.makedirs(self.root, exist_ok=True)
        if input_text:
            _append(self._own('inputs'), INPUT_FIELDS, input_text)
        _append(self._own('per_step'), FIELDS, text)

    def append_selected(self, text):
        """Append one image's selected.csv row; call it before :meth:`append` (which marks the image done)."""
        os.makedirs(self.root, exist_ok=True)
        _append(self._own('selected'), SELECTED_FIELDS, text)


def mean(values):
    """Mean of the non-NaN values (NaN when there is none)."""
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def summarise(groups, report_steps, selected=None):
    """Summary rows ``{dataset, step, psnr, ssim, images}`` from per-step groups (dataset order kept).

    ``selected`` (:func:`read_selected_csv`'s dict): one more row per dataset, step :data:`SELECTED_STEP`, over the
    images of ``groups`` that have a selected row.
    """
    by_dataset = OrderedDict()
    for (dataset, image), rows in groups.items():
        by_dataset.setdefault(dataset, []).append((image, rows))
    summary = []
    for dataset, images in by_dataset.items():
        for step in report_steps:
            rows = [img[step] for _, img in images if step < len(img)]
            psnr = mean([float(r[3]) if r[3] else math.nan for r in rows])
            ssim = mean([float(r[4]) if r[4] else math.nan for r in rows])
            summary.append({'dataset': dataset, 'step': step, 'psnr': psnr, 'ssim': ssim, 'images': len(rows)})
        if selected is not None:
            chosen = [selected[(dataset, image)] for image, _ in images if (dataset, image) in selected]
            summary.append({
                'dataset': dataset,
                'step': SELECTED_STEP,
                'psnr': mean([c['psnr'] for c in chosen]),
                'ssim': mean([c['ssim'] for c in chosen]),
                'images': len(chosen)
            })
    return summary


def write_summary(root, summary):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    writer.writerow(SUMMARY_FIELDS)
    for r in summary:
        writer.writerow([r['dataset'], r['step'], fmt_score(r['psnr']), fmt_score(r['ssim']), r['images']])
    atomic_write(osp.join(root, 'summary.csv'), buf.getvalue())


_SIDE_FILES = (('inputs', INPUT_FIELDS), ('selected', SELECTED_FIELDS))


def _flatten(value, prefix=''):
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f'{prefix}{k}.'))
        return out
    return {prefix[:-1]: value}


def _normalise(signature):
    return json.loads(json.dumps(signature, sort_keys=True, default=str))


def _lmdb_shape(meta, key):
    if not isinstance(meta, dict):
        return None
    if key in meta:
        return meta[key]
    return next((sub[key] for sub in meta.values() if isinstance(sub, dict) and key in sub), None)


def image_manifest(dataset):
    """``{image: bytes}`` of a dataset's images (the sizes of each item's files, lq and gt), without reading them.

    Keys are the image names the CSVs use (``dataset.names``, else the first file's stem, else the LMDB key); an
    LMDB item's "size" is its ``meta_info.txt`` shape. A dataset without ``paths`` gives ``{'count': len}``.
    """
    paths = getattr(dataset, 'paths', None)
    if paths is None:
        return {'count': len(dataset)}
    names = getattr(dataset, 'names', None)
    meta = getattr(dataset, 'meta', None)
    out = {}
    for i, entry in enumerate(paths):
        files = [str(f) for f in (entry.values() if isinstance(entry, dict) else [entry])]
        name = names[i] if names is not None else osp.splitext(osp.basename(files[0]))[0]
        if all(osp.isfile(f) for f in files):
            out[name] = sum(osp.getsize(f) for f in files)
        else:  # LMDB keys: the shape meta_info.txt gives
            shape = _lmdb_shape(meta, files[0])
            out[name] = 'x'.join(str(v) for v in shape) if shape else files[0]
    return out


def _diff_message(diff, old_flat, new_flat):
    images = [k for k in diff if '.images.' in k]
    others = [k for k in diff if '.images.' not in k]
    parts = [f'{k}: {old_flat.get(k)!r} there, {new_flat.get(k)!r} now' for k in others[:4]]
    if images:
        removed = [k.split('.images.', 1)[1] for k in images if k not in new_flat]
        added = [k.split('.images.', 1)[1] for k in images if k not in old_flat]
        changed = [k.split('.images.', 1)[1] for k in images if k in old_flat and k in new_flat]
        dataset = images[0].split('.images.', 1)[0]
        what = [
            f'{len(v)} {label} (e.g. {v[0]})'
            for label, v in (('missing now', removed), ('new', added), ('changed in size', changed)) if v
        ]
        parts.append(f'{dataset}.images: {", ".join(what)}')
    return '; '.join(parts)


def check_settings(root, signature, name, steps, partial=False):
    """Refuse to continue results made with other settings (e.g. ``--cfg-options adapt.type=...`` under one name).

    ``signature`` is ``{..., 'datasets': {dataset name: settings}}``; datasets present in only one of the two runs
    are not compared (a run may add a dataset to a folder). ``partial``: the image lists are not known yet (checked
    later, per dataset). Raises :class:`OptionError` naming the keys that differ.
    """
    path = osp.join(root, SETTINGS_FILE)
    if not osp.isfile(path) or not StepStore(root, 0, steps).has_rows():
        return
    try:
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
    except (OSError, ValueError) as e:
        raise OptionError(
            f'{path}: unreadable ({e}); the folder\'s settings are unknown: move the folder away') from None
    new = _normalise(signature)
    old_flat = _flatten({k: v for k, v in old.items() if k not in _NOT_COMPARED})
    new_flat = _flatten({k: v for k, v in new.items() if k not in _NOT_COMPARED})
    for ds in set(old.get('datasets', {})) & set(new.get('datasets', {})):
        old_ds, new_ds = dict(old['datasets'][ds]), dict(new['datasets'][ds])
        if partial or 'images' not in new_ds or 'images' not in old_ds:  # no list yet: nothing adapted there
            old_ds.pop('images', None)
            new_ds.pop('images', None)
        old_flat.update(_flatten(old_ds, f'datasets.{ds}.'))
        new_flat.update(_flatten(new_ds, f'datasets.{ds}.'))
    diff = [k for k in sorted(set(old_flat) | set(new_flat)) if old_flat.get(k) != new_flat.get(k)]
    if diff:
        raise OptionError(
            f'{root} holds results of a run with other settings ({_diff_message(diff, old_flat, new_flat)}'
            f'). Give this run its own name (--cfg-options name={name}_<variant>) or move that folder away')


def write_settings(root, signature, steps):
    """Write ``adapt_run.json``; datasets of earlier runs into the same folder are kept."""
    new = _normalise(signature)
    path = osp.join(root, SETTINGS_FILE)
    if osp.isfile(path) and StepStore(root, 0, steps).has_rows():
        with open(path, encoding='utf-8') as f:
            old = json.load(f)
        new['datasets'] = {**old.get('datasets', {}), **new.get('datasets', {})}
    atomic_write(path, json.dumps(new, indent=2, sort_keys=True) + '\n')
