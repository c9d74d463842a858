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
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from .loss_util import SelfSupervisedOutput, check_noisy, even_crop, image_mean

__all__ = ['ZSN2NLoss', 'pair_downsample']


def pair_downsample(img):
    """Split ``img`` (B,C,H,W) into the two half-size ZS-N2N sub-images ``(D1 img, D2 img)``.

    D1 averages the anti-diagonal of each 2x2 cell, D2 the diagonal; the two share no pixel, so their noise is
    independent for pixel-independent noise. Differentiable; an odd last row/column is ignored. The official code
    applies the filters [[0, .5], [.5, 0]] and [[.5, 0], [0, .5]] as a stride-2 convolution; the strided sums here are
    the same numbers bit for bit (0.5 a + 0.5 b and (a + b) / 2 round alike) without a convolution or a filter tensor
    made on the device.
    """
    img = even_crop(img)
    top_left, top_right = img[..., 0::2, 0::2], img[..., 0::2, 1::2]
    bottom_left, bottom_right = img[..., 1::2, 0::2], img[..., 1::2, 1::2]
    return (top_right + bottom_left) / 2, (top_left + bottom_right) / 2


@LOSS_REGISTRY.register()
class ZSN2NLoss(nn.Module):
    """ZS-N2N self-supervised loss: residual (D1 <-> D2 swap) plus consistency with the full-image output.

    Call as ``loss_fn(net, noisy, step=0, total_steps=20, generators=None)``; ``step``, ``total_steps`` and
    ``generators`` are accepted for a common signature and ignored (the loss is deterministic). Returns
    :class:`SelfSupervisedOutput` whose ``output`` is ``net(noisy)`` at full size and still part of the graph, and
    whose ``per_image`` holds each image's loss (its own mean squared errors).

    Args:
        loss_weight (float): Multiplies the loss. Default: 1.0.
    """

    def __init__(self, loss_weight=1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, net, noisy, step=0, total_steps=20, generators=None):
        check_noisy(noisy)
        output = net(noisy)
        d1, d2 = pair_downsample(noisy)
        pred1, pred2 = net(d1), net(d2)
        out_d1, out_d2 = pair_downsample(output)
        loss_res = 0.5 * (image_mean((pred1 - d2)**2) + image_mean((pred2 - d1)**2))
        loss_cons = 0.5 * (image_mean((pred1 - out_d1)**2) + image_mean((pred2 - out_d2)**2))
        per_image = self.loss_weight * (loss_res + loss_cons)  # each image's mean squared errors, its own
        return SelfSupervisedOutput(per_image.mean(), output, per_image)
