"""MAML-style meta-training of a pretrained denoiser for fast self-supervised adaptation (the "meta-learning" row).

The paper adapts all weights from a meta-learned initialisation but does not publish how it was meta-learned. We follow
Lee et al. 2020 ("Self-supervised fast adaptation for denoising via meta-learning") and MAML (Finn et al. 2017):
every noisy/clean training patch is a task; the inner loop runs ``k`` steps of the self-supervised test-time loss on
the noisy patch alone, the outer loss is the supervised loss (``train.pixel_opt``, default L2) between the adapted
network's output and the clean patch, averaged over the batch, and the outer optimiser (``train.optim_g``) updates
the initialisation.

Choices (not published; all in the ``meta:`` section):

- inner optimiser: by default exactly the test-time one, Adam with default betas, a fresh state per patch and the
  full-trainable learning rate 5e-6, so the initialisation is meta-learned for the procedure that will run on it
  (Adam's first steps move each weight by about ``lr`` whatever the gradient scale, so plain SGD at 5e-6 would barely
  move; ``inner_optim: {type: SGD}`` is available). Set the test options' ``adapt.lr`` to ``meta.inner_lr``.
- ``inner_steps`` 5 (the paper reports 5, 10 and 20 test-time steps; the cost grows linearly with it). The loss is
  called with ``step`` 0..k-1 and ``total_steps`` k (Nbr2Nbr's regulariser weight ramps over the inner loop).
- first-order (FOMAML) by default; ``first_order: false`` back-propagates through the inner steps (second order,
  memory grows with ``inner_steps``).
- the network is in eval mode throughout, as at test time (no BatchNorm statistics updates, no dropout/drop-path).
- ``train.grad_clip`` and ``train.progressive`` work as in :class:`DenoiseModel`; ``train.mixup`` is refused (it
  changes the noise the inner loop adapts to), and so is ``network_g.use_checkpoint`` (activation checkpointing
  recomputes blocks with the module's own weights, not the adapted ones).

The inner loop works on a dict of parameter tensors through :func:`torch.func.functional_call`; the module is never
mutated. Under torchrun each rank meta-trains on its own patches and the meta-gradients are averaged across ranks
before the outer step (DDP's own hooks are not used: the meta-gradient is not a plain backward through its forward).
"""
from collections import OrderedDict
from copy import deepcopy

import torch
import torch.distributed as dist
from basicsr.utils import get_root_logger
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY
from torch import nn
from torch.func import functional_call

from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.option_schema import Bool, Int, Number, Registered, Section, Spec, check_optimizer_arguments
from lan_basicsr.utils.registry import build_from_registry
from .denoise_model import DenoiseModel

__all__ = ['MetaDenoiseModel', 'FunctionalNet', 'InnerSGD', 'InnerAdam', 'build_inner_optimizer', 'adapt_parameters']

_META_DEFAULTS = dict(
    inner_loss=dict(type='ZSN2NLoss'),
    inner_steps=5,
    inner_lr=5e-6,
    inner_optim=dict(type='Adam'),
    first_order=True,
    eval_mode=True)


class FunctionalNet(nn.Module):
    """Callable stand-in for ``net`` whose parameters are the tensors in ``params`` (name -> tensor).

    The self-supervised losses take a ``net``; this lets them run on adapted parameters without touching the module.
    The wrapped module is kept outside ``_modules`` so that the shim owns no parameters itself.
    """

    def __init__(self, net, params):
        super().__init__()
        object.__setattr__(self, 'net', net)
        self.params = params

    def forward(self, x):
        return functional_call(self.net, self.params, (x, ))


class InnerSGD:
    """Functional (differentiable) SGD step: ``p - lr * g``."""

    def __init__(self, lr):
        self.lr = lr

    def init_state(self, params):
        return None

    def step(self, params, grads, state, t):
        return [p - self.lr * g for p, g in zip(params, grads)], state

    def __repr__(self):
        return f'SGD(lr={self.lr:g})'


