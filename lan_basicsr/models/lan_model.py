"""LANModel: test-time adaptation of every test image (LAN or a network baseline), scored at every step.

Per image (the official loop, ../shared/PROTOCOL.md, without its waste): reset the adapter (weights back to the
reference kept in memory, new optimiser), then for ``step`` in 0..N-1 compute the self-supervised loss on the adapted
input, score the network output the loss computed anyway (step ``step``: the state after ``step`` updates), take
one optimiser step; finally one no-grad forward scored as step N. GT is only ever used for scoring.

Batches (``adapt.batch_size: B``): B images of one size are adapted together exactly as one at a time (up to
floating-point summation order): LAN's φ is one B×C×H×W tensor, network adapters get per-image weight copies, the
loss back-propagated is the sum of the per-image losses (each image its own gradient; Adam is elementwise, so each
its own optimiser state), each image draws from its own generator. A step never waits for the device (no ``.item()``,
no finiteness test read back); the scores are computed on the device and read once per batch.

Outputs under ``results/<name>/`` (per_step.csv, inputs.csv, summary.csv, adapt_run.json; resume and torchrun
rules): :mod:`lan_basicsr.models.step_store`. Also ``visualization/<dataset>/<image>.png`` (the final denoised images)
and, with ``adapt.save_offset``, ``offsets/<dataset>/<image>_phi.npy`` (φ) and ``<image>_input.npy`` (y + tanh φ),
float32 CHW; with ``adapt.save_compare``, ``compare/<dataset>/<image>_{noisy,step0,gt}.png`` (the noisy input, the
step-0 output of the reset network, the GT when there is one) for side-by-side pictures (:mod:`lan_basicsr.report`);
``report.json``: the option file's ``report`` section (display label, training noise of the network), when given.
With ``adapt.select`` (a ground-truth-free rule, :mod:`lan_basicsr.models.selection`) the saved image is the selected
one and ``selected.csv`` records each image's choice.

torchrun: rank r adapts images r, r + world_size, ... (each rank on its own, no DDP: adaptation is per image).
Rank 0 merges the ranks' part files before (leftovers of an interrupted run, any world size) and after each
dataset, and broadcasts the set of done images so that no rank reads a file another one writes.

Batches are formed in the rank's image order (B at a time, a new batch where the image size changes) and are the
same on a resumed run: a batch that an interruption left partly written is adapted again whole, and only its missing
images are written, so the files equal an uninterrupted run's.

Non-finite loss (or gradient) at step k: the image's adaptation stops at its last finite state (no update with that
loss), a warning names the image; the step-k row keeps the non-finite loss, rows k+1..N carry the step-k scores
with an empty loss, and the saved image is the step-k output. The run goes on with the next image. (The batch runs
on unchecked; the flagged image is then adapted again alone, reading every step's loss, to find its stop.)

Extension points: ``adapt_batch(net, ...)`` runs whatever ``net`` it is given (a tiled wrapper of the network needs
no change in the loop); adapters (``lan_basicsr/adapters``) decide what is trained and the network the loss runs;
losses are called ``loss_fn(net, x, step, steps, generators=...)`` and return ``SelfSupervisedOutput(loss, output,
per_image)``; ``observer(step, adapted_input, output, losses)`` sees every step (``LANModel.observer``; one with
``start(lq)`` / ``bind(network)`` methods is given the batch's noisy images / the network the loss runs first, e.g. a
GT-free step-selection rule, ``adapt.select``).
"""

import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from copy import deepcopy
from os import path as osp
from typing import NamedTuple, Optional

import numpy as np
import torch
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY
from torch.utils.data import default_collate
from tqdm import tqdm

from lan_basicsr.adapters.base_adapter import ELEMENTWISE_OPTIMIZERS
from lan_basicsr.adapters.weight_adapter import NetworkAdapter
from lan_basicsr.metrics import TensorScorer, score_images, tensor_scoring_supported
from lan_basicsr.utils.errors import DataError, OptionError
from lan_basicsr.utils.option_schema import (AnyValue, Bool, Int, ListOf, Registered, Section, Spec, Str,
                                             accepted_arguments, class_option_values)
from lan_basicsr.utils.registry import ADAPTER_REGISTRY, build_from_registry, check_registered
from .denoise_model import DenoiseModel, _image_name
from .selection import SelectSpec, build_selector, is_last
from .speed import AMP_DTYPES, SpeedModes
from .step_store import (StepStore, atomic_write, check_settings, image_csv, image_manifest, input_csv, mean,
                         read_selected_csv, read_step_csv, selected_csv, summarise, write_settings, write_summary)
from .tiling import build_tiled

__all__ = [
    'LANModel', 'ADAPT_DEFAULTS', 'AdaptResult', 'adapt_batch', 'adapt_image', 'build_adapter', 'read_step_csv',
    'SpeedModes'
]

