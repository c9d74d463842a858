"""Per-image network weights for adapting a batch of images at once: B copies of the trainable tensors, one network.

``PerImageWeights(net, {name: (B, ...) tensor})`` is called like ``net`` on a batch (B,C,H,W): image i runs with
copy i of the named parameters (the others shared), through ``torch.func.functional_call`` vectorised with
``torch.func.vmap``; ordinary autograd flows to each copy, so an elementwise optimiser (Adam) over the stacked
tensors updates every image exactly as its own optimiser would.
"""
import torch
from torch.func import functional_call, vmap

__all__ = ['PerImageWeights', 'parameter_names']


def parameter_names(net, params):
    """The names that the parameters ``params`` (by identity) have in the module ``net``; None if one is not there."""
    if not isinstance(net, torch.nn.Module):
        return None
    names = {id(p): n for n, p in net.named_parameters(remove_duplicate=False)}
    found = [names.get(id(p)) for p in params]
    return None if None in found else found


class PerImageWeights:
    """``net`` with per-image copies of some of its parameters; see the module doc."""

    def __init__(self, net, stacked):
        self.net = net
        self.stacked = stacked  # name -> (B, ...) tensor

    def _one(self, params, x):
        return functional_call(self.net, params, (x.unsqueeze(0), ), strict=False).squeeze(0)

    def __call__(self, x):
        batch = next(iter(self.stacked.values())).shape[0]
        if x.shape[0] != batch:
            raise ValueError(f'PerImageWeights: {batch} weight copies for a batch of {x.shape[0]} images')
        return vmap(self._one)(self.stacked, x)