class InnerAdam:
    """Functional (differentiable) Adam step with the arithmetic of ``torch.optim.Adam`` (no weight decay/amsgrad).

    ``t`` is the 1-based step count. ``v`` is clamped at 1e-30 before the square root only so that the second-order
    gradient stays finite where a gradient is exactly zero; the step it gives is ``torch.optim.Adam``'s to rounding.
    """

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.betas, self.eps = lr, tuple(betas), eps

    def init_state(self, params):
        return [torch.zeros_like(p) for p in params], [torch.zeros_like(p) for p in params]

    def step(self, params, grads, state, t):
        beta1, beta2 = self.betas
        m, v = state
        m = [beta1 * mi + (1 - beta1) * g for mi, g in zip(m, grads)]
        v = [beta2 * vi + (1 - beta2) * g * g for vi, g in zip(v, grads)]
        bias1, bias2_sqrt = 1 - beta1**t, (1 - beta2**t)**0.5
        new = [
            p - (self.lr / bias1) * mi / (vi.clamp_min(1e-30).sqrt() / bias2_sqrt + self.eps)
            for p, mi, vi in zip(params, m, v)
        ]
        return new, (m, v)

    def __repr__(self):
        return f'Adam(lr={self.lr:g}, betas={self.betas}, eps={self.eps:g})'


def build_inner_optimizer(lr, optim=None, where='meta.inner_optim'):
    """``{type: Adam, betas, eps}`` (default, as test time) or ``{type: SGD}`` as a functional inner optimiser."""
    optim = deepcopy(dict(optim or {'type': 'Adam'}))
    optim_type = optim.pop('type', 'Adam')
    classes = {'Adam': InnerAdam, 'SGD': InnerSGD}
    if optim_type not in classes:
        raise OptionError(f'{where}.type: "{optim_type}" is not supported in the inner loop; use Adam or SGD')
    if 'lr' in optim:
        raise OptionError(f'{where}.lr: set the inner learning rate with meta.inner_lr')
    try:
        return classes[optim_type](float(lr), **optim)
    except TypeError as e:
        raise OptionError(f'{where}: invalid arguments for {optim_type} ({e})') from None


class InnerOptimSpec(Spec):
    """``meta.inner_optim``: ``{type: Adam, betas, eps}`` or ``{type: SGD}``; torch.optim's checks on the values."""

    what = '{type: Adam, betas, eps} or {type: SGD}'

    def check(self, value, keys, ctx):
        if not self.is_mapping(value, keys, ctx, null=True):
            return
        kind = value.get('type', 'Adam')
        allowed = {'Adam': ('betas', 'eps'), 'SGD': ()}
        if kind not in allowed:
            ctx.fail(keys + ('type', ), f'"{kind}" is not supported in the inner loop; use Adam or SGD')
        for key in value:
            if key == 'lr':
                ctx.fail(keys + (key, ), 'set the inner learning rate with meta.inner_lr')
            if key != 'type' and key not in allowed[kind]:
                ctx.fail(keys + (key, ), f'unknown key: the inner {kind} takes '
                         f'{", ".join(("type", ) + allowed[kind])}')
        args = {k: v for k, v in value.items() if k != 'type'}
        problem = check_optimizer_arguments(getattr(torch.optim, kind), 1e-3, args)
        if problem:
            ctx.fail(keys, f'the inner {kind} rejects these arguments ({problem})')


