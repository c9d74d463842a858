"""Reading LANModel results folders: scores, settings, saved images and offsets. Nothing is recomputed.

A results folder (``results/<name>/``, written by :class:`lan_basicsr.models.lan_model.LANModel`) holds
``per_step.csv`` (``dataset,image,step,psnr,ssim,loss``), ``adapt_run.json`` (the settings), optionally
``inputs.csv`` (``dataset,image,psnr,ssim``: the noisy input against GT), ``report.json`` (the option file's
``report`` section: ``label``, ``train_noise``), ``visualization/<dataset>/<image>.png`` (final outputs),
``compare/<dataset>/<image>_{noisy,step0,gt}.png`` (``adapt.save_compare``) and
``offsets/<dataset>/<image>_{phi,input}.npy`` (``adapt.save_offset``).
"""
import csv
import json
import math
import os
from collections import OrderedDict
from os import path as osp

import numpy as np
from basicsr.utils import get_root_logger

from lan_basicsr.adapters.combined_adapter import COMBINED_DEFAULTS
from lan_basicsr.models.selection import is_last
from lan_basicsr.models.step_store import read_inputs_csv, read_selected_csv, read_step_csv
from lan_basicsr.utils.errors import DataError, OptionError

__all__ = [
    'Run', 'load_runs', 'check_comparable', 'method_label', 'loss_label', 'checkpoint_path', 'METHOD_LABELS',
    'LOSS_LABELS'
]

METHOD_LABELS = {
    'LAN': 'LAN',
    'FullTrainable': 'Full-trainable',
    'FirstLayer': 'First layer',
    'LastLayer': 'Last layer',
}
COMBINED_WEIGHTS_LABELS = {'LastLayer': 'last layer', 'FirstLayer': 'first layer', 'FullTrainable': 'all weights'}
LOSS_LABELS = {'ZSN2NLoss': 'ZS-N2N', 'Nbr2NbrLoss': 'Nbr2Nbr'}


def method_label(settings):
    """The paper's method name for the settings of ``adapt_run.json``.

    ``adapt.steps: 0`` is "Pretrained"; FullTrainable starting from a meta-learned network ("meta" in the checkpoint
    or ``adapt.init_path`` file name, as every meta option file here names it) is "Meta-learning"; other
    ``adapt.type`` values map through :data:`METHOD_LABELS`. Override with a display label where this guesses wrong.
    """
    adapt = settings.get('adapt') or {}
    if adapt.get('steps') == 0:
        return 'Pretrained'
    kind = adapt.get('type')
    files = settings.get('files') or {}  # the paths (adapt_run.json records file options by content)
    init = (
        files.get('adapt.init_path') or adapt.get('init_path') or files.get('path.pretrain_network_g')
        or settings.get('pretrain_network_g') or '')
    if kind == 'FullTrainable' and 'meta' in str(init).lower():
        return 'Meta-learning'
    label = METHOD_LABELS.get(kind, str(kind))
    if kind == 'OffsetAndWeights':  # which weights train beside the offset (adapt.combined.weights)
        weights = (adapt.get('combined') or {}).get('weights') or COMBINED_DEFAULTS['weights']
        label += f' ({COMBINED_WEIGHTS_LABELS.get(weights, weights)})'
    if adapt.get('init_path'):
        label += f' (from {osp.basename(str(files.get("adapt.init_path") or adapt["init_path"]))})'
    return label


def checkpoint_path(settings):
    """The checkpoint file a run started from, as given in its options (``adapt_run.json``'s ``files``)."""
    return (settings.get('files') or {}).get('path.pretrain_network_g') or settings.get('pretrain_network_g')


def loss_label(settings):
    """``ZS-N2N`` / ``Nbr2Nbr`` (or the loss type) of ``adapt.loss``."""
    loss = (settings.get('adapt') or {}).get('loss') or {}
    kind = loss.get('type', 'ZSN2NLoss')
    return LOSS_LABELS.get(kind, str(kind))