ADAPT_DEFAULTS = {
    'type': 'LAN',
    'steps': 20,
    'lr': None,  # None: the adapter's default (LAN 5e-4, network adapters 5e-6)
    'optim': {
        'type': 'Adam'
    },
    'loss': {
        'type': 'ZSN2NLoss'
    },
    'seed': 0,
    'report_steps': [0, 5, 10, 20],
    'save_offset': False,
    'save_compare': False,
    'batch_size': 1,  # images adapted together (same size), exactly as one at a time
    'channels_last': True,  # default mode: weights and inputs in channels-last memory format (see speed.py)
    'amp': None,  # opt-in: bf16 (the network in autocast; φ, loss, optimiser float32)
    'compile': False,  # opt-in: torch.compile the network (static shapes)
    'tile': None,  # {size, pad}: adapt in tiles (lan_basicsr/models/tiling.py); None = the whole image at once
    'select': {
        'type': 'Last'
    },  # or a ground-truth-free rule choosing the step to keep (lan_basicsr/models/selection.py)
}
# The loop's keys; the rest of adapt: goes to the adapter.
_MODEL_KEYS = ('steps', 'loss', 'seed', 'report_steps', 'save_offset', 'save_compare', 'batch_size', 'channels_last',
               'amp', 'compile', 'select', 'tile')
_NOT_IN_SIGNATURE = ('report_steps', 'save_offset', 'save_compare')  # do not change the numbers
# Value rules of the loop's keys (checked before anything is built); a loop key without a rule is accepted as is.
ADAPT_VALUES = {
    'steps': Int(ge=0),
    'seed': Int(ge=0),
    'report_steps': ListOf(Int(ge=0), null=True),
    'save_offset': Bool(),
    'save_compare': Bool(),
    'loss': Registered('loss'),
    'select': SelectSpec(),
    'batch_size': Int(ge=1),
    'channels_last': Bool(),
    'amp': Str(choices=tuple(AMP_DTYPES), null=True),
    'compile': Bool(),
    'tile': Section({
        'size': Int(ge=1, null=True),
        'pad': Int(ge=0, null=True)
    }, null=True),
}
DEFAULT_METRICS = {'psnr': {'type': 'calculate_psnr'}, 'ssim': {'type': 'calculate_ssim'}}
# dataset keys that do not change the numbers (everything else is part of adapt_run.json)
_DATASET_KEYS_NOT_IN_SIGNATURE = ('name', 'phase', 'cache_images')
SCORED_METRICS = ('psnr', 'ssim')  # the per-step CSV columns


def _by_content(value, files, keys=()):
    """``value`` with every string that names an existing file replaced by ``sha256:<digest of its content>``; the
    original paths go to ``files`` (``{dotted key: path}``)."""
    from lan_basicsr.utils.checkpoint import file_sha256
    if isinstance(value, dict):
        return {k: _by_content(v, files, keys + (str(k), )) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_by_content(v, files, keys + (str(i), )) for i, v in enumerate(value)]
    if isinstance(value, str) and value and osp.isfile(osp.expanduser(value)):
        files['.'.join(keys)] = value
        return 'sha256:' + file_sha256(osp.expanduser(value))
    return value


class AdaptSpec(Spec):
    """The ``adapt`` section: the loop's keys (``ADAPT_DEFAULTS`` and ``_MODEL_KEYS``, rules in ``ADAPT_VALUES``) plus
    the arguments of the chosen adapter class (its signature; rules in its ``option_values``). A key another adapter
    takes is accepted when null, so that a base file can list ``layer: ~`` for every adapter type."""

    what = 'a mapping {type: LAN | FullTrainable | FirstLayer | LastLayer, steps, lr, ...}'

    def check(self, value, keys, ctx):
        if not self.is_mapping(value, keys, ctx, null=True):
            return
        cls = Registered('adapter', default_type=ADAPT_DEFAULTS['type']).resolve(value, keys, ctx)
        loop = set(_MODEL_KEYS) | (set(ADAPT_DEFAULTS) - {'type', 'lr', 'optim'})
        params, _ = accepted_arguments(cls, skip=('net', ))
        others = {}
        for name in ADAPTER_REGISTRY.keys():
            for arg in accepted_arguments(ADAPTER_REGISTRY.get(name), skip=('net', ))[0]:
                others.setdefault(arg, []).append(name)
        values = class_option_values(cls)
        for key, item in value.items():
            if key == 'type':
                continue
            if key in loop:
                ADAPT_VALUES.get(key, AnyValue()).check(item, keys + (key, ), ctx)
            elif key in params:
                if key in values:
                    values[key].check(item, keys + (key, ), ctx)
            elif key in others:
                if item is not None:
                    ctx.fail(
                        keys + (key, ), f'not used by adapt.type {cls.__name__} (an argument of '
                        f'{", ".join(sorted(others[key]))}); remove it or set it to null')
            else:
                known = sorted({'type'} | loop | set(others))
                Section({k: AnyValue() for k in known}).unknown_key(key, keys, ctx)


class AdaptResult(NamedTuple):
    """One image's adaptation: per-step scores (N + 1 each; NaN without GT), losses (N; NaN where not computed)."""
    psnr: list
    ssim: list
    loss: list
    output: torch.Tensor  # final prediction, 1,C,H,W, unclipped, detached
    adapted_input: torch.Tensor  # final network input, detached
    stopped_at: Optional[int]  # step whose loss/gradient was non-finite, or None
    offset: Optional[torch.Tensor] = None  # LAN: the final φ, 1,C,H,W, detached
    selected: Optional[object] = None  # with adapt.select: the rule's Selection (lan_basicsr.models.selection)