def adapt_parameters(net, params, noisy, loss_fn, steps, inner_opt, create_graph=False):
    """Run ``steps`` inner steps of ``loss_fn`` on ``noisy`` from ``params``; return ``(adapted params, losses)``.

    Args:
        net (nn.Module): the bare network (its own parameters are not changed).
        params (dict): name -> tensor, the starting point (names not given keep the module's tensors).
        noisy (Tensor): 1,C,H,W (or a batch adapted jointly).
        loss_fn: a self-supervised loss, called ``loss_fn(net, noisy, step, total_steps)``.
        steps (int): number of inner steps k.
        inner_opt: :class:`InnerAdam` or :class:`InnerSGD`.
        create_graph (bool): keep the graph through the steps (second order). When False the adapted tensors are
            fresh leaves (requires_grad) detached from ``params``: the first-order approximation.

    Returns:
        dict name -> adapted tensor, and the list of the k inner losses (detached, before each step).
    """
    names = list(params)
    tensors = [params[n] for n in names]
    if not create_graph:
        tensors = [t.detach().requires_grad_() for t in tensors]
    state = inner_opt.init_state(tensors)
    shim = FunctionalNet(net, None)
    losses = []
    for step in range(steps):
        shim.params = dict(zip(names, tensors))
        loss = loss_fn(shim, noisy, step=step, total_steps=steps).loss
        grads = torch.autograd.grad(loss, tensors, create_graph=create_graph, allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]
        if create_graph:
            tensors, state = inner_opt.step(tensors, grads, state, step + 1)
        else:
            with torch.no_grad():
                tensors, state = inner_opt.step(tensors, grads, state, step + 1)
            tensors = [t.requires_grad_() for t in tensors]
        losses.append(loss.detach())
    return dict(zip(names, tensors)), losses


