"""LANModel: test-time adaptation of every test image (LAN or a network baseline), scored at every step.

Per image (the official loop, ../shared/PROTOCOL.md, without its waste): reset the adapter (weights back to the
reference kept in memory, new optimiser), then for ``step`` in 0..N-1 compute the self-supervised loss on the adapted
input, score the network output the loss computed anyway (step ``step``: the state after ``step`` updates), take
one optimiser step; finally one no-grad forward scored as step N. GT is only ever used for scoring.

Outputs under ``results/<name>/`` (per_step.csv, inputs.csv, summary.csv, adapt_run.json; resume and torchrun
rules): :mod:`lan_basicsr.models.step_store`. Also ``visualization/<dataset>/<image>.png`` (the final denoised images)
and, with ``adapt.save_offset``, ``offsets/<dataset>/<image>_phi.npy`` (φ) and ``<image>_input.npy`` (y + tanh φ),
float32 CHW.

torchrun: rank r adapts images r, r + world_size, ... (each rank on its own, no DDP: adaptation is per image).
Rank 0 merges the ranks' part files before (leftovers of an interrupted run, any world size) and after each
dataset, and broadcasts the set of done images so that no rank reads a file another one writes.

Non-finite loss (or gradient) at step k: the image's adaptation stops at its last finite state (no update with that
loss), a warning names the image; the step-k row keeps the non-finite loss, rows k+1..N carry the step-k scores
with an empty loss, and the saved image is the step-k output. The run goes on with the next image.
"""
import inspect
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
from lan_basicsr.utils.registry import ADAPTER_REGISTRY, build_from_registry, check_registered
from .denoise_model import DenoiseModel, _image_name
from .step_store import (StepStore, check_settings, image_csv, input_csv, mean, read_step_csv, summarise,
                         write_settings, write_summary)

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
}
_MODEL_KEYS = ('steps', 'loss', 'seed', 'report_steps', 'save_offset')  # the rest of adapt: goes to the adapter
_NOT_IN_SIGNATURE = ('report_steps', 'save_offset')  # do not change the numbers
DEFAULT_METRICS = {'psnr': {'type': 'calculate_psnr'}, 'ssim': {'type': 'calculate_ssim'}}


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

    Every key of ``adapt`` not used by the loop (steps, loss, seed, report_steps, save_offset) is an argument of the
    adapter (``lr``, ``optim``, ``layer``, ``init_path``, ...); an unknown one is an :class:`OptionError` unless its
    value is null (so a base file can list ``layer: null`` for every adapter type).
    """
    opt = {k: v for k, v in adapt_opt.items() if k not in _MODEL_KEYS}
    check_registered(ADAPTER_REGISTRY, opt.get('type'), 'adapt.type')
    cls = ADAPTER_REGISTRY.get(opt['type'])
    accepted = set(inspect.signature(cls.__init__).parameters) - {'self', 'net'}
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

    def __init__(self, opt):
        if opt.get('is_train'):
            raise OptionError('model_type LANModel adapts at test time: run it with tools/test.py, not tools/train.py')
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
        self.results_root = opt['path'].get('results_root') or osp.join(opt['root_path'], 'results', opt['name'])
        get_root_logger().info(f'Adaptation: {adapt["type"]} (lr {self.adapter.lr:g}, {self.adapter.optim_opt}), '
                               f'{adapt["loss"]}, {steps} steps, seed {adapt["seed"]}')
        self._check_signature()

    # DDP would all-reduce gradients between ranks that adapt different images; DataParallel splits batches of one.
    def model_to_device(self, net):
        return net.to(self.device)

    # -----------------------------------------------------------------------------------------------------------------
    def _signature(self):
        adapt = {k: v for k, v in self.adapt_opt.items() if k not in _NOT_IN_SIGNATURE}
        adapt.update(lr=self.adapter.lr, optim=self.adapter.optim_opt)  # resolved: lr null == the default value
        datasets = {}
        for ds in (self.opt.get('datasets') or {}).values():
            keep = ('type', 'crop', 'filename_tmpl', 'io_backend', 'meta_info_file')
            datasets[ds.get('name')] = {k: v for k, v in ds.items() if k in keep or k.startswith('dataroot')}
        sig = {
            'adapt': adapt,
            'network_g': self.opt.get('network_g'),
            'pretrain_network_g': self.opt['path'].get('pretrain_network_g'),
            'datasets': datasets
        }
        return sig

    def _check_signature(self):
        """Refuse to continue results made with other settings (e.g. --cfg-options adapt.type=... under one name)."""
        check_settings(self.results_root, self._signature(), self.opt['name'], self.steps)

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
        done = None
        if rank == 0:
            os.makedirs(self.results_root, exist_ok=True)
            write_settings(self.results_root, self._signature(), self.steps)
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
                    tensor2img(result.output), osp.join(self.opt['path']['visualization'], dataset_name,
                                                        f'{image}.png'))
            if self.adapt_opt.get('save_offset') and self.adapter.offset() is not None:
                folder = osp.join(self.results_root, 'offsets', dataset_name)
                os.makedirs(folder, exist_ok=True)
                np.save(osp.join(folder, f'{image}_phi.npy'), self.adapter.offset()[0].float().cpu().numpy())
                np.save(osp.join(folder, f'{image}_input.npy'), result.adapted_input[0].float().cpu().numpy())
            noisy = None
            if 'gt' in data:  # the noisy input scored as the steps are: "worse than the input" needs no recomputing
                noisy = input_csv(dataset_name, image, *_scores(data['lq'], data['gt'], self.metrics_opt))
            store.append(image_csv(dataset_name, image, result, self.steps), noisy)  # last: done = all saved
            if not math.isnan(result.psnr[0]):
                psnr_first.append(result.psnr[0])
                psnr_last.append(result.psnr[-1])
                bar.set_postfix_str(f'PSNR {mean(psnr_first):.2f}->{mean(psnr_last):.2f}')
            bar.update(1)
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
        if lq.size(0) != 1:
            raise OptionError(f'LANModel adapts one image at a time; got a batch of {lq.size(0)} (set the test '
                              'dataset batch_size_per_gpu to 1)')
        gt = data['gt'].to(self.device) if 'gt' in data else None
        generator = torch.Generator().manual_seed(self.adapt_opt['seed'] + index)
        return adapt_image(self.net, self.adapter, self.loss_fn, lq, gt, self.steps, generator, self.metrics_opt, image)

    def _log_summary(self, dataset_name, rows):
        head = (f'{self.adapt_opt["type"]} + {self.adapt_opt["loss"]["type"]} on {dataset_name} '
                f'({rows[0]["images"] if rows else 0} images); summary.csv:')
        lines = [head, f'{"step":>6} {"PSNR":>9} {"SSIM":>8} {"images":>7}']
        for r in rows:
            psnr = f'{r["psnr"]:9.4f}' if not math.isnan(r['psnr']) else f'{"-":>9}'
            ssim = f'{r["ssim"]:8.4f}' if not math.isnan(r['ssim']) else f'{"-":>8}'
            lines.append(f'{r["step"]:>6} {psnr} {ssim} {r["images"]:>7}')
        get_root_logger().info('\n'.join(lines))