def build_adapter(net, adapt_opt):
    """Build ``ADAPTER_REGISTRY[adapt.type]`` for the bare ``net`` from the ``adapt`` section.

    Every key of ``adapt`` not used by the loop (steps, loss, seed, report_steps, save_*) is an argument of the
    adapter (``lr``, ``optim``, ``layer``, ``init_path``, ...); an unknown one is an :class:`OptionError` unless its
    value is null (so a base file can list ``layer: null`` for every adapter type).
    """
    opt = {k: v for k, v in adapt_opt.items() if k not in _MODEL_KEYS}
    check_registered(ADAPTER_REGISTRY, opt.get('type'), 'adapt.type')
    cls = ADAPTER_REGISTRY.get(opt['type'])
    accepted = set(accepted_arguments(cls, skip=('net', ))[0])
    opt = {k: v for k, v in opt.items() if k in accepted or k == 'type' or v is not None}  # e.g. layer: null for LAN
    unknown = sorted(set(opt) - accepted - {'type'})
    if unknown:
        raise OptionError(f'adapt: {", ".join(unknown)} not understood by adapt.type {opt["type"]} (it takes: '
                          f'{", ".join(sorted(accepted))}; the loop takes: {", ".join(_MODEL_KEYS)})')
    return build_from_registry(ADAPTER_REGISTRY, opt, where='adapt', net=net)


def _scores(output, gt, metrics_opt):
    if gt is None:
        return math.nan, math.nan
    s = score_images(output, gt, metrics_opt)
    return s.get('psnr', math.nan), s.get('ssim', math.nan)


class _StepScores:
    """The scores of a batch at every step, collected without waiting for the device until :meth:`collect`.

    The official PSNR/SSIM on the device (:class:`~lan_basicsr.metrics.TensorScorer`, equal to BasicSR's within
    float64 summation order) when ``val.metrics`` asks for nothing else; otherwise BasicSR's numpy metrics in a
    worker thread while the next step computes.
    """

    def __init__(self, gt, metrics_opt):
        if not any(name in metrics_opt for name in ('psnr', 'ssim')):
            gt = None  # nothing the loop records is asked for
        self.gt, self.metrics_opt, self.pending = gt, metrics_opt, []
        on_device = gt is not None and tensor_scoring_supported(metrics_opt)
        self.tensor = TensorScorer(gt, metrics_opt) if on_device else None
        self.pool = ThreadPoolExecutor(max_workers=1) if gt is not None and not on_device else None

    def add(self, output):
        if self.gt is None:
            self.pending.append(None)
        elif self.tensor is not None:
            self.pending.append(self.tensor(output))
        else:
            gt = self.gt
            self.pending.append(
                self.pool.submit(
                    lambda: [_scores(output[i:i + 1], gt[i:i + 1], self.metrics_opt) for i in range(len(gt))]))

    def collect(self, batch):
        """``(psnr, ssim)``: per image, the list of its scores at every step added (NaN without GT)."""
        steps = len(self.pending)
        nan = [[math.nan] * steps for _ in range(batch)]
        if self.tensor is not None:
            names = self.tensor.names
            table = torch.stack([torch.stack([s[k] for s in self.pending], 1) for k in names]).cpu().tolist()
            found = dict(zip(names, table))
            return found.get('psnr', nan), found.get('ssim', [row[:] for row in nan])
        if self.pool is not None:
            scored = [future.result() for future in self.pending]
            self.pool.shutdown()
            psnr = [[s[i][0] for s in scored] for i in range(batch)]
            return psnr, [[s[i][1] for s in scored] for i in range(batch)]
        return nan, [row[:] for row in nan]


def _image_losses(out, batch):
    """Each image's loss, (B,): the scalar loss of a batch of one (the same number as ``per_image[0]``), else
    ``out.per_image``."""
    if batch == 1:
        return out.loss.reshape(1)
    if out.per_image is not None:
        return out.per_image
    raise OptionError('adapt.batch_size > 1: this adapt.loss returns no per-image losses (SelfSupervisedOutput.'
                      'per_image); set adapt.batch_size: 1')


