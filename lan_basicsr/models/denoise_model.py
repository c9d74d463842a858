"""Supervised denoiser training and plain inference (the paper's pretraining step and its "pretrained" row).

Besides BasicSR's SRModel training step, the official Restormer/Uformer recipes need (all under ``train:``):

- ``scheduler.type``: also ``CosineAnnealingRestartCyclicLR`` and ``LinearWarmupCosineLR`` (``lr_scheduler.py``);
  no ``scheduler`` section keeps the lr constant.
- ``grad_clip: 0.01``: clip the gradients' global L2 norm before each step (Restormer's ``use_grad_clip: true``
  is accepted and means 0.01, the value Restormer hard-codes).
- ``progressive: {iters, mini_batch_sizes, gt_sizes}``: Restormer's progressive patch sizes. The dataset loads
  ``datasets.train.gt_size`` (the largest) patches and ``batch_size_per_gpu`` images; stage ``i`` (the first
  ``sum(iters[:i + 1])`` iterations, the last stage beyond) keeps ``mini_batch_sizes[i]`` random images of each
  process's batch and one random ``gt_sizes[i]`` crop at the same place in all of them, as Restormer does.
- ``mixup: {beta: 1.2, prob: 0.5, per_sample: false, start_iter: 1}``: mix the (cropped) batch with a permutation
  of itself, weight ~ Beta(beta, beta), with probability ``prob`` from iteration ``start_iter`` on; ``per_sample``
  draws one weight per image (Uformer) instead of one per batch (Restormer, ``prob 0.5`` = ``use_identity``).
- Charbonnier loss: BasicSR's ``CharbonnierLoss`` already takes ``eps``, but computes ``sqrt(d^2 + eps)``: the
  ``eps`` of Uformer's ``sqrt(d^2 + eps^2)`` with eps 1e-3 is ``eps: !!float 1e-6`` here.

Every random draw comes from Python's ``random`` or torch's global generator, which the training states save per
rank, so a resumed run draws the same crops and mixes as an uninterrupted one.
"""
import random
from collections import OrderedDict
from os import path as osp

import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from torch.utils.data import default_collate

from lan_basicsr.metrics import score_images
from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.option_schema import Arguments, Bool, Int, ListOf, Number, Section
from .lr_scheduler import build_scheduler
from .model_util import PluginModelMixin, gather_rows

__all__ = ['DenoiseModel', 'ProgressiveSchedule', 'Mixup']

RESTORMER_GRAD_CLIP = 0.01


class ProgressiveSchedule:
    """Restormer's progressive training: which (mini-batch size, patch size) applies at an iteration."""

    def __init__(self, iters, mini_batch_sizes, gt_sizes, batch_size=None, gt_size=None):
        where = 'train.progressive'
        lists = {'iters': iters, 'mini_batch_sizes': mini_batch_sizes, 'gt_sizes': gt_sizes}
        for key, value in lists.items():
            positive_ints = isinstance(value, (list, tuple)) and all(isinstance(v, int) and v > 0 for v in value)
            if not positive_ints or not value:
                raise OptionError(f'{where}.{key}: expected a non-empty list of positive ints, got {value!r}')
        if not len(iters) == len(mini_batch_sizes) == len(gt_sizes):
            raise OptionError(f'{where}: iters, mini_batch_sizes and gt_sizes must have the same length')
        if batch_size is not None and max(mini_batch_sizes) > batch_size:
            raise OptionError(f'{where}.mini_batch_sizes: {max(mini_batch_sizes)} is larger than '
                              f'datasets.train.batch_size_per_gpu ({batch_size}); set the batch size to the largest')
        if gt_size is not None and max(gt_sizes) > gt_size:
            raise OptionError(f'{where}.gt_sizes: {max(gt_sizes)} is larger than datasets.train.gt_size ({gt_size}); '
                              'the dataset must load the largest patch size')
        self.iters, self.mini_batch_sizes, self.gt_sizes = list(iters), list(mini_batch_sizes), list(gt_sizes)
        self.ends = [sum(iters[:i + 1]) for i in range(len(iters))]

    def stage(self, current_iter):
        """Index of the stage of ``current_iter`` (1-based); the last stage after the schedule ends."""
        return next((i for i, end in enumerate(self.ends) if current_iter <= end), len(self.ends) - 1)

    def __call__(self, current_iter):
        """``(mini_batch_size, gt_size)`` at ``current_iter``."""
        i = self.stage(current_iter)
        return self.mini_batch_sizes[i], self.gt_sizes[i]

    @staticmethod
    def crop(lq, gt, mini_batch_size, gt_size):
        """Keep ``mini_batch_size`` random images and one random ``gt_size`` window (same place in all of them)."""
        batch, _, h, w = lq.shape
        if mini_batch_size < batch:
            indices = sorted(random.sample(range(batch), k=mini_batch_size))
            lq, gt = lq[indices], gt[indices]
        if gt_size < h or gt_size < w:
            top = int((h - gt_size) * random.random()) if gt_size < h else 0
            left = int((w - gt_size) * random.random()) if gt_size < w else 0
            lq = lq[..., top:top + gt_size, left:left + gt_size]
            gt = gt[..., top:top + gt_size, left:left + gt_size]
        return lq, gt


