"""Baselines that adapt the network's weights instead of the input: all of them, the first layer or the last layer.

The reference weights (the pretrained checkpoint, or ``init_path`` such as meta-learned weights) are kept in memory
and copied back on every reset, so an image's adaptation never leaks into the next one and nothing is re-read
from disk. A reset for a batch of B images gives each image its own copy of the trainable weights
(:class:`~lan_basicsr.adapters.per_image.PerImageWeights`); a batch of one adapts the module's weights in place.
"""
import math

import torch
from basicsr.utils import get_root_logger

from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.option_schema import CheckpointPath, Str
from lan_basicsr.utils.registry import ADAPTER_REGISTRY
from .base_adapter import BaseAdapter
from .per_image import PerImageWeights, parameter_names

__all__ = ['NetworkAdapter', 'FullTrainable', 'FirstLayer', 'LastLayer', 'parameter_module_calls']


def _owns_parameters(module):
    return next(module.parameters(recurse=False), None) is not None


@torch.no_grad()
def parameter_module_calls(net, probe):
    """Names of the modules that own parameters themselves, in the order ``net(probe)`` calls them (with repeats).

    Found with forward pre-hooks on one no-grad pass, so it holds for any architecture whatever the registration
    order of its submodules; modules never called (e.g. an unused branch) are absent. The first layer is the first
    entry, the last layer the last one.
    """
    calls, handles = [], []

    def hook(name):

        def record(module, args):
            calls.append(name)

        return record

    for name, module in net.named_modules():
        if _owns_parameters(module):
            handles.append(module.register_forward_pre_hook(hook(name)))
    try:
        net(probe)
    finally:
        for handle in handles:
            handle.remove()
    return calls


class NetworkAdapter(BaseAdapter):
    """Adapts network parameters; which ones is decided by :meth:`select` (all of them here).

    Args:
        net, lr, optim: see :class:`BaseAdapter`; ``lr`` defaults to 5e-6 (the official full-trainable value).
        init_path (str | None): weights loaded once (strictly, through ``lan_basicsr.utils.checkpoint``) and used
            as the reset point instead of the pretrained ones, e.g. a meta-learned initialisation.
        param_key (str | None): key of the state dict inside ``init_path`` (found automatically when None).
    """

    default_lr = 5e-6
    option_values = {'init_path': CheckpointPath(), 'param_key': Str(null=True)}

    def __init__(self, net, lr=None, optim=None, init_path=None, param_key=None):
        super().__init__(net, lr=lr, optim=optim)
        if init_path is not None:
            from lan_basicsr.utils.checkpoint import load_network
            load_network(net, init_path, strict=True, param_key=param_key)
            get_root_logger().info(f'{type(self).__name__}: reset point = {init_path}')
        self.init_path = init_path
        self._params = list(net.parameters())
        self._reference = [p.detach().clone() for p in self._params]
        self._trainable = None
        self._stacked = None  # per-image copies of the trainable tensors while a batch of B > 1 is adapted

    def select(self, lq):
        """Return the list of parameters to adapt (called at the first reset, with the first image)."""
        return self._params

    def reset(self, lq):
        if self._trainable is None:
            self._trainable = list(self.select(lq[:1]))
            trainable_ids = {id(p) for p in self._trainable}
            for p in self._params:
                p.requires_grad_(id(p) in trainable_ids)
            get_root_logger().info(f'{self!r}')
        with torch.no_grad():
            for p, ref in zip(self._params, self._reference):
                p.copy_(ref)
                p.grad = None
        self._stacked = None
        if lq.shape[0] > 1:
            reference = {id(p): ref for p, ref in zip(self._params, self._reference)}
            self._stacked = [
                reference[id(p)].unsqueeze(0).repeat(lq.shape[0], *[1] * p.dim()).requires_grad_()
                for p in self._trainable
            ]
        return self._new_optimizer()

    def network(self, net):
        if self._stacked is None:
            return net
        names = parameter_names(net, self._trainable)
        if names is None:
            raise OptionError(f'adapt.batch_size > 1 with adapt.type {type(self).__name__}: the network the loop runs '
                              '(e.g. a tiled wrapper) does not expose the adapted parameters; set adapt.batch_size: 1')
        return PerImageWeights(net, dict(zip(names, self._stacked)))

    def trainable_parameters(self):
        return list(self._stacked if self._stacked is not None else self._trainable or [])

    def grads_finite(self):
        if self._stacked is not None:
            return super().grads_finite()
        grads = [p.grad for p in self._trainable if p.grad is not None]
        if not grads:
            return None
        return torch.stack(torch._foreach_norm(grads, math.inf)).isfinite().all().reshape(1)  # NaN/inf anywhere

    def __repr__(self):
        n = sum(p.numel() for p in self._trainable) if self._trainable is not None else '?'
        return f'{type(self).__name__}(lr={self.lr:g}, optim={self.optim_opt}, trainable parameters={n})'


@ADAPTER_REGISTRY.register()
class FullTrainable(NetworkAdapter):
    """All network weights are trained (the paper's full-trainable baseline, Adam lr 5e-6)."""


class _LayerAdapter(NetworkAdapter):
    """Only one layer is trained: found automatically in forward order, or named with ``layer``."""

    position = None  # 0: first, -1: last
    option_values = {'layer': Str(null=True)}

    def __init__(self, net, lr=None, optim=None, init_path=None, param_key=None, layer=None):
        super().__init__(net, lr=lr, optim=optim, init_path=init_path, param_key=param_key)
        modules = dict(net.named_modules())
        if layer is not None and layer not in modules:
            candidates = [n for n, m in net.named_modules() if _owns_parameters(m)]
            shown = ', '.join(candidates[:3] + ['...'] +
                              candidates[-3:]) if len(candidates) > 6 else ', '.join(candidates)
            raise OptionError(f'adapt.layer: "{layer}" is not a module of {type(net).__name__} (modules with '
                              f'parameters: {shown})')
        if layer is not None and next(modules[layer].parameters(), None) is None:
            raise OptionError(f'adapt.layer: module "{layer}" has no parameters')
        self.layer = layer

    def select(self, lq):
        if self.layer is not None:  # a named module: all its parameters, its submodules' included
            return list(dict(self.net.named_modules())[self.layer].parameters())
        calls = parameter_module_calls(self.net, lq)
        if not calls:
            raise OptionError(f'adapt.type {type(self).__name__}: {type(self.net).__name__} called no module with '
                              'parameters; name one with adapt.layer')
        self.layer = calls[self.position]
        return list(dict(self.net.named_modules())[self.layer].parameters(recurse=False))

    def __repr__(self):
        return super().__repr__()[:-1] + f', layer={self.layer})'


@ADAPTER_REGISTRY.register()
class FirstLayer(_LayerAdapter):
    """Only the first layer called in the forward pass is trained (override with ``adapt.layer: <module name>``).

    A layer is a module that owns parameters itself (a conv, linear, norm, ...). The learning rate is not published:
    default 5e-6, the full-trainable value.
    """

    position = 0


@ADAPTER_REGISTRY.register()
class LastLayer(_LayerAdapter):
    """Only the last layer called in the forward pass is trained (override with ``adapt.layer: <module name>``).

    A layer is a module that owns parameters itself. The learning rate is not published: default 5e-6.
    """

    position = -1
