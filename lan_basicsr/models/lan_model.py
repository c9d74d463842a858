"""LANModel: test-time adaptation of every test image (LAN or a network baseline), scored at every step.

Per image (the official loop, ../shared/PROTOCOL.md, without its waste): reset the adapter (weights back to the
reference kept in memory, new optimiser), then for ``step`` in 0..N-1 compute the self-supervised loss on the adapted
input, score the network output the loss computed anyway (step ``step``: the state after ``step`` updates), take
one optimiser step; finally one no-grad forward scored as step N. GT is only ever used for scoring.

Outputs under ``results/<name>/`` (per_step.csv, inputs.csv, summary.csv, adapt_run.json; resume and torchrun
rules): :mod:`lan_basicsr.models.step_store`. Also ``visualization/<dataset>/<image>.png`` (the final denoised images)
and, with ``adapt.save_offset``, ``offsets/<dataset>/<image>_phi.npy`` (φ) and ``<image>_input.npy`` (y + tanh φ),
float32 CHW; with ``adapt.save_compare``, ``compare/<dataset>/<image>_{noisy,step0,gt}.png`` (the noisy input, the
step-0 output of the reset network, the GT when there is one) for side-by-side pictures (:mod:`lan_basicsr.report`);
``report.json``: the option file's ``report`` section (display label, training noise of the network), when given.

torchrun: rank r adapts images r, r + world_size, ... (each rank on its own, no DDP: adaptation is per image).
Rank 0 merges the ranks' part files before (leftovers of an interrupted run, any world size) and after each
dataset, and broadcasts the set of done images so that no rank reads a file another one writes.

Non-finite loss (or gradient) at step k: the image's adaptation stops at its last finite state (no update with that
loss), a warning names the image; the step-k row keeps the non-finite loss, rows k+1..N carry the step-k scores
with an empty loss, and the saved image is the step-k output. The run goes on with the next image.
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

from lan_basicsr.metrics import score_images
from lan_basicsr.utils.errors import DataError, OptionError
from lan_basicsr.utils.option_schema import (AnyValue, Bool, Int, ListOf, Registered, Section, Spec, Str,
                                             accepted_arguments, class_option_values)
from lan_basicsr.utils.registry import ADAPTER_REGISTRY, build_from_registry, check_registered
from .denoise_model import DenoiseModel, _image_name
from .step_store import (StepStore, atomic_write, check_settings, image_csv, image_manifest, input_csv, mean,
                         read_step_csv, summarise, write_settings, write_summary)

__all__ = ['LANModel', 'ADAPT_DEFAULTS', 'AdaptResult', 'adapt_image', 'build_adapter', 'read_step_csv']

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
}
_MODEL_KEYS = ('steps', 'loss', 'seed', 'report_steps', 'save_offset', 'save_compare')  # the rest: the adapter's
_NOT_IN_SIGNATURE = ('report_steps', 'save_offset', 'save_compare')  # do not change the numbers
# Value rules of the loop's keys (checked before anything is built); a loop key without a rule is accepted as is.
ADAPT_VALUES = {
    'steps': Int(ge=0),
    'seed': Int(ge=0),
    'report_steps': ListOf(Int(ge=0), null=True),
    'save_offset': Bool(),
    'save_compare': Bool(),
    'loss': Registered('loss'),
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


def _grads_finite(params):
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack(torch._foreach_norm(grads, math.inf)).isfinite().all())  # NaN/inf anywhere -> False


def adapt_image(net, adapter, loss_fn, lq, gt=None, steps=20, generator=None, metrics_opt=None, image='image'):
    """Adapt to one image ``lq`` (1,C,H,W) and score every step against ``gt`` (or not, when None).

    ``net`` must be in eval mode; ``generator`` (a ``torch.Generator``) drives the loss's random draws. Scoring
    (float PSNR/SSIM on the CPU) runs in a worker thread while the next step computes. Returns :class:`AdaptResult`.
    """
    metrics_opt = metrics_opt or DEFAULT_METRICS
    optimizer = adapter.reset(lq)
    params = adapter.trainable_parameters()
    generators = None if generator is None else [generator]
    losses, scored, stopped_at = [], [], None
    with ThreadPoolExecutor(max_workers=1) as scorer:
        for step in range(steps):
            x = adapter.adapted_input(lq)
            out = loss_fn(net, x, step, steps, generators=generators)
            output = out.output
            if output is None:
                with torch.no_grad():
                    output = net(x)
            output = output.detach()
            scored.append(scorer.submit(_scores, output, gt, metrics_opt))
            loss_value = float(out.loss.detach())
            losses.append(loss_value)
            finite = math.isfinite(loss_value)
            if finite:
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                finite = _grads_finite(params)
            if not finite:
                optimizer.zero_grad(set_to_none=True)
                what = 'loss' if not math.isfinite(loss_value) else 'gradient'
                get_root_logger().warning(f'{image}: non-finite {what} at step {step} ({loss_value}); adaptation '
                                          f'stopped there, steps {step + 1}..{steps} repeat step {step}\'s scores')
                stopped_at = step
                break
            optimizer.step()
            del out
        if stopped_at is None:
            with torch.no_grad():
                x = adapter.adapted_input(lq)
                output = net(x)
            scored.append(scorer.submit(_scores, output, gt, metrics_opt))
        scores = [future.result() for future in scored]
    if stopped_at is not None:
        scores += [scores[-1]] * (steps - stopped_at)
        losses += [math.nan] * (steps - stopped_at - 1)
    psnrs, ssims = (list(v) for v in zip(*scores))
    return AdaptResult(psnrs, ssims, losses, output, x.detach(), stopped_at)


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
        self.adapt_opt = adapt
        self.steps = steps
        self.net = self.get_bare_model(self.net_g)
        self.net.eval()
        self.loss_fn = build_from_registry(LOSS_REGISTRY, adapt['loss'], where='adapt.loss').to(self.device)
        self.adapter = build_adapter(self.net, adapt)
        self.metrics_opt = (opt.get('val') or {}).get('metrics') or DEFAULT_METRICS
        get_root_logger().info(f'Adaptation: {adapt["type"]} (lr {self.adapter.lr:g}, {self.adapter.optim_opt}), '
                               f'{adapt["loss"]}, {steps} steps, seed {adapt["seed"]}')

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

        psnr_first, psnr_last, seconds, seen = [], [], [], set()
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
            for index in indices:
                data = default_collate([dataset[index]])
                image = _image_name(data, index)
                if image in seen:
                    raise DataError(f'{dataset_name}: two images are named "{image}" (index {index}); results are '
                                    'keyed by image name, so names must be unique within a dataset')
                seen.add(image)
                if image in done:
                    bar.update(1)
                    continue
                start = time.perf_counter()
                result = self.adapt_one(data, index, image)
                seconds.append(time.perf_counter() - start)
                if save_img:
                    imwrite(
                        tensor2img(result.output),
                        osp.join(self.opt['path']['visualization'], dataset_name, f'{image}.png'))
                if self.adapt_opt.get('save_offset') and self.adapter.offset() is not None:
                    folder = osp.join(self.results_root, 'offsets', dataset_name)
                    os.makedirs(folder, exist_ok=True)
                    np.save(osp.join(folder, f'{image}_phi.npy'), self.adapter.offset()[0].float().cpu().numpy())
                    np.save(osp.join(folder, f'{image}_input.npy'), result.adapted_input[0].float().cpu().numpy())
                if self.adapt_opt.get('save_compare'):
                    self._save_compare(data, dataset_name, image)
                noisy = None
                if 'gt' in data:  # the noisy input scored as the steps are: "worse than the input" needs no recomputing
                    noisy = input_csv(dataset_name, image, *_scores(data['lq'], data['gt'], self.metrics_opt))
                store.append(image_csv(dataset_name, image, result, self.steps), noisy)  # last: done = all saved
                if not math.isnan(result.psnr[0]):
                    psnr_first.append(result.psnr[0])
                    psnr_last.append(result.psnr[-1])
                    bar.set_postfix_str(f'PSNR {mean(psnr_first):.2f}->{mean(psnr_last):.2f}')
                bar.update(1)
        finally:
            bar.close()
        if seconds:
            logger.info(f'{dataset_name}: rank {rank} adapted {len(seconds)} images, '
                        f'{sum(seconds) / len(seconds):.3f} s per image ({self.steps} steps)')

        self._barrier()
        rows = []
        self.metric_results = {}
        if rank == 0:
            groups = store.consolidate([dataset_name])
            summary = summarise(groups, self.report_steps)
            write_summary(self.results_root, summary)
            rows = [r for r in summary if r['dataset'] == dataset_name]
            self._log_summary(dataset_name, rows)
            last = [r for r in rows if r['step'] == self.steps]
            if last and not math.isnan(last[0]['psnr']):
                self.metric_results = {'psnr': last[0]['psnr'], 'ssim': last[0]['ssim']}
        rows, self.metric_results = self._broadcast((rows, self.metric_results))  # every rank returns the same
        return rows

    def adapt_one(self, data, index, image='image'):
        """Adapt to one collated item (batch of one); the loss's random draws are seeded with seed + index."""
        lq = data['lq'].to(self.device)
        if lq.dim() == 4 and min(lq.shape[-2:]) < 2:
            where = data['lq_path'][0] if 'lq_path' in data else image
            raise DataError(f'{where}: image "{image}" is {lq.shape[-2]}x{lq.shape[-1]} pixels; the self-supervised '
                            'losses need at least 2x2: remove it from the dataset')
        if lq.size(0) != 1:
            raise OptionError(f'LANModel adapts one image at a time; got a batch of {lq.size(0)} (set the test '
                              'dataset batch_size_per_gpu to 1)')
        gt = data['gt'].to(self.device) if 'gt' in data else None
        generator = torch.Generator().manual_seed(self.adapt_opt['seed'] + index)
        return adapt_image(self.net, self.adapter, self.loss_fn, lq, gt, self.steps, generator, self.metrics_opt, image)

    def _save_compare(self, data, dataset_name, image):
        """Save the noisy input, the GT and the step-0 output (one no-grad forward after resetting the adapter)."""
        folder = osp.join(self.results_root, 'compare', dataset_name)
        lq = data['lq'].to(self.device)
        self.adapter.reset(lq)  # back to the reset point: the network (and input) that step 0 scored
        with torch.no_grad():
            step0 = self.net(self.adapter.adapted_input(lq))
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