class Mixup:
    """Mix a batch with a permutation of itself (Restormer's and Uformer's mixup for restoration pairs)."""

    def __init__(self, beta=1.2, prob=1., per_sample=False, start_iter=1):
        if not beta > 0 or not 0 <= prob <= 1:
            raise OptionError(f'train.mixup: need beta > 0 and 0 <= prob <= 1, got beta={beta}, prob={prob}')
        self.beta, self.prob, self.per_sample, self.start_iter = float(beta), float(prob), bool(per_sample), start_iter

    def __call__(self, lq, gt, current_iter):
        if current_iter < self.start_iter or random.random() >= self.prob:
            return lq, gt
        batch = lq.size(0)
        dist = torch.distributions.Beta(torch.tensor([self.beta]), torch.tensor([self.beta]))
        lam = dist.sample((batch if self.per_sample else 1, )).view(-1, 1, 1, 1).to(lq)
        perm = torch.randperm(batch).to(lq.device)
        return lam * lq + (1 - lam) * lq[perm], lam * gt + (1 - lam) * gt[perm]


@MODEL_REGISTRY.register()
class DenoiseModel(PluginModelMixin, SRModel):
    """BasicSR's SRModel on CPU or GPU, any ``torch.optim`` optimiser, the official recipes' training extras (see
    the module docstring), and validation sharded over ranks.

    Validation scores as the official LAN evaluation does (float PSNR/SSIM, see ``lan_basicsr.metrics``). Under
    torchrun each rank takes every ``world_size``-th image and the per-image scores are gathered, so the averages
    equal a single-process run's.
    """

    @classmethod
    def option_sections(cls):
        """Keys this model adds to BasicSR's sections (see lan_basicsr.utils.option_schema)."""
        positive_ints = ListOf(Int(ge=1), min_len=1)
        return {
            'train':
            Section({
                'grad_clip':
                Number(gt=0, null=True),
                'use_grad_clip':
                Bool(),
                'progressive':
                Arguments(
                    ProgressiveSchedule,
                    skip=('batch_size', 'gt_size'),
                    values={k: positive_ints
                            for k in ('iters', 'mini_batch_sizes', 'gt_sizes')},
                    null=True),
                'mixup':
                Arguments(
                    Mixup,
                    values={
                        'beta': Number(gt=0),
                        'prob': Number(ge=0, le=1),
                        'per_sample': Bool(),
                        'start_iter': Int(ge=0)
                    },
                    null=True),
            })
        }

    def init_training_settings(self):
        train_opt = self.opt['train']
        train_ds = (self.opt.get('datasets') or {}).get('train') or {}
        misplaced = [k for k in ('mini_batch_sizes', 'gt_sizes', 'iters') if k in train_ds]
        if misplaced:
            raise OptionError(f'datasets.train.{misplaced[0]}: progressive training options go in a '
                              '"train.progressive: {iters, mini_batch_sizes, gt_sizes}" section')
        self.grad_clip = train_opt.get('grad_clip')
        if self.grad_clip is None and train_opt.get('use_grad_clip', False):
            self.grad_clip = RESTORMER_GRAD_CLIP
        if self.grad_clip is not None and not (isinstance(self.grad_clip, (int, float)) and self.grad_clip > 0):
            raise OptionError(f'train.grad_clip: expected a positive max gradient norm, got {self.grad_clip!r}')
        progressive = train_opt.get('progressive')
        self.progressive = None
        if progressive is not None:
            if not isinstance(progressive, dict):
                raise OptionError('train.progressive: expected a mapping {iters, mini_batch_sizes, gt_sizes}')
            try:
                self.progressive = ProgressiveSchedule(
                    batch_size=train_ds.get('batch_size_per_gpu'), gt_size=train_ds.get('gt_size'), **progressive)
            except TypeError as e:
                raise OptionError(f'train.progressive: {e}') from None
        self._progressive_stage = None
        mixup = train_opt.get('mixup')
        self.mixup = None
        if mixup:
            if not isinstance(mixup, dict):
                raise OptionError('train.mixup: expected a mapping {beta, prob, per_sample, start_iter}')
            try:
                self.mixup = Mixup(**mixup)
            except TypeError as e:
                raise OptionError(f'train.mixup: {e}') from None
        super().init_training_settings()

    def setup_schedulers(self):
        scheduler_opt = self.opt['train'].get('scheduler')
        if scheduler_opt is None:
            return  # constant learning rate
        for optimizer in self.optimizers:
            self.schedulers.append(build_scheduler(optimizer, scheduler_opt))

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        optim_cls = getattr(torch.optim, optim_type, None)
        if not (isinstance(optim_cls, type) and issubclass(optim_cls, torch.optim.Optimizer)):
            raise OptionError(f'train.optim_g.type: "{optim_type}" is not a torch.optim optimiser (e.g. Adam, AdamW)')
        return optim_cls(params, lr, **kwargs)

    def progressive_crop(self, current_iter):
        """Crop ``self.lq`` / ``self.gt`` to the progressive stage of ``current_iter`` (no-op without the option)."""
        if self.progressive is None:
            return
        mini_batch_size, gt_size = self.progressive(current_iter)
        if self._progressive_stage != (mini_batch_size, gt_size):
            self._progressive_stage = (mini_batch_size, gt_size)
            get_root_logger().info(f'Progressive training from iteration {current_iter}: patch {gt_size}, '
                                   f'mini-batch {mini_batch_size} per process.')
        self.lq, self.gt = ProgressiveSchedule.crop(self.lq, self.gt, mini_batch_size, gt_size)

    def optimize_parameters(self, current_iter):
        """SRModel's step, plus progressive patches, mixup and gradient clipping when configured."""
        self.progressive_crop(current_iter)
        if self.mixup is not None:
            self.lq, self.gt = self.mixup(self.lq, self.gt, current_iter)

        self.optimizer_g.zero_grad()
        self.output = self.net_g(self.lq)
        l_total = 0
        loss_dict = OrderedDict()
        if self.cri_pix:
            l_pix = self.cri_pix(self.output, self.gt)
            l_total += l_pix
            loss_dict['l_pix'] = l_pix
        if self.cri_perceptual:
            l_percep, l_style = self.cri_perceptual(self.output, self.gt)
            if l_percep is not None:
                l_total += l_percep
                loss_dict['l_percep'] = l_percep
            if l_style is not None:
                l_total += l_style
                loss_dict['l_style'] = l_style
        l_total.backward()
        if self.grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip)
            loss_dict['grad_norm'] = grad_norm.detach()
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def test(self):
        """Inference on the bare network (or the EMA copy): each rank scores its own images, so no forward may
        issue collectives (a DDP-wrapped forward can broadcast buffers, which would stall on an uneven split)."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.get_bare_model(self.net_g)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.output = net(self.lq)
        net.train(was_training)

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        dataset = dataloader.dataset
        dataset_name = dataset.opt['name']
        rank, world_size = self.opt['rank'], self.opt['world_size']
        metrics_opt = (self.opt.get('val') or {}).get('metrics') or {}
        rows = []
        for index in range(rank, len(dataset), world_size):
            data = default_collate([dataset[index]])
            self.feed_data(data)
            self.test()
            output = self.output.detach()
            image_name = _image_name(data, index)
            row = {'index': index, 'image': image_name}
            if 'gt' in data:
                row.update(score_images(output, self.gt, metrics_opt))
            rows.append(row)
            if save_img:
                suffix = '' if not self.is_train else f'_{current_iter}'
                imwrite(
                    tensor2img(output),
                    osp.join(self.opt['path']['visualization'], dataset_name, f'{image_name}{suffix}.png'))
            del self.lq, self.output
            if hasattr(self, 'gt'):
                del self.gt
        rows = gather_rows(rows, self.opt)
        self.metric_results = {}
        if rows and metrics_opt and all(name in rows[0] for name in metrics_opt):
            self.metric_results = {name: sum(r[name] for r in rows) / len(rows) for name in metrics_opt}
        if rank == 0:
            self._log_metrics(dataset_name, len(rows), current_iter, tb_logger)
        return rows

    def _log_metrics(self, dataset_name, num_images, current_iter, tb_logger):
        msg = f'Validation {dataset_name} ({num_images} images)'
        for name, value in self.metric_results.items():
            msg += f'\n\t # {name}: {value:.4f}'
            if tb_logger and isinstance(current_iter, int):
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}', value, current_iter)
        get_root_logger().info(msg)


def _image_name(data, index):
    if 'name' in data:
        return data['name'][0]
    if 'lq_path' in data:
        return osp.splitext(osp.basename(data['lq_path'][0]))[0]
    return f'{index:06d}'