def _float(text):
    return float(text) if text not in ('', None) else math.nan


def _read_json(path, required):
    if not osp.isfile(path):
        if required:
            raise DataError(f'{path}: missing; a LANModel results folder has it (rerun tools/test.py to write it)')
        return {}
    try:
        with open(path, encoding='utf-8') as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f'{path}: not readable JSON ({e}); rerun the run or move the file away') from None
    if not isinstance(value, dict):
        raise DataError(f'{path}: expected a JSON object, got {type(value).__name__}')
    return value


class Run:
    """One LANModel results folder, read once.

    Attributes:
        folder (str): the folder. name (str): its base name (the run's ``name``).
        settings (dict): ``adapt_run.json``. report_opt (dict): ``report.json`` (may be empty).
        steps (int): ``adapt.steps`` (scores exist for steps 0..steps).
        method (str): the display label: ``label`` argument, else ``report.json`` ``label``, else
            :func:`method_label`. loss (str): :func:`loss_label`. network (str): ``network_g.type``.
        scores (OrderedDict): ``{dataset: OrderedDict{image: array (steps + 1, 2) of PSNR, SSIM}}``, complete images
            only (NaN without GT), in file order.
        inputs (dict): ``{dataset: {image: (psnr, ssim)}}`` of the noisy inputs (``inputs.csv``; empty if absent).
        summary_steps (list[int]): the steps ``summary.csv`` reports (the run's ``adapt.report_steps`` + last).
    """

    def __init__(self, folder, label=None):
        folder = osp.normpath(str(folder))
        if not osp.isdir(folder):
            raise DataError(f'{folder}: not a folder; give LANModel results folders (results/<name>/)')
        self.folder = folder
        self.name = osp.basename(folder)
        per_step = osp.join(folder, 'per_step.csv')
        if not osp.isfile(per_step):
            raise DataError(f'{folder}: no per_step.csv; is it a results folder of a LANModel run (tools/test.py '
                            'with model_type: LANModel) that has finished at least one image?')
        self.settings = _read_json(osp.join(folder, 'adapt_run.json'), required=True)
        self.report_opt = _read_json(osp.join(folder, 'report.json'), required=False)
        adapt = self.settings.get('adapt') or {}
        steps = adapt.get('steps')
        if not isinstance(steps, int) or steps < 0:
            raise DataError(f'{folder}/adapt_run.json: adapt.steps missing or invalid ({steps!r})')
        self.steps = steps
        self.method = label or self.report_opt.get('label') or method_label(self.settings)
        self.loss = loss_label(self.settings)
        self.network = str((self.settings.get('network_g') or {}).get('type', '?'))
        self.scores = self._read_scores(per_step)
        self.inputs = self._read_inputs(osp.join(folder, 'inputs.csv'))
        self.summary_steps = self._read_summary_steps(osp.join(folder, 'summary.csv'))
        self._selected = None

    def __repr__(self):
        return f'Run({self.folder!r}, method={self.method!r}, loss={self.loss!r}, steps={self.steps})'

    # -----------------------------------------------------------------------------------------------------------------
    def _read_scores(self, path):
        try:
            groups = read_step_csv(path)
        except OptionError as e:
            raise DataError(str(e)) from None
        scores, partial = OrderedDict(), []
        expected = [str(s) for s in range(self.steps + 1)]
        for (dataset, image), rows in groups.items():
            if [r[2] for r in rows] != expected:
                partial.append(f'{dataset}/{image}')
                continue
            scores.setdefault(dataset, OrderedDict())[image] = np.array([[_float(r[3]), _float(r[4])] for r in rows],
                                                                        dtype=np.float64)
        if partial:
            get_root_logger().warning(f'{path}: left out {len(partial)} incompletely written image(s) '
                                      f'({", ".join(partial[:3])}{", ..." if len(partial) > 3 else ""}); rerun the '
                                      'run to finish them')
        if not scores:
            raise DataError(f'{path}: no complete image (steps 0..{self.steps}); let the run finish')
        return scores

    @staticmethod
    def _read_inputs(path):
        try:
            scores = read_inputs_csv(path)
        except OptionError as e:
            raise DataError(str(e)) from None
        inputs = {}
        for (dataset, image), value in scores.items():
            inputs.setdefault(dataset, {})[image] = value
        return inputs

    @staticmethod
    def _read_summary_steps(path):
        if not osp.isfile(path):
            return []
        with open(path, newline='', encoding='utf-8') as f:
            return sorted({int(row['step']) for row in csv.DictReader(f) if row.get('step', '').isdigit()})

    # -----------------------------------------------------------------------------------------------------------------
    @property
    def datasets(self):
        return list(self.scores)

    def images(self, dataset):
        return list(self.scores.get(dataset, ()))

    def has_gt(self, dataset):
        return any(not np.isnan(s[0, 0]) for s in self.scores.get(dataset, {}).values())

    def step_scores(self, dataset, step):
        """``(psnr, ssim)`` arrays over the dataset's images at ``step`` (NaN without GT)."""
        values = np.array([s[step] for s in self.scores[dataset].values()])
        return values[:, 0], values[:, 1]

    def curves(self, dataset):
        """Array (images, steps + 1, 2) of every image's PSNR/SSIM at every step."""
        return np.stack(list(self.scores[dataset].values()))

    def noisy(self, dataset, image):
        """``(psnr, ssim)`` of the noisy input (``inputs.csv``), or None when unknown."""
        return self.inputs.get(dataset, {}).get(image)

    @property
    def dataset_settings(self):
        return self.settings.get('datasets') or {}

    @property
    def selects(self):
        """Whether the run chose its saved images with a GT-free rule (``adapt.select``): then ``visualization/``
        holds the selected image, not the last step's."""
        return not is_last((self.settings.get('adapt') or {}).get('select'))

    def selected(self, dataset, image):
        """The rule's choice for one image (``selected.csv``: step, alpha, score, psnr, ssim), or None."""
        if not self.selects:
            return None
        if self._selected is None:
            path = osp.join(self.folder, 'selected.csv')
            self._selected = read_selected_csv(path) if osp.isfile(path) else {}
        return self._selected.get((dataset, image))

    def image_path(self, kind, dataset, image):
        """Path of a saved picture, or None: ``adapted`` (the last step's output), ``selected`` (the image a rule
        chose, with ``adapt.select``), ``noisy``, ``step0``, ``gt``."""
        if kind in ('adapted', 'selected'):
            if (kind == 'selected') != self.selects:  # visualization/ holds one of the two
                return None
            path = osp.join(self.folder, 'visualization', dataset, f'{image}.png')
        else:
            path = osp.join(self.folder, 'compare', dataset, f'{image}_{kind}.png')
        return path if osp.isfile(path) else None

    def offset_paths(self, dataset, image):
        """``(phi.npy, input.npy)`` paths saved with ``adapt.save_offset``, or None."""
        base = osp.join(self.folder, 'offsets', dataset, image)
        paths = (f'{base}_phi.npy', f'{base}_input.npy')
        return paths if all(osp.isfile(p) for p in paths) else None

    def offset_images(self, dataset):
        """Images of ``dataset`` with saved offsets, in results order."""
        folder = osp.join(self.folder, 'offsets', dataset)
        if not osp.isdir(folder):
            return []
        names = set(os.listdir(folder))
        return [im for im in self.images(dataset) if f'{im}_phi.npy' in names and f'{im}_input.npy' in names]