@MODEL_REGISTRY.register()
class MetaDenoiseModel(DenoiseModel):
    """Meta-trains the initialisation for fast self-supervised adaptation (MAML; first-order by default).

    Options (``meta:`` section; defaults in brackets): ``inner_loss`` [{type: ZSN2NLoss}], ``inner_steps`` [5],
    ``inner_lr`` [5e-6, the test-time full-trainable lr], ``inner_optim`` [{type: Adam}, or SGD], ``first_order``
    [true], ``eval_mode`` [true]. The outer loss is ``train.pixel_opt`` [{type: MSELoss}], the outer optimiser
    ``train.optim_g``. Validation and saving are :class:`DenoiseModel`'s (the saved weights are the initialisation).
    """

    @classmethod
    def option_sections(cls):
        meta = Section({
            'inner_loss': Registered('loss'),
            'inner_steps': Int(ge=0),
            'inner_lr': Number(gt=0),
            'inner_optim': InnerOptimSpec(),
            'first_order': Bool(),
            'eval_mode': Bool(),
        })
        assert set(meta.keys) == set(_META_DEFAULTS)
        return {**super().option_sections(), 'meta': meta}

    @classmethod
    def check_options(cls, opt, ctx):
        if (opt.get('train') or {}).get('mixup'):
            ctx.fail(('train', 'mixup'), 'not supported by MetaDenoiseModel (mixing images changes the noise the inner '
                     'loop adapts to); remove it')
        if (opt.get('network_g') or {}).get('use_checkpoint'):
            ctx.fail(('network_g', 'use_checkpoint'), 'not supported by MetaDenoiseModel (checkpointing recomputes '
                     'blocks with the module\'s own weights, not the adapted ones); set it to false')
        gt_size = ((opt.get('datasets') or {}).get('train') or {}).get('gt_size')
        if isinstance(gt_size, int) and gt_size < 2:
            ctx.fail(('datasets', 'train', 'gt_size'), f'{gt_size} is too small for the inner self-supervised loss, '
                     'which needs patches of at least 2x2 pixels')

    def init_training_settings(self):
        train_opt = self.opt['train']
        if not train_opt.get('pixel_opt') and not train_opt.get('perceptual_opt'):
            train_opt['pixel_opt'] = {'type': 'MSELoss', 'loss_weight': 1.0, 'reduction': 'mean'}
        meta = dict(self.opt.get('meta') or {})
        unknown = sorted(set(meta) - set(_META_DEFAULTS))
        if unknown:
            raise OptionError(f'meta: unknown key(s) {", ".join(unknown)}; known: {", ".join(_META_DEFAULTS)}')
        meta = {**_META_DEFAULTS, **meta}
        self.inner_steps = int(meta['inner_steps'])
        if self.inner_steps < 0:
            raise OptionError(f'meta.inner_steps: must be >= 0, got {self.inner_steps}')
        self.inner_loss = build_from_registry(LOSS_REGISTRY, meta['inner_loss'], where='meta.inner_loss')
        self.inner_opt = build_inner_optimizer(meta['inner_lr'], meta['inner_optim'])
        self.first_order = bool(meta['first_order'])
        self.eval_mode = bool(meta['eval_mode'])
        if (self.opt.get('network_g') or {}).get('use_checkpoint'):
            raise OptionError('network_g.use_checkpoint: not supported by MetaDenoiseModel (checkpointing recomputes '
                              'blocks with the module\'s own weights, not the adapted ones); set it to false')
        if self.opt['train'].get('mixup'):
            raise OptionError('train.mixup: not supported by MetaDenoiseModel (mixing images changes the noise the '
                              'inner loop adapts to); remove it')
        super().init_training_settings()
        self.inner_loss = self.inner_loss.to(self.device)
        get_root_logger().info(f'Meta-training: {self.inner_steps} inner steps of {type(self.inner_loss).__name__} '
                               f'with {self.inner_opt!r}, {"first" if self.first_order else "second"} order, '
                               f'network in {"eval" if self.eval_mode else "train"} mode.')

    def meta_gradients(self, lq, gt):
        """Meta-gradient of the batch's mean outer loss w.r.t. the trainable parameters; also returns a log dict.

        Each patch is a task adapted on its own (as each test image is). Nothing is written to ``.grad``.
        """
        net = self.get_bare_model(self.net_g)
        named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        names, leaves = [n for n, _ in named], [p for _, p in named]
        total = [torch.zeros_like(p) for p in leaves]
        batch = lq.shape[0]
        l_outer = l_first = l_last = 0.
        for i in range(batch):
            noisy, clean = lq[i:i + 1], gt[i:i + 1]
            adapted, losses = adapt_parameters(
                net,
                dict(zip(names, leaves)),
                noisy,
                self.inner_loss,
                self.inner_steps,
                self.inner_opt,
                create_graph=not self.first_order)
            output = functional_call(net, adapted, (noisy, ))
            loss = self.cri_pix(output, clean)
            wrt = leaves if not self.first_order else [adapted[n] for n in names]
            grads = torch.autograd.grad(loss / batch, wrt, allow_unused=True)
            for acc, g in zip(total, grads):
                if g is not None:
                    acc.add_(g)
            l_outer += loss.detach() / batch
            if losses:
                l_first += losses[0] / batch
                l_last += losses[-1] / batch
        log = OrderedDict(l_meta=l_outer)
        if self.inner_steps:
            log.update(l_inner_first=l_first, l_inner_last=l_last)
        return total, log

    def optimize_parameters(self, current_iter):
        """One outer step: meta-gradients of the batch, averaged over ranks, clipped (``train.grad_clip``)."""
        self.progressive_crop(current_iter)
        net = self.get_bare_model(self.net_g)
        net.train(not self.eval_mode)
        self.optimizer_g.zero_grad()
        grads, loss_dict = self.meta_gradients(self.lq, self.gt)
        if self.opt['dist']:
            _average_across_ranks(grads)
        if all(bool(torch.isfinite(g).all()) for g in grads):  # the same decision on every rank (after the mean)
            for p, g in zip((p for p in net.parameters() if p.requires_grad), grads):
                p.grad = g
            if self.grad_clip is not None:
                loss_dict['grad_norm'] = torch.nn.utils.clip_grad_norm_(net.parameters(), self.grad_clip).detach()
            self.optimizer_g.step()
        else:
            get_root_logger().warning(f'Iteration {current_iter}: non-finite meta-gradient; outer step skipped.')
        net.train()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)


def _average_across_ranks(tensors):
    """In-place mean of ``tensors`` over all ranks, with one all-reduce of their concatenation."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