def _run_steps(net, adapter, loss_fn, lq, steps, generators, scores, speed, checked, image='image', observer=None):
    """The adaptation of the batch ``lq``: ``steps`` updates, the network output scored before each and after the last.

    ``checked=False`` (the normal path) never waits for the device: losses and finiteness flags stay device tensors,
    returned for the caller to read once. ``checked=True`` (one image) reads each step's loss and gradient and stops at
    the first non-finite one, without that update. Returns ``(losses, ok, output, adapted_input, stopped_at)``.
    """
    optimizer = adapter.reset(lq)
    model = speed.wrap(adapter.network(net))
    if observer is not None and hasattr(observer, 'bind'):
        observer.bind(model)  # e.g. a selection rule that runs the network itself
    batch = lq.shape[0]
    losses, ok, stopped_at = [], torch.ones(batch, dtype=torch.bool, device=lq.device), None
    for step in range(steps):
        x = adapter.adapted_input(lq)
        out = loss_fn(model, x, step, steps, generators=generators)
        per_image = _image_losses(out, batch)
        output = out.output
        if output is None:
            with torch.no_grad():
                output = model(x)
        output = output.detach()
        scores.add(output)
        if observer is not None:
            observer(step, x.detach(), output, per_image.detach())
        losses.append(per_image.detach())
        optimizer.zero_grad(set_to_none=True)
        if checked:
            value = float(per_image[0].detach())
            finite = math.isfinite(value)
            if finite:
                per_image.sum().backward()
                grads = adapter.grads_finite()
                finite = grads is None or bool(grads.all())
            if not finite:
                optimizer.zero_grad(set_to_none=True)
                what = 'loss' if not math.isfinite(value) else 'gradient'
                get_root_logger().warning(f'{image}: non-finite {what} at step {step} ({value}); adaptation stopped '
                                          f'there, steps {step + 1}..{steps} repeat step {step}\'s scores')
                stopped_at = step
                break
        else:
            per_image.sum().backward()  # a sum of per-image losses: each image gets its own gradient
            grads = adapter.grads_finite()
            ok &= per_image.detach().isfinite() if grads is None else per_image.detach().isfinite() & grads
        optimizer.step()
        del out
    if stopped_at is None:
        with torch.no_grad():
            x = adapter.adapted_input(lq)
            output = model(x)
        scores.add(output)
        if observer is not None:
            observer(steps, x, output, None)
    return losses, ok, output, x.detach(), stopped_at


def adapt_batch(net,
                adapter,
                loss_fn,
                lq,
                gt=None,
                steps=20,
                generators=None,
                metrics_opt=None,
                images=None,
                speed=None,
                observer=None):
    """Adapt to the images ``lq`` (B,C,H,W, one size) together, exactly as one at a time, and score every step.

    ``net``: the network in eval mode, as the loss should run it (the bare network, or a wrapper of it that keeps its
    parameters, e.g. tiling); ``adapter`` decides what is trained. ``generators``: one ``torch.Generator`` per image
    for the loss's random draws. ``gt`` (B,C,H,W) or None. ``speed``: :class:`SpeedModes` (None: the network exactly
    as given). ``observer(step, adapted_input, output, losses)``, if given, sees every step (``losses`` None at step
    N; never GT); an image replayed after a non-finite step is observed again from step 0, alone.

    The batch runs without waiting for the device; at the end one read gives every score and loss. An image whose loss
    or gradient was non-finite at some step is then adapted again alone, reading every step, and stops at its last
    finite state (see the module doc). Returns one :class:`AdaptResult` per image.
    """
    metrics_opt = metrics_opt or DEFAULT_METRICS
    speed = speed or SpeedModes(channels_last=False)
    batch = lq.shape[0]
    images = list(images or [f'image{i}' for i in range(batch)])
    starts = [g.get_state() for g in generators] if generators is not None else None
    scores = _StepScores(gt, metrics_opt)
    losses, ok, output, adapted, _ = _run_steps(
        net, adapter, loss_fn, lq, steps, generators, scores, speed, False, observer=observer)
    offset = adapter.offset()
    ok = ok.tolist()  # the one wait for the device
    losses = torch.stack(losses, 1).tolist() if losses else [[] for _ in range(batch)]
    psnr, ssim = scores.collect(batch)
    results = [
        AdaptResult(psnr[i], ssim[i], losses[i], output[i:i + 1], adapted[i:i + 1], None,
                    None if offset is None else offset[i:i + 1]) for i in range(batch)
    ]
    for i in (i for i in range(batch) if not ok[i]):
        generator = None
        if starts is not None:
            generator = torch.Generator(device=generators[i].device)
            generator.set_state(starts[i])
        results[i] = _adapt_checked(net, adapter, loss_fn, lq[i:i + 1], None if gt is None else gt[i:i + 1], steps,
                                    generator, metrics_opt, images[i], speed, observer)
    return results


def _adapt_checked(net, adapter, loss_fn, lq, gt, steps, generator, metrics_opt, image, speed, observer):
    """One image, reading every step's loss and gradient: stops at the first non-finite one (see the module doc)."""
    scores = _StepScores(gt, metrics_opt)
    generators = None if generator is None else [generator]
    losses, _, output, adapted, stopped_at = _run_steps(net, adapter, loss_fn, lq, steps, generators, scores, speed,
                                                        True, image, observer)
    offset = adapter.offset()
    losses = [float(v[0]) for v in losses]
    (psnr, ), (ssim, ) = scores.collect(1)
    if stopped_at is not None:
        psnr += [psnr[-1]] * (steps - stopped_at)
        ssim += [ssim[-1]] * (steps - stopped_at)
        losses += [math.nan] * (steps - stopped_at - 1)
    return AdaptResult(psnr, ssim, losses, output, adapted, stopped_at, offset)


def adapt_image(net,
                adapter,
                loss_fn,
                lq,
                gt=None,
                steps=20,
                generator=None,
                metrics_opt=None,
                image='image',
                speed=None,
                observer=None):
    """Adapt to one image ``lq`` (1,C,H,W) and score every step against ``gt`` (or not, when None).

    :func:`adapt_batch` for a batch of one; ``generator`` (a ``torch.Generator``) drives the loss's random draws.
    Returns :class:`AdaptResult`.
    """
    generators = None if generator is None else [generator]
    return adapt_batch(net, adapter, loss_fn, lq, gt, steps, generators, metrics_opt, [image], speed, observer)[0]


