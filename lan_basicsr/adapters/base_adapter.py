"""What is adapted at test time: the common interface and the optimiser construction.

An adapter owns the per-image adaptation state of a frozen-or-not network: ``reset(lq)`` starts a fresh state for a
new image, or for a batch of B images adapted together as if one at a time (new optimiser, trainable tensors back to
their reference values, one copy per image), ``adapted_input(lq)`` gives the tensor the network sees,
``network(net)`` the network to run (``net`` itself, or per-image weights), ``trainable_parameters()`` what the
optimiser updates, ``grads_finite()`` which images' gradients are finite. LANModel drives the loop; the adapters
only decide *what* moves and from *where* it starts.
"""
import math
from copy import deepcopy

import torch

from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.option_schema import Number, TorchOptimizer, check_optimizer_arguments

__all__ = ['BaseAdapter', 'build_optimizer', 'ELEMENTWISE_OPTIMIZERS']

# torch.optim classes whose update of an element depends on that element's gradient history only: a tensor holding
# B images' copies (B,...) is then updated exactly as B separate tensors, so a batch adapts as one image at a time.
ELEMENTWISE_OPTIMIZERS = ('Adam', 'AdamW', 'SGD', 'RMSprop', 'Adagrad', 'Adadelta', 'Adamax', 'NAdam', 'RAdam', 'Rprop',
                          'ASGD')


def build_optimizer(params, lr, optim=None, where='adapt.optim'):
    """Build ``torch.optim.<optim.type>(params, lr=lr, **rest)``; ``optim`` defaults to ``{type: Adam}``.

    ``lr`` is given separately (``adapt.lr`` or the adapter's default); an ``lr`` inside ``optim`` is refused so
    that there is a single place to set it.
    """
    optim = deepcopy(dict(optim or {}))
    optim_type = optim.pop('type', 'Adam')
    if 'lr' in optim:
        raise OptionError(f'{where}.lr: set the learning rate with adapt.lr (null = the adapter default)')
    optim_cls = getattr(torch.optim, str(optim_type), None)
    if not (isinstance(optim_cls, type) and issubclass(optim_cls, torch.optim.Optimizer)):
        raise OptionError(f'{where}.type: "{optim_type}" is not a torch.optim optimiser (e.g. Adam, AdamW, SGD)')
    problem = check_optimizer_arguments(optim_cls, lr, optim)  # torch's checks on a dummy tensor: one-line error
    if problem:
        raise OptionError(f'{where}: torch.optim.{optim_type} rejects these arguments ({problem})')
    return optim_cls(params, lr=lr, **optim)


class BaseAdapter:
    """Interface of the test-time adapters (see ``docs/design.md``, Test-time adaptation).

    Args:
        net (nn.Module): the bare network (no DDP wrapper), already on its device and in eval mode.
        lr (float | None): learning rate; None takes the class's ``default_lr``.
        optim (dict | None): ``{type: <torch.optim class name>, **kwargs}``; default ``{type: Adam}``
            (default betas, no weight decay), as the official code.
    """

    default_lr = None
    # value rules of the constructor arguments, checked with the options before anything is built (option_schema)
    option_values = {
        'lr': Number(gt=0, null=True),
        'optim': TorchOptimizer(lr='refused', default_type='Adam', null=True),
    }

    def __init__(self, net, lr=None, optim=None):
        self.net = net
        lr = self.default_lr if lr is None else lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or not lr > 0:
            raise OptionError(f'adapt.lr: expected a finite number > 0, got {lr!r}')
        self.lr = float(lr)
        self.optim_opt = dict(optim or {'type': 'Adam'})
        build_optimizer([torch.zeros(1, requires_grad=True)], self.lr, self.optim_opt)  # fail early on bad options
        self.optimizer = None

    def reset(self, lq):
        """Start a fresh adaptation state for the images ``lq`` (B,C,H,W; each its own state); return the optimiser."""
        raise NotImplementedError

    def adapted_input(self, lq):
        """The network input for ``lq`` under the current state (differentiable w.r.t. the trainable tensors)."""
        return lq

    def network(self, net):
        """What the loss runs under the current state: ``net`` (the network as the loop was given it) by default."""
        return net

    def trainable_parameters(self):
        """List of the tensors the optimiser updates."""
        raise NotImplementedError

    def grads_finite(self):
        """(B,) bool tensor on the device: whether each image's gradients are all finite (nothing waits for it)."""
        return _rows_finite(self.trainable_parameters())

    def offset(self):
        """The learnable input offset (LAN's φ, B,C,H,W, detached), or None when the network itself is adapted."""
        return None

    def _new_optimizer(self):
        self.optimizer = build_optimizer(self.trainable_parameters(), self.lr, self.optim_opt)
        return self.optimizer

    def __repr__(self):
        n = sum(p.numel() for p in self.trainable_parameters()) if self.optimizer is not None else '?'
        return f'{type(self).__name__}(lr={self.lr:g}, optim={self.optim_opt}, trainable={n})'


def _rows_finite(tensors):
    """Per image (the leading dimension of every tensor), whether all the tensors' gradients are finite."""
    flags = [t.grad.isfinite().flatten(1).all(1) for t in tensors if t.grad is not None]
    return torch.stack(flags).all(0) if flags else None
