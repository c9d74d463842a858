"""LAN: adapt a learnable offset added to the noisy input; the network stays frozen."""
import torch

from lan_basicsr.utils.registry import ADAPTER_REGISTRY
from .base_adapter import BaseAdapter

__all__ = ['LAN']


@ADAPTER_REGISTRY.register()
class LAN(BaseAdapter):
    """Learning-to-Adapt-Noise: the network sees ``y + tanh(φ)``, φ zeros of the input's shape, only φ is trained.

    Every network parameter gets ``requires_grad=False`` once, here, so the backward pass computes gradients for φ
    only (no weight gradient is ever allocated) and the weights stay bitwise the pretrained ones: a reset only
    zeroes φ and makes a new optimiser.

    Args:
        net, optim: see :class:`BaseAdapter`.
        lr (float | None): default 5e-4 (the official value).
    """

    default_lr = 5e-4

    def __init__(self, net, lr=None, optim=None):
        super().__init__(net, lr=lr, optim=optim)
        for param in net.parameters():
            param.requires_grad_(False)
            param.grad = None
        self.phi = None

    def reset(self, lq):
        self.phi = torch.zeros_like(lq, requires_grad=True)
        return self._new_optimizer()

    def adapted_input(self, lq):
        return lq + torch.tanh(self.phi)

    def trainable_parameters(self):
        return [self.phi]

    def offset(self):
        return self.phi.detach()
