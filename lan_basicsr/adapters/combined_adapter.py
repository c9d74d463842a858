"""A combined adapter: LAN's input offset and some of the network's weights are adapted together."""
import torch

from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.option_schema import CheckpointPath, Number, Section, Str
from lan_basicsr.utils.registry import ADAPTER_REGISTRY
from .base_adapter import BaseAdapter, _rows_finite, build_optimizer
from .weight_adapter import FirstLayer, FullTrainable, LastLayer

__all__ = ['OffsetAndWeights', 'COMBINED_DEFAULTS']

_WEIGHT_ADAPTERS = {'FullTrainable': FullTrainable, 'FirstLayer': FirstLayer, 'LastLayer': LastLayer}
COMBINED_DEFAULTS = {'weights': 'LastLayer', 'weights_lr': 5e-6, 'layer': None}


@ADAPTER_REGISTRY.register()
class OffsetAndWeights(BaseAdapter):
    """The network sees ``y + tanh(φ)`` (LAN) and a set of its weights is trained as well, in one optimiser.

    LAN moves the input towards the noise the network knows; the weights move the network towards the noise it sees.
    A bounded offset alone cannot remove a large shift, weights alone adapt slowly at their small learning rate; both
    together take each where it is strong. φ uses ``adapt.lr`` (default 5e-4, LAN's), the weights their own rate.

    Options (``adapt.combined``):
        weights (str): FullTrainable | FirstLayer | LastLayer: which weights, as those adapters choose them.
            Default: LastLayer.
        weights_lr (float): their learning rate. Default: 5e-6 (the official full-trainable rate).
        layer (str | None): FirstLayer/LastLayer: a module name instead of the one found in forward order.

    Args:
        net, lr, optim: see :class:`BaseAdapter` (``lr``: φ's).
        combined (dict | None): the options above.
        init_path, param_key: the weights' reset point, as for the network adapters.
    """

    default_lr = 5e-4
    _combined_keys = {
        'weights': Str(choices=tuple(_WEIGHT_ADAPTERS)),
        'weights_lr': Number(gt=0),
        'layer': Str(null=True)
    }
    option_values = {
        'combined': Section(_combined_keys, null=True),
        'init_path': CheckpointPath(),
        'param_key': Str(null=True)
    }

    def __init__(self, net, lr=None, optim=None, combined=None, init_path=None, param_key=None):
        super().__init__(net, lr=lr, optim=optim)
        opt = dict(COMBINED_DEFAULTS)
        given = dict(combined or {})
        unknown = sorted(set(given) - set(COMBINED_DEFAULTS))
        if unknown:
            raise OptionError(f'adapt.combined: {", ".join(unknown)} not understood (it takes: '
                              f'{", ".join(COMBINED_DEFAULTS)})')
        opt.update(given)
        if opt['weights'] not in _WEIGHT_ADAPTERS:
            raise OptionError(f'adapt.combined.weights: expected one of {", ".join(_WEIGHT_ADAPTERS)}, got '
                              f'{opt["weights"]!r}')
        if opt['layer'] is not None and opt['weights'] == 'FullTrainable':
            raise OptionError('adapt.combined.layer: only FirstLayer / LastLayer take a layer; set it to null')
        kwargs = {'lr': opt['weights_lr'], 'optim': optim, 'init_path': init_path, 'param_key': param_key}
        if opt['layer'] is not None:
            kwargs['layer'] = opt['layer']
        try:
            self.weights = _WEIGHT_ADAPTERS[opt['weights']](net, **kwargs)
        except OptionError as e:
            raise OptionError(f'adapt.combined: {e}') from None
        self.combined = opt
        self.weights_lr = self.weights.lr
        self.phi = None

    def reset(self, lq):
        self.weights.reset(lq)  # weights back to the reference (per-image copies for B > 1), only the chosen ones train
        self.phi = torch.zeros_like(lq, requires_grad=True)
        return self._new_optimizer()

    def _new_optimizer(self):
        weights = self.weights.trainable_parameters()
        groups = [{'params': [self.phi], 'lr': self.lr}, {'params': weights, 'lr': self.weights_lr}]
        self.optimizer = build_optimizer(groups, self.lr, self.optim_opt)
        return self.optimizer

    def adapted_input(self, lq):
        return lq + torch.tanh(self.phi)

    def network(self, net):
        return self.weights.network(net)  # per-image weight copies when a batch of images is adapted together

    def grads_finite(self):
        flags = [f for f in (_rows_finite([self.phi]), self.weights.grads_finite()) if f is not None]
        return torch.stack(flags).all(0) if flags else None

    def trainable_parameters(self):
        return ([] if self.phi is None else [self.phi]) + self.weights.trainable_parameters()

    def offset(self):
        return None if self.phi is None else self.phi.detach()

    def __repr__(self):
        return (f'{type(self).__name__}(offset lr={self.lr:g}, weights={self.weights!r}, optim={self.optim_opt})')
