"""How the adaptation loop runs the network: memory format (default mode) and the opt-in speed modes.

- ``adapt.channels_last`` (default true): the network's weights and every input in channels-last memory format.
  The same arithmetic in another order (oneDNN / cuDNN pick NHWC kernels): on the CPU a DnCNN step takes about half
  the time; every step's PSNR moves by ~1e-5 dB (``benchmarks/throughput.py`` asserts <= 1e-3 dB per step against the
  official loop).
- ``adapt.amp: bf16`` (opt-in): the network runs under ``torch.autocast`` in bfloat16; its output is cast back to
  float32, so φ, the loss and the optimiser stay float32.
- ``adapt.compile: true`` (opt-in): the network is compiled once with ``torch.compile(dynamic=False)`` (static shapes:
  one graph per input size, e.g. the full image and the half-size sub-images of the losses; the first image pays).

Each speed mode's PSNR deviation from the default mode is measured by ``benchmarks/throughput.py``.
"""
import torch
from torch import nn

from lan_basicsr.utils.errors import OptionError

__all__ = ['SpeedModes', 'AMP_DTYPES']

AMP_DTYPES = {'bf16': torch.bfloat16}


class _Forward(nn.Module):
    """Calls ``net`` (a module or any callable) with the input in channels-last format and/or under autocast."""

    def __init__(self, net, channels_last, amp_dtype):
        super().__init__()
        self.net = net
        self.channels_last = channels_last
        self.amp_dtype = amp_dtype

    def forward(self, x):
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.amp_dtype is None:
            return self.net(x)
        with torch.autocast(x.device.type, dtype=self.amp_dtype):
            y = self.net(x)
        return y.float()


class SpeedModes:
    """The ``adapt`` keys ``channels_last``, ``amp``, ``compile``: validated here, applied by :meth:`prepare` (once,
    to the bare network, before an adapter copies its weights) and :meth:`wrap` (the callable the loss runs).

    ``SpeedModes(channels_last=False)`` (all off) runs the network exactly as given, as the official loop does.
    """

    def __init__(self, channels_last=True, amp=None, compile=False):  # noqa: A002 (the option's name)
        if not isinstance(channels_last, bool):
            raise OptionError(f'adapt.channels_last: expected true or false, got {channels_last!r}')
        if amp is not None and amp not in AMP_DTYPES:
            raise OptionError(f'adapt.amp: expected null or one of {", ".join(AMP_DTYPES)}, got {amp!r}')
        if not isinstance(compile, bool):
            raise OptionError(f'adapt.compile: expected true or false, got {compile!r}')
        self.channels_last = channels_last
        self.amp = amp
        self.compile = compile
        self._last = None  # (net, its wrapper): compile once for the network every image uses

    @classmethod
    def from_options(cls, adapt_opt):
        return cls(adapt_opt.get('channels_last', True), adapt_opt.get('amp'), adapt_opt.get('compile', False))

    def __repr__(self):
        return f'channels_last={self.channels_last}, amp={self.amp}, compile={self.compile}'

    @property
    def plain(self):
        return not (self.channels_last or self.amp or self.compile)

    def prepare(self, net):
        """Put the bare network's weights in the memory format its inputs will have (in place); return it."""
        return net.to(memory_format=torch.channels_last) if self.channels_last else net

    def wrap(self, net):
        """The callable for the loss: ``net`` itself when every mode is off; the same object for the same ``net``."""
        if self.plain:
            return net
        if self._last is None or self._last[0] is not net:
            forward = _Forward(net, self.channels_last, AMP_DTYPES.get(self.amp))
            self._last = (net, torch.compile(forward, dynamic=False) if self.compile else forward)
        return self._last[1]