def _label_for(folder, labels):
    if not labels:
        return None
    norm = osp.normpath(str(folder))
    for key in (str(folder), norm, osp.abspath(norm), osp.basename(norm)):
        if key in labels:
            return labels[key]
    return None


def load_runs(results, labels=None):
    """:class:`Run` objects for ``results`` (folders or Run objects); ``labels`` maps a folder (path or base name)
    to its display label, overriding ``report.json`` and the label derived from the settings."""
    runs = []
    for item in results:
        runs.append(item if isinstance(item, Run) else Run(item, _label_for(item, labels)))
    if not runs:
        raise OptionError('no results folders given')
    seen = set()
    for run in runs:
        if run.folder in seen:
            raise OptionError(f'{run.folder}: given twice')
        seen.add(run.folder)
    known = {k for r in runs for k in (r.folder, osp.abspath(r.folder), r.name)}
    unused = [k for k in (labels or {}) if osp.normpath(str(k)) not in known and k not in known]
    if unused:
        raise OptionError(f'label for "{unused[0]}": no such results folder among {", ".join(r.name for r in runs)}')
    return runs


def check_comparable(runs):
    """Refuse to put runs side by side whose numbers are not comparable: per dataset name, the same images, the same
    noisy inputs (``inputs.csv``) and the same recorded dataset settings (``adapt_run.json``)."""
    by_dataset = OrderedDict()
    for run in runs:
        for dataset in run.datasets:
            by_dataset.setdefault(dataset, []).append(run)
    for dataset, group in by_dataset.items():
        first = group[0]
        images = set(first.images(dataset))
        for run in group[1:]:
            other = set(run.images(dataset))
            if other != images:
                only = sorted(images ^ other)
                raise DataError(f'{dataset}: {first.folder} has {len(images)} images, {run.folder} {len(other)} '
                                f'(differing: {", ".join(only[:3])}{", ..." if len(only) > 3 else ""}); means over '
                                'different images are not comparable: finish the runs (rerun the same command) or '
                                'leave one out')
            mine, theirs = _dataset_signature(first, dataset), _dataset_signature(run, dataset)
            if mine is not None and theirs is not None and mine != theirs:
                keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                raise DataError(f'{dataset}: {first.folder} and {run.folder} were made with other dataset settings '
                                f'({", ".join(keys)}); they are different data under one name')
        known = [(run, run.inputs[dataset]) for run in group if dataset in run.inputs]
        for run, noisy in known[1:]:
            ref_run, ref = known[0]
            for image in set(noisy) & set(ref):
                if abs(noisy[image][0] - ref[image][0]) > 1e-4:
                    raise DataError(f'{dataset}/{image}: the noisy input scores {noisy[image][0]:.4f} dB in '
                                    f'{run.folder}/inputs.csv but {ref[image][0]:.4f} dB in {ref_run.folder}: the runs '
                                    'saw different noise; give them different dataset names or leave one out')
        _check_step0(dataset, group)
    return by_dataset


