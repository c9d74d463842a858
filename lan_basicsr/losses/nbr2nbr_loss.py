"""Neighbor2Neighbor loss (Huang et al., CVPR 2021) as LAN uses it, with a vectorised, per-image seeded sampler.

Semantics checked against the official LAN code (``loss_func`` in ``adapt/nbr2nbr.py`` of github.com/chjinny/LAN,
read in a fork's unmodified copy) and the original ``train.py`` of github.com/TaoHuang2018/Neighbor2Neighbor:

- Sampler: in every 2x2 cell (pixels numbered 0 1 / 2 3) one of the 8 ordered pairs of 4-neighbours
  (0,1) (0,2) (1,3) (2,3) (1,0) (2,0) (3,1) (3,2) is drawn uniformly; g1 takes the pair's first pixel, g2 the second.
  All channels of a cell use the same pair (the official masks are per pixel, shared across channels).
- ``f̄(y) = f(y)`` is computed under ``no_grad`` and clipped to [0, 1] (LAN adds this clip; the original does not).
- ``f(g1 y)`` is clipped to [0, 1] (LAN adds this clip too, with gradients: zero outside [0, 1]); the target
  ``g2 y`` is not clipped (an adapted input ``y + tanh(phi)`` may leave [0, 1]).
- ``L1 = mean((f(g1 y) - g2 y)^2)``, ``L2 = Λ mean((f(g1 y) - g2 y - (g1 f̄(y) - g2 f̄(y)))^2)``, loss ``L1 + L2``.
- ``Λ = step / total_steps * gamma`` with ``step`` the 0-based index of the update (the official loop passes
  ``i`` in ``range(20)`` and 20, so Λ = 0 at the first update) and ``gamma = 0.1`` (the original paper: 2.0, counted
  in epochs from 1).
- The official code seeds a fresh generator from a global call counter, so masks depend on image order and batch
  composition. Here each image draws from its own ``torch.Generator`` that the caller seeds (base seed + image
  index), so image k gets the same masks alone or in any batch.

The network output ``f(y)`` on the full image is returned unclipped (the caller clips to score). An odd last
row/column belongs to no 2x2 cell and is ignored by the loss (see :mod:`.loss_util`).
"""
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from .loss_util import SelfSupervisedOutput, check_noisy, image_mean

__all__ = ['NEIGHBOUR_PAIRS', 'Nbr2NbrLoss', 'sample_neighbour_pairs', 'subsample']

# Ordered pairs of 4-neighbours in a 2x2 cell whose pixels are numbered row-major (0 1 / 2 3); no diagonal pairs.
NEIGHBOUR_PAIRS = ((0, 1), (0, 2), (1, 3), (2, 3), (1, 0), (2, 0), (3, 1), (3, 2))


def sample_neighbour_pairs(img, generators=None):
    """Draw one neighbour pair per 2x2 cell of ``img`` (B,C,H,W); return ``(idx1, idx2)``, each B,H//2,W//2.

    ``idx1``/``idx2`` hold the cell position (0..3, row-major) that g1/g2 take. ``generators``: one
    ``torch.Generator`` per image (on any device: indices are drawn there, then moved to ``img``'s device) so that
    an image's draw does not depend on the batch it is in; ``None`` draws from the global RNG on ``img``'s device.
    Nothing waits for the device: draws made on the CPU for a CUDA image go through pinned memory, asynchronously,
    and the pair table is arithmetic, not a tensor copied to the device.
    """
    b, _, h, w = img.shape
    h2, w2 = h // 2, w // 2
    device = img.device
    if generators is None:
        draw = torch.randint(len(NEIGHBOUR_PAIRS), (b, h2, w2), device=device)
    else:
        generators = list(generators)
        if len(generators) != b:
            raise ValueError(f'Neighbor2Neighbor sampler: got {len(generators)} generators for a batch of {b} images '
                             '(one torch.Generator per image is needed)')
        draws = [torch.randint(len(NEIGHBOUR_PAIRS), (h2, w2), generator=g, device=g.device) for g in generators]
        draw = torch.stack([d.to(draws[0].device) for d in draws])  # the generators normally share one device
        if draw.device != device:
            pinned = device.type == 'cuda' and draw.device.type == 'cpu'
            draw = draw.pin_memory().to(device, non_blocking=True) if pinned else draw.to(device)
    return _pair_positions(draw)


