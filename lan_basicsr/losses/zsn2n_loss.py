"""Zero-Shot Noise2Noise loss (Mansour & Heckel, CVPR 2023) as LAN uses it.

Semantics checked against the official LAN code (``loss_func`` in ``adapt/zsn2n.py`` of github.com/chjinny/LAN,
read in a fork's unmodified copy):

- The network output is the clean estimate (LAN's denoisers add the input back), not the noise as in the original
  ZS-N2N notebook: ``f(D1 y)`` is compared with ``D2 y`` directly.
- ``L_res = (mse(f(D1 y), D2 y) + mse(f(D2 y), D1 y)) / 2`` and
  ``L_cons = (mse(f(D1 y), D1 f(y)) + mse(f(D2 y), D2 f(y))) / 2``; loss = ``L_res + L_cons`` (mean squared errors).
- Nothing is detached and nothing is clipped: gradients flow through the targets ``D1 y, D2 y`` and through ``f(y)``.
- ``f(y)`` runs on the full image; the odd-size rule (see :mod:`.loss_util`) drops a ragged last row/column of ``y``
  and ``f(y)`` before down-sampling, exactly as the official stride-2 convolution does.
"""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from torch.nn import functional as F

from .loss_util import SelfSupervisedOutput, check_noisy, even_crop

__all__ = ['ZSN2NLoss', 'pair_downsample']

# Depthwise 2x2 stride-2 filters of ZS-N2N: each averages one diagonal of every 2x2 cell.
_FILTER_D1 = ((0.0, 0.5), (0.5, 0.0))
_FILTER_D2 = ((0.5, 0.0), (0.0, 0.5))


def pair_downsample(img):
    """Split ``img`` (B,C,H,W) into the two half-size ZS-N2N sub-images ``(D1 img, D2 img)``.

    D1 averages the anti-diagonal of each 2x2 cell, D2 the diagonal; the two share no pixel, so their noise is
    independent for pixel-independent noise. Differentiable; an odd last row/column is ignored.
    """
    c = img.shape[1]
    # One depthwise conv with channel multiplier 2: input channel k gives output channels 2k (D1) and 2k+1 (D2).
    weight = torch.tensor((_FILTER_D1, _FILTER_D2), dtype=img.dtype, device=img.device)
    weight = weight.unsqueeze(1).repeat(c, 1, 1, 1)  # 2C,1,2,2
    out = F.conv2d(img, weight, stride=2, groups=c)
    return out[:, 0::2].contiguous(), out[:, 1::2].contiguous()


@LOSS_REGISTRY.register()
class ZSN2NLoss(nn.Module):
    """ZS-N2N self-supervised loss: residual (D1 <-> D2 swap) plus consistency with the full-image output.

    Call as ``loss_fn(net, noisy, step=0, total_steps=20, generators=None)``; ``step``, ``total_steps`` and
    ``generators`` are accepted for a common signature and ignored (the loss is deterministic). Returns
    :class:`SelfSupervisedOutput` whose ``output`` is ``net(noisy)`` at full size and still part of the graph.

    Args:
        loss_weight (float): Multiplies the loss. Default: 1.0.
    """

    def __init__(self, loss_weight=1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, net, noisy, step=0, total_steps=20, generators=None):
        check_noisy(noisy)
        output = net(noisy)
        d1, d2 = pair_downsample(even_crop(noisy))
        pred1, pred2 = net(d1), net(d2)
        out_d1, out_d2 = pair_downsample(even_crop(output))
        loss_res = 0.5 * (F.mse_loss(pred1, d2) + F.mse_loss(pred2, d1))
        loss_cons = 0.5 * (F.mse_loss(pred1, out_d1) + F.mse_loss(pred2, out_d2))
        return SelfSupervisedOutput(self.loss_weight * (loss_res + loss_cons), output)