def _check_step0(dataset, group):
    """Runs that start from the same network (architecture, checkpoint, init_path) must score step 0 alike."""
    starts = OrderedDict()
    for run in group:
        adapt = run.settings.get('adapt') or {}
        path_opt = run.settings.get('path') or {}  # adapt_run.json records checkpoints by content (sha256)
        start = [
            run.settings.get('network_g'),
            path_opt.get('pretrain_network_g') or run.settings.get('pretrain_network_g'),
            adapt.get('init_path')
        ]
        key = json.dumps(start, sort_keys=True, default=str)
        starts.setdefault(key, []).append(run)
    for same in starts.values():
        ref = same[0]
        for run in same[1:]:
            for image in ref.images(dataset):
                a, b = ref.scores[dataset][image][0, 0], run.scores[dataset][image][0, 0]
                if abs(a - b) > 0.01:  # identical networks and inputs: equal up to floating-point noise
                    raise DataError(f'{dataset}/{image}: step 0 (no adaptation yet) scores {a:.4f} dB in '
                                    f'{ref.folder} but {b:.4f} dB in {run.folder}, although both start from the same '
                                    'network: the runs saw different inputs or weights; leave one out')


def _dataset_signature(run, dataset):
    sig = run.dataset_settings.get(dataset)
    if sig is None:
        return None
    # the same data may live in another folder on another machine: compare data roots by their last component
    return {k: osp.basename(osp.normpath(str(v))) if k.startswith('dataroot') and v else v for k, v in sig.items()}