def _pair_positions(draw):
    """``NEIGHBOUR_PAIRS[draw]`` as two index tensors: pairs 0-3 are (0,1) (0,2) (1,3) (2,3), 4-7 the same reversed."""
    k = draw % 4
    low, high = (k - 1).clamp(min=0), (k + 1).clamp(max=3)
    reverse = draw >= 4
    return torch.where(reverse, high, low), torch.where(reverse, low, high)


def _flat_offsets(idx, width):
    """Offsets into a flattened H*W plane of the pixels that ``idx`` (B,H/2,W/2, cell positions) selects."""
    h2, w2 = idx.shape[-2:]
    device = idx.device
    cell_corner = (2 * width) * torch.arange(h2, device=device).view(h2, 1) + 2 * torch.arange(w2, device=device)
    in_cell = (idx // 2) * width + idx % 2  # positions 0 1 / 2 3 of the cell
    return (cell_corner + in_cell).flatten(1)  # B,H/2*W/2


def subsample(img, idx):
    """Pick, in every 2x2 cell of ``img`` (B,C,H,W), the pixel at position ``idx`` (B,H//2,W//2); all channels alike.

    Vectorised (one ``gather``; no copy of a contiguous ``img``) and differentiable w.r.t. ``img``; a ragged last
    row/column is ignored.
    """
    b, c, h, w = img.shape
    h2, w2 = h // 2, w // 2
    if tuple(idx.shape) != (b, h2, w2):
        raise ValueError(f'subsample: index of shape {tuple(idx.shape)} does not match image {tuple(img.shape)} '
                         f'(expected {(b, h2, w2)})')
    offsets = _flat_offsets(idx, w).unsqueeze(1).expand(b, c, h2 * w2)
    return img.reshape(b, c, h * w).gather(2, offsets).view(b, c, h2, w2)


@LOSS_REGISTRY.register()
class Nbr2NbrLoss(nn.Module):
    """Neighbor2Neighbor self-supervised loss with LAN's clipping and Λ schedule.

    Call as ``loss_fn(net, noisy, step=0, total_steps=20, generators=None)``; returns :class:`SelfSupervisedOutput`
    whose ``output`` is ``net(noisy)`` at full size, computed under ``no_grad`` and not clipped.

    Args:
        gamma (float): Final ratio of the regulariser, Λ = step / total_steps * gamma. Default: 0.1 (LAN).
        loss_weight (float): Multiplies the loss. Default: 1.0.
    """

    def __init__(self, gamma=0.1, loss_weight=1.0):
        super().__init__()
        self.gamma = gamma
        self.loss_weight = loss_weight

    def forward(self, net, noisy, step=0, total_steps=20, generators=None):
        check_noisy(noisy)
        if total_steps <= 0 or step < 0:
            raise ValueError(f'Nbr2NbrLoss: need step >= 0 and total_steps > 0, got step={step}, '
                             f'total_steps={total_steps}')
        idx1, idx2 = sample_neighbour_pairs(noisy, generators)
        with torch.no_grad():
            output = net(noisy)
        reference = output.clamp(0, 1)
        sub1, sub2 = subsample(noisy, idx1), subsample(noisy, idx2)
        diff = net(sub1).clamp(0, 1) - sub2
        exp_diff = subsample(reference, idx1) - subsample(reference, idx2)
        lam = step / total_steps * self.gamma
        per_image = self.loss_weight * (image_mean(diff**2) + lam * image_mean((diff - exp_diff)**2))
        return SelfSupervisedOutput(per_image.mean(), output, per_image)