def _tile_conflicts(adapt):
    """``[(key, message)]``: the ``adapt`` keys that tiled adaptation cannot honour. It adapts one full-resolution
    image at a time, in float32, uncompiled: its backward recomputes each window outside autocast and torch.compile,
    and per-image weight copies (batches of network adapters) would bypass it."""
    tile = adapt.get('tile')
    if not isinstance(tile, dict) or tile.get('size') is None:
        return []
    batch = adapt.get('batch_size', 1)
    conflicts = {
        'batch_size': (isinstance(batch, int) and batch > 1, 1),
        'amp': (adapt.get('amp') is not None, 'null'),
        'compile': (adapt.get('compile') is True, 'false'),
    }
    return [(key, f'not available with adapt.tile (tiled adaptation adapts one image at a time, in float32, '
             f'uncompiled); set adapt.{key}: {fix} or remove adapt.tile') for key, (bad, fix) in conflicts.items()
            if bad]


@MODEL_REGISTRY.register()
class LANModel(DenoiseModel):
    """Test-time adaptation to every test image (``adapt:`` section), scored at every step; see the module doc.

    Reuses DenoiseModel for the network (building, strict checkpoint loading, device) and adds the ``adapt``
    loop. The network is never wrapped in DDP/DataParallel: each rank adapts its own images independently.
    """

    @classmethod
    def option_sections(cls):
        """Top-level sections this model reads besides BasicSR's (see lan_basicsr.utils.option_schema)."""
        # report: read by lan_basicsr.report (display label, the network's training noise), written to report.json
        report = Section({'label': Str(null=True), 'train_noise': Registered('noise', null=True)}, null=True)
        return {**super().option_sections(), 'adapt': AdaptSpec(), 'report': report}

    @classmethod
    def check_options(cls, opt, ctx):
        """Checks that need more than one key: run kind and the metric names the CSVs have columns for."""
        if ctx.is_train:
            ctx.fail(('model_type', ), 'LANModel adapts at test time: run it with tools/test.py, not tools/train.py')
        metrics = (opt.get('val') or {}).get('metrics') or {}
        unused = sorted(set(metrics) - set(SCORED_METRICS))
        if unused:
            ctx.fail(('val', 'metrics', unused[0]), f'LANModel records {" and ".join(SCORED_METRICS)} per step (the '
                     'per_step.csv columns); name the metrics psnr / ssim or remove this one')
        adapt = {**ADAPT_DEFAULTS, **(opt.get('adapt') or {})}
        batch = adapt['batch_size']
        for key, message in _tile_conflicts(adapt):
            ctx.fail(('adapt', key), message)
        if isinstance(batch, int) and batch > 1:  # images adapted together must stay independent
            optim = (adapt.get('optim') or {}).get('type', 'Adam')
            if optim not in ELEMENTWISE_OPTIMIZERS:
                ctx.fail(('adapt', 'optim', 'type'), f'{optim} may couple the elements of a tensor, so the images of a '
                         f'batch (adapt.batch_size {batch}) would not be independent; use one of '
                         f'{", ".join(ELEMENTWISE_OPTIMIZERS)} or adapt.batch_size: 1')
            adapter = ADAPTER_REGISTRY.get(adapt['type']) if adapt['type'] in ADAPTER_REGISTRY else None
            if adapt.get('compile') and adapter is not None and issubclass(adapter, NetworkAdapter):
                ctx.fail(('adapt', 'compile'), f'per-image weights (adapt.type {adapt["type"]}, adapt.batch_size '
                         f'{batch}) are not compiled; set adapt.batch_size: 1 or adapt.compile: false')

    def __init__(self, opt):
        if opt.get('is_train'):
            raise OptionError('model_type LANModel adapts at test time: run it with tools/test.py, not tools/train.py')
        self.opt = opt
        self.results_root = opt['path'].get('results_root') or osp.join(opt['root_path'], 'results', opt['name'])
        self.steps = (opt.get('adapt') or {}).get('steps', ADAPT_DEFAULTS['steps'])
        self._check_signature()  # before the network is built
        super().__init__(opt)
        adapt = deepcopy(ADAPT_DEFAULTS)
        adapt.update(deepcopy(opt.get('adapt') or {}))
        steps = adapt['steps']
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise OptionError(f'adapt.steps: expected an integer >= 0, got {steps!r}')
        if not isinstance(adapt['seed'], int) or isinstance(adapt['seed'], bool):
            raise OptionError(f'adapt.seed: expected an integer, got {adapt["seed"]!r}')
        report = adapt['report_steps'] or []
        if not isinstance(report, (list, tuple)) or not all(isinstance(s, int) and s >= 0 for s in report):
            raise OptionError(f'adapt.report_steps: expected a list of integers >= 0, got {report!r}')
        self.report_steps = sorted({s for s in report if s <= steps} | {steps})
        self.speed = SpeedModes.from_options(adapt)
        self.adapt_opt = adapt
        self.steps = steps
        self.batch_size = adapt['batch_size']
        self.net = self.speed.prepare(self.get_bare_model(self.net_g))
        self.net.eval()
        for key, message in _tile_conflicts(adapt):
            raise OptionError(f'adapt.{key}: {message}')
        self.net, adapt['tile'] = build_tiled(self.net, adapt['tile'])  # a transparent wrapper, or the network
        self.loss_fn = build_from_registry(LOSS_REGISTRY, adapt['loss'], where='adapt.loss').to(self.device)
        self.adapter = build_adapter(self.net, adapt)
        self.metrics_opt = (opt.get('val') or {}).get('metrics') or DEFAULT_METRICS
        self.observer = None  # observer(step, adapted_input, output, losses), called by the loop at every step
        self.selector = build_selector(adapt['select'])  # a GT-free step-selection rule (None: the last step)
        if self.selector is not None:
            self.observer = self.selector
        self._sequential = False  # per-image weights could not be vectorised: network adapters go one at a time
        get_root_logger().info(f'Adaptation: {adapt["type"]} (lr {self.adapter.lr:g}, {self.adapter.optim_opt}), '
                               f'{adapt["loss"]}, {steps} steps, seed {adapt["seed"]}, batch {self.batch_size}, '
                               f'{self.speed}')

    # DDP would all-reduce gradients between ranks that adapt different images; DataParallel splits batches of one.
    def model_to_device(self, net):
        return net.to(self.device)

    # -----------------------------------------------------------------------------------------------------------------
    @classmethod
    def run_settings(cls, opt):
        """Everything that changes the numbers of a run, as stored in ``adapt_run.json``: the networks, every dataset
        and noise option, the seeds, the metrics and the ``adapt`` section (resolved: ``lr: null`` is the adapter's
        default). Every option naming a file (a checkpoint, ``network_g.path``, ``adapt.init_path``, a meta_info
        file) is compared by its content (sha256), so that moving a file changes nothing and rewriting one is seen;
        ``files`` keeps the paths (not compared).
        A rerun into the same folder must match all of it; the image lists are added per dataset (validation)."""
        adapt = deepcopy(ADAPT_DEFAULTS)
        adapt.update(deepcopy(opt.get('adapt') or {}))
        adapter_cls = ADAPTER_REGISTRY.get(adapt['type'])
        adapt['lr'] = float(adapter_cls.default_lr if adapt.get('lr') is None else adapt['lr'])
        adapt['optim'] = dict(adapt.get('optim') or {'type': 'Adam'})
        adapt = {k: v for k, v in adapt.items() if k not in _NOT_IN_SIGNATURE}
        if is_last(adapt.get('select')):  # no selection changes nothing (folders from before adapt.select stay valid)
            adapt.pop('select', None)
        path_opt = opt.get('path') or {}
        datasets = {}
        for ds in (opt.get('datasets') or {}).values():
            keep = {k: v for k, v in ds.items() if k not in _DATASET_KEYS_NOT_IN_SIGNATURE}
            for k, v in keep.items():
                if k.startswith('dataroot') and isinstance(v, str):
                    keep[k] = osp.abspath(osp.expanduser(v))
            datasets[ds.get('name')] = keep
        metrics = deepcopy((opt.get('val') or {}).get('metrics') or DEFAULT_METRICS)
        for metric in metrics.values():
            metric.setdefault('crop_border', 0)  # score_images' default
        settings = {
            'adapt': adapt,
            **{
                k: v
                for k, v in opt.items() if k.startswith('network_')
            },
            'path': {
                k: v
                for k, v in path_opt.items() if k.startswith(('pretrain_network_', 'param_key_', 'strict_load_'))
            },
            'manual_seed': opt.get('manual_seed'),
            'metrics': metrics,
            'datasets': datasets,
        }
        files = {}
        settings = _by_content(settings, files)
        settings['files'] = files  # where the files were (for people and the report; not compared: contents are)
        return settings

    def _check_signature(self):
        """Refuse to continue results made with other settings (e.g. --cfg-options adapt.type=... under one name)."""
        check_settings(self.results_root, self.run_settings(self.opt), self.opt['name'], self.steps, partial=True)

    # -----------------------------------------------------------------------------------------------------------------
    def _broadcast(self, obj):
        if self.opt.get('dist') and torch.distributed.is_initialized():
            box = [obj]
            torch.distributed.broadcast_object_list(box, src=0)
            return box[0]
        return obj

    def _barrier(self):
        if self.opt.get('dist') and torch.distributed.is_initialized():
            torch.distributed.barrier()

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        """Adapt to (and score) every image of ``dataloader.dataset`` not done yet; write CSVs, images, summary."""
        dataset = dataloader.dataset
        dataset_name = dataset.opt['name']
        rank, world_size = self.opt['rank'], self.opt['world_size']
        store = StepStore(self.results_root, rank, self.steps)
        logger = get_root_logger()
        done, problem = None, None
        if rank == 0:
            settings = self.run_settings(self.opt)
            settings['datasets'][dataset_name]['images'] = image_manifest(dataset)
            try:  # the image list and files too: nothing is written for a dataset whose images changed
                check_settings(self.results_root, settings, self.opt['name'], self.steps)
            except OptionError as e:
                problem = str(e)
        problem = self._broadcast(problem)
        if problem is not None:
            raise OptionError(problem)
        if rank == 0:
            os.makedirs(self.results_root, exist_ok=True)
            write_settings(self.results_root, settings, self.steps)
            if self.opt.get('report'):
                atomic_write(
                    osp.join(self.results_root, 'report.json'),
                    json.dumps(self.opt['report'], indent=2) + '\n')
            groups = store.consolidate([dataset_name])
            done = {image for (ds, image) in groups if ds == dataset_name}
            resumed = [rows for (ds, _), rows in groups.items() if ds == dataset_name and rows[0][3]]
        done = self._broadcast(done) or set()
        indices = range(rank, len(dataset), world_size)
        if rank == 0 and done:
            logger.info(f'{dataset_name}: {len(done)} of {len(dataset)} images already adapted in '
                        f'{store.main}; continuing with the rest')

        psnr_first, psnr_last, seconds = [], [], []
        if rank == 0:  # the running PSNR on the bar covers the images done before an interruption too
            psnr_first = [float(rows[0][3]) for rows in resumed]
            psnr_last = [float(rows[-1][3]) for rows in resumed]
        bar = tqdm(
            total=len(indices),
            unit='image',
            desc=f'{self.adapt_opt["type"]} {dataset_name}',
            disable=rank != 0,
            dynamic_ncols=True)
        if psnr_first:
            bar.set_postfix_str(f'PSNR {mean(psnr_first):.2f}->{mean(psnr_last):.2f}')
        try:  # the bar is closed before an error propagates, so that the error is the last line printed
            for group in self._batches(dataset, indices):
                todo = [image for _, _, image in group if image not in done]
                if todo:
                    if len(todo) < len(group):
                        logger.info(
                            f'{dataset_name}: {", ".join(i for _, _, i in group if i in done)} adapted '
                            'again with the rest of their batch (not written again), as in an uninterrupted run')
                    start = time.perf_counter()
                    results = self.adapt_images(group)
                    seconds.append((time.perf_counter() - start, len(group)))
                    for (data, _, image), result in zip(group, results):
                        if image in done:
                            continue
                        self._save(dataset_name, data, image, result, store, save_img)
                        if not math.isnan(result.psnr[0]):
                            psnr_first.append(result.psnr[0])
                            psnr_last.append(result.psnr[-1])
                    if psnr_first:
                        bar.set_postfix_str(f'PSNR {mean(psnr_first):.2f}->{mean(psnr_last):.2f}')
                bar.update(len(group))
        finally:
            bar.close()
        if seconds:
            count = sum(n for _, n in seconds)
            logger.info(f'{dataset_name}: rank {rank} adapted {count} images, '
                        f'{sum(t for t, _ in seconds) / count:.3f} s per image ({self.steps} steps, batches of up to '
                        f'{self.batch_size})')

        self._barrier()
        rows = []
        self.metric_results = {}
        if rank == 0:
            groups = store.consolidate([dataset_name])
            selected = read_selected_csv(store.selected) if self.selector is not None else None
            summary = summarise(groups, self.report_steps, selected)
            write_summary(self.results_root, summary)
            rows = [r for r in summary if r['dataset'] == dataset_name]
            self._log_summary(dataset_name, rows)
            last = [r for r in rows if r['step'] == self.steps]
            if last and not math.isnan(last[0]['psnr']):
                self.metric_results = {'psnr': last[0]['psnr'], 'ssim': last[0]['ssim']}
        rows, self.metric_results = self._broadcast((rows, self.metric_results))  # every rank returns the same
        return rows

    def _batches(self, dataset, indices):
        """The images ``indices`` of ``dataset`` as batches ``[(data, index, image), ...]``: up to adapt.batch_size in
        a row, a new batch where the size changes; the same batches whatever is already done."""
        group, seen = [], set()
        for index in indices:
            data = default_collate([dataset[index]])
            image = _image_name(data, index)
            if image in seen:
                raise DataError(f'{dataset.opt["name"]}: two images are named "{image}" (index {index}); results are '
                                'keyed by image name, so names must be unique within a dataset')
            seen.add(image)
            if group and (len(group) == self.batch_size or data['lq'].shape != group[0][0]['lq'].shape):
                yield group
                group = []
            group.append((data, index, image))
        if group:
            yield group

    def _save(self, dataset_name, data, image, result, store, save_img):
        """Write one image's outputs; its per-step rows last (they mark it done)."""
        chosen = result.selected
        if save_img:
            imwrite(
                tensor2img(result.output if chosen is None else chosen.output),
                osp.join(self.opt['path']['visualization'], dataset_name, f'{image}.png'))
        if self.adapt_opt.get('save_offset') and result.offset is not None:
            folder = osp.join(self.results_root, 'offsets', dataset_name)
            os.makedirs(folder, exist_ok=True)
            np.save(osp.join(folder, f'{image}_phi.npy'), result.offset[0].float().cpu().numpy())
            np.save(osp.join(folder, f'{image}_input.npy'), result.adapted_input[0].float().cpu().numpy())
        if self.adapt_opt.get('save_compare'):
            self._save_compare(data, dataset_name, image)
        noisy = None
        if 'gt' in data:  # the noisy input scored as the steps are: "worse than the input" needs no recomputing
            noisy = input_csv(dataset_name, image, *_scores(data['lq'], data['gt'], self.metrics_opt))
        if chosen is not None:  # the choice is made without GT; GT only scores it
            score = (math.nan, math.nan)
            if 'gt' in data:
                score = _scores(chosen.output, data['gt'].to(chosen.output.device), self.metrics_opt)
            store.append_selected(selected_csv(dataset_name, image, chosen.step, chosen.alpha, chosen.score, *score))
        store.append(image_csv(dataset_name, image, result, self.steps), noisy)

    def adapt_images(self, items):
        """Adapt ``items`` (``(data, index, image)``: a collated batch of one, its dataset index, its name; one size)
        together; the loss's random draws of each are seeded with seed + index. Returns one AdaptResult per item.

        Falls back to smaller batches when the device runs out of memory, and to one image at a time when per-image
        weights cannot be vectorised for this network.
        """
        for data, _, image in items:
            if min(data['lq'].shape[-2:]) < 2:
                where = data['lq_path'][0] if 'lq_path' in data else image
                raise DataError(
                    f'{where}: image "{image}" is {data["lq"].shape[-2]}x{data["lq"].shape[-1]} pixels; the '
                    'self-supervised losses need at least 2x2: remove it from the dataset')
        if len(items) > 1 and self._sequential:
            return [result for item in items for result in self.adapt_images([item])]
        lq = torch.cat([data['lq'] for data, _, _ in items]).to(self.device)
        gt = torch.cat([data['gt'] for data, _, _ in items]).to(self.device) if 'gt' in items[0][0] else None
        if self.speed.channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        generators = [torch.Generator().manual_seed(self.adapt_opt['seed'] + index) for _, index, _ in items]
        images = [image for _, _, image in items]
        if self.selector is not None and self.observer is not self.selector:
            raise OptionError(f'adapt.select {type(self.selector).__name__}: LANModel.observer was replaced by '
                              f'{type(self.observer).__name__}, so the rule would choose from no step; set '
                              'adapt.select=last to observe the loop yourself')
        try:
            if self.observer is not None and hasattr(self.observer, 'start'):
                self.observer.start(lq)  # the noisy images only; no observer ever sees gt
            results = adapt_batch(self.net, self.adapter, self.loss_fn, lq, gt, self.steps, generators,
                                  self.metrics_opt, images, self.speed, self.observer)
            if self.selector is not None:
                results = [r._replace(selected=c) for r, c in zip(results, self.selector.finish())]
            return results
        except torch.OutOfMemoryError:
            if len(items) == 1:
                raise
            half = len(items) // 2
            get_root_logger().warning(f'{images[0]}..{images[-1]}: out of memory for a batch of {len(items)}; '
                                      f'adapting them in batches of {half} and {len(items) - half}')
            if self.device.type == 'cuda':
                torch.cuda.empty_cache()
            return self.adapt_images(items[:half]) + self.adapt_images(items[half:])
        except RuntimeError as e:
            if len(items) == 1 or not isinstance(self.adapter, NetworkAdapter):
                raise
            self._sequential = True
            get_root_logger().warning(f'adapt.batch_size {self.batch_size}: per-image weights of '
                                      f'{type(self.net).__name__} could not be vectorised ({str(e).splitlines()[0]}); '
                                      'adapting one image at a time')
            return self.adapt_images(items)

    def adapt_one(self, data, index, image='image'):
        """Adapt to one collated item (batch of one); the loss's random draws are seeded with seed + index."""
        if data['lq'].size(0) != 1:
            raise OptionError(f'LANModel adapts one image at a time; got a batch of {data["lq"].size(0)} (set the '
                              'test dataset batch_size_per_gpu to 1; adapt.batch_size batches images)')
        return self.adapt_images([(data, index, image)])[0]

    def _save_compare(self, data, dataset_name, image):
        """Save the noisy input, the GT and the step-0 output (one no-grad forward after resetting the adapter)."""
        folder = osp.join(self.results_root, 'compare', dataset_name)
        lq = data['lq'].to(self.device)
        self.adapter.reset(lq)  # back to the reset point: the network (and input) that step 0 scored
        with torch.no_grad():
            step0 = self.speed.wrap(self.adapter.network(self.net))(self.adapter.adapted_input(lq))
        images = {'noisy': data['lq'], 'step0': step0, 'gt': data.get('gt')}
        for kind, tensor in images.items():
            if tensor is not None:
                imwrite(tensor2img(tensor.detach().cpu()), osp.join(folder, f'{image}_{kind}.png'))

    def _log_summary(self, dataset_name, rows):
        head = (f'{self.adapt_opt["type"]} + {self.adapt_opt["loss"]["type"]} on {dataset_name} '
                f'({rows[0]["images"] if rows else 0} images); summary.csv:')
        lines = [head, f'{"step":>6} {"PSNR":>9} {"SSIM":>8} {"images":>7}']
        for r in rows:
            psnr = f'{r["psnr"]:9.4f}' if not math.isnan(r['psnr']) else f'{"-":>9}'
            ssim = f'{r["ssim"]:8.4f}' if not math.isnan(r['ssim']) else f'{"-":>8}'
            lines.append(f'{r["step"]:>6} {psnr} {ssim} {r["images"]:>7}')
        get_root_logger().info('\n'.join(lines))
