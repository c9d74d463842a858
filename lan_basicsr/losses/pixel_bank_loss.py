"""Pixel-bank self-supervised loss (after Pixel2Pixel, Ma et al. TPAMI 2025, and TTAD, Ma et al. ICCV 2025).

The *pixel bank* of an image holds, for every pixel p, the positions of the ``bank_size`` pixels q in a local window
whose surrounding patch is most similar to p's (sum of squared differences over a ``patch`` x ``patch`` neighbourhood
and all channels). Pixels within ``exclude`` (Chebyshev distance) of p are never candidates, so a bank entry's noise
is independent of p's even when the noise is spatially correlated over a few pixels (demosaicing, JPEG), as camera
noise is; the centre pixels themselves are left out of the patch distance (``exclude_centre``), so that the choice
of q does not depend on the noise of p or q. ``include_self`` puts p itself first in its bank.

Loss: two *pseudo noisy instances* are drawn from the bank, each pixel independently picking two different entries
(draws from the caller's per-image ``torch.Generator``, like Neighbor2Neighbor), and the network is trained
Noise2Noise-style, ``mean((f(x1) - x2)^2)``. Both instances share the clean signal (similar patches) and have
independent noise, at full resolution (ZS-N2N and Neighbor2Neighbor feed half-size sub-images). With
``input: noisy`` the network sees the image itself instead of x1, ``mean((f(x) - x2)^2)``, x2 drawn from the
entries other than the pixel itself.

The bank is computed once per image from the network input of step 0 (for LAN that is the noisy image itself, since
φ starts at 0) and cached: later steps of the same image reuse it, whatever the adapter does to the input, and the
pseudo instances are gathered from the *current* adapted input (for LAN ``y + tanh φ``), so the loss works with every
adapter. The cache is keyed on the step-0 input (compared exactly), so a replay of the same image reuses it too.

Vectorised: the patch distances of a chunk of window offsets are one batched separable box filter; a running top-k
keeps the best ``bank_size`` offsets; rows are processed in strips to bound memory on large images. No Python loop
over pixels. (Exact ties, e.g. in saturated flat areas, may be broken differently on another device.)
"""
import math

import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from torch.nn import functional as F

from .loss_util import SelfSupervisedOutput, check_noisy, image_mean

__all__ = ['PixelBankLoss', 'build_pixel_bank', 'bank_values', 'bank_mean', 'sample_bank_entries', 'pick_entries']


def _window_offsets(radius, exclude):
    """Window offsets (dy, dx) with max(|dy|, |dx|) <= radius, minus those within ``exclude``, row-major."""
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
            if max(abs(dy), abs(dx)) > exclude]


def _check_bank_args(window, patch, bank_size, exclude):
    if not (isinstance(window, int) and window >= 3 and window % 2 == 1):
        raise ValueError(f'pixel bank: window must be an odd integer >= 3, got {window!r}')
    if not (isinstance(patch, int) and patch >= 1 and patch % 2 == 1):
        raise ValueError(f'pixel bank: patch must be an odd integer >= 1, got {patch!r}')
    if not (isinstance(exclude, int) and 0 <= exclude < window // 2):
        raise ValueError(f'pixel bank: exclude must be an integer in [0, window // 2), got {exclude!r} '
                         f'(window {window})')
    candidates = len(_window_offsets(window // 2, exclude))
    if not (isinstance(bank_size, int) and 1 <= bank_size <= candidates):
        raise ValueError(f'pixel bank: bank_size must be an integer in [1, {candidates}] (the window offsets outside '
                         f'the excluded centre), got {bank_size!r}')


@torch.no_grad()
def build_pixel_bank(img,
                     bank_size=8,
                     window=21,
                     patch=7,
                     exclude=2,
                     exclude_centre=True,
                     include_self=False,
                     chunk=64,
                     max_elements=2**26):
    """The pixel bank of ``img`` (B,C,H,W): flat positions (``row * W + col``) of each pixel's most similar pixels.

    Returns a ``torch.int32`` tensor B,K,H,W (K = ``bank_size``, or ``bank_size + 1`` with ``include_self``, the pixel
    itself first; int32: half the memory of int64, 36 bytes a pixel for the loss's default bank), entries sorted from
    the most similar; every entry lies inside the image, outside the pixel's ``exclude`` box and inside its
    ``window``. The image is reflect-padded for the patches at the border (replicate
    when it is too small to reflect). ``chunk`` offsets are compared at a time and rows are processed in strips
    of about ``max_elements`` distances per chunk, so memory stays bounded on large images.
    """
    _check_bank_args(window, patch, bank_size, exclude)
    b, c, h, w = img.shape
    if h * w >= 2**31:
        raise ValueError(f'pixel bank: an image of {h}x{w} pixels has more positions than int32 holds')
    radius, half = window // 2, patch // 2
    offsets = _window_offsets(radius, exclude)
    pad = radius + half
    mode = 'reflect' if pad < min(h, w) else 'replicate'
    padded = F.pad(img.float(), (pad, pad, pad, pad), mode=mode)
    device = img.device
    strip = max(1, min(h, max_elements // (chunk * b * (w + 2 * half)) - 2 * half))
    first = 1 if include_self else 0
    flat = torch.empty(b, bank_size + first, h, w, dtype=torch.int32, device=device)
    table = torch.tensor(offsets, dtype=torch.long, device=device)  # n,2
    cols = torch.arange(w, device=device).view(1, 1, 1, w)
    if include_self:
        flat[:, 0] = (torch.arange(h, device=device).view(h, 1) * w + cols[0, 0]).to(torch.int32)
    for y0 in range(0, h, strip):  # positions written strip by strip: no full-size int64 temporaries
        y1 = min(h, y0 + strip)
        idx = _bank_strip(padded, offsets, bank_size, radius, half, y0, y1, h, w, exclude_centre, chunk)  # offset ids
        rows = torch.arange(y0, y1, device=device).view(1, 1, y1 - y0, 1)
        flat[:, first:, y0:y1] = ((rows + table[idx, 0]) * w + (cols + table[idx, 1])).to(torch.int32)
    return flat


def _bank_strip(padded, offsets, bank_size, radius, half, y0, y1, h, w, exclude_centre, chunk):
    """Offset ids (B,K,y1-y0,W) of the ``bank_size`` most similar window offsets for output rows y0..y1."""
    b = padded.shape[0]
    device = padded.device
    rows = y1 - y0
    ph, pw, side = rows + 2 * half, w + 2 * half, 2 * half + 1
    # The strip with its patch halo; padded row r + radius is image row r - half.
    centre = padded[:, :, radius + y0:radius + y0 + ph, radius:radius + pw]
    img_rows = torch.arange(y0, y1, device=device).view(rows, 1, 1)
    img_cols = torch.arange(w, device=device).view(1, w, 1)
    best_val = best_id = None
    for start in range(0, len(offsets), chunk):
        part = offsets[start:start + chunk]
        sq = torch.empty(b, len(part), ph, pw, device=device)
        for i, (dy, dx) in enumerate(part):
            shifted = padded[:, :, radius + y0 + dy:radius + y0 + dy + ph, radius + dx:radius + dx + pw]
            torch.sum((shifted - centre).square_(), 1, out=sq[:, i])
        dist = F.avg_pool2d(F.avg_pool2d(sq, (1, side), stride=1), (side, 1), stride=1) * side**2  # patch sums
        if exclude_centre:
            dist = dist - sq[:, :, half:half + rows, half:half + w]
        dist = dist.permute(0, 2, 3, 1)  # B,rows,w,n: candidates last (contiguous for the sort)
        dys = torch.tensor([o[0] for o in part], device=device)
        dxs = torch.tensor([o[1] for o in part], device=device)
        inside = ((img_rows + dys >= 0) & (img_rows + dys < h) & (img_cols + dxs >= 0) & (img_cols + dxs < w))
        dist = dist.masked_fill(~inside, math.inf)
        ids = torch.arange(start, start + len(part), device=device).expand(b, rows, w, -1)
        if best_val is not None:
            dist = torch.cat([best_val, dist], 3)
            ids = torch.cat([best_id, ids], 3)
        best_val, order = torch.topk(dist, bank_size, dim=3, largest=False, sorted=True)
        best_id = ids.gather(3, order)
    return best_id.permute(0, 3, 1, 2)


def bank_values(x, bank):
    """The values of ``x`` (B,C,H,W) at the bank positions ``bank`` (B,K,H,W): B,K,C,H,W (differentiable in x)."""
    b, c, h, w = x.shape
    k = bank.shape[1]
    if tuple(bank.shape) != (b, k, h, w):
        raise ValueError(f'pixel bank of shape {tuple(bank.shape)} does not match the image {tuple(x.shape)}')
    gathered = x.reshape(b, c, h * w).gather(2, bank.long().reshape(b, 1, k * h * w).expand(b, c, k * h * w))
    return gathered.view(b, c, k, h, w).transpose(1, 2)


def bank_mean(x, bank):
    """Mean of ``x`` over each pixel's bank entries: B,C,H,W (a non-local estimate whose noise is independent of
    the pixel's own when the bank excludes its neighbourhood)."""
    return bank_values(x, bank).mean(1)


def sample_bank_entries(bank, generators=None, count=2):
    """Per pixel, ``count`` different entry numbers (0..K-1) drawn uniformly: a list of ``count`` B,1,H,W tensors.

    ``generators``: one ``torch.Generator`` per image (drawn on its device, moved to the bank's), as
    Neighbor2Neighbor's sampler; None draws from the global RNG.
    """
    b, k, h, w = bank.shape
    if count > k:
        raise ValueError(f'pixel bank: cannot draw {count} different entries from a bank of {k}')
    if generators is None:
        keys = torch.rand(b, k, h, w, device=bank.device)
    else:
        generators = list(generators)
        if len(generators) != b:
            raise ValueError(f'pixel bank sampler: got {len(generators)} generators for a batch of {b} images '
                             '(one torch.Generator per image is needed)')
        keys = torch.stack([torch.rand(k, h, w, generator=g, device=g.device).to(bank.device) for g in generators])
    picks = keys.argsort(dim=1)[:, :count]  # a uniformly random ordered selection without repetition
    return list(picks.split(1, dim=1))


def pick_entries(x, bank, entry):
    """``x`` (B,C,H,W) resampled at bank entry ``entry`` (B,1,H,W) of each pixel: one pseudo instance, B,C,H,W."""
    b, c, h, w = x.shape
    pos = bank.gather(1, entry).long().reshape(b, 1, h * w).expand(b, c, h * w)
    return x.reshape(b, c, h * w).gather(2, pos).view(b, c, h, w)


@LOSS_REGISTRY.register()
class PixelBankLoss(nn.Module):
    """Noise2Noise on two pseudo instances drawn from the image's pixel bank (see the module doc).

    Call as ``loss_fn(net, noisy, step=0, total_steps=20, generators=None)``; returns :class:`SelfSupervisedOutput`
    whose ``output`` is ``net(noisy)`` at full size, computed under ``no_grad`` (one extra forward, as Nbr2Nbr), and
    ``per_image`` each image's loss (a batch adapts as one image at a time).

    Args:
        bank_size (int): similar pixels kept per pixel. Default: 8.
        window (int): odd side of the search window. Default: 21.
        patch (int): odd side of the compared patches. Default: 7.
        exclude (int): pixels within this Chebyshev distance are never bank entries. Default: 2.
        include_self (bool): the pixel itself is its first bank entry. Default: True (as Pixel2Pixel).
        input (str): ``pseudo`` (the network sees a pseudo instance) or ``noisy`` (it sees the image). Default: pseudo.
        loss_weight (float): multiplies the loss. Default: 1.0.
    """

    def __init__(self, bank_size=8, window=21, patch=7, exclude=2, include_self=True, input='pseudo', loss_weight=1.0):
        super().__init__()
        _check_bank_args(window, patch, bank_size, exclude)
        if input not in ('pseudo', 'noisy'):
            raise ValueError(f'PixelBankLoss: input must be pseudo or noisy, got {input!r}')
        self.input = input
        self.bank_opt = dict(
            bank_size=bank_size, window=window, patch=patch, exclude=exclude, include_self=include_self)
        self.loss_weight = loss_weight
        self._key = None  # the step-0 input the cached bank was built from
        self._bank = None

    def image_bytes_per_pixel(self, channels=3):
        """Memory this loss keeps per image pixel beyond the other losses' (the int32 bank, its float32 key image
        and the two pseudo instances): for sizing tiles (:func:`lan_basicsr.models.tiling.choose_tile`)."""
        entries = self.bank_opt['bank_size'] + (1 if self.bank_opt['include_self'] else 0)
        return 4 * entries + 4 * channels * 3

    def bank(self, noisy, step=0):
        """The pixel bank of the image being adapted (built at step 0, or when no bank fits this input)."""
        fits = self._bank is not None and self._key.shape == noisy.shape and self._key.device == noisy.device
        if step == 0 and fits:
            fits = torch.equal(self._key, noisy.detach())
        if not fits:
            self._key = noisy.detach().clone()
            self._bank = build_pixel_bank(self._key, **self.bank_opt)
        return self._bank

    def forward(self, net, noisy, step=0, total_steps=20, generators=None):
        check_noisy(noisy)
        bank = self.bank(noisy, step)
        if self.input == 'noisy':
            others = bank[:, 1:] if self.bank_opt['include_self'] else bank
            target, = sample_bank_entries(others, generators, 1)
            output = net(noisy)
            per_image = self.loss_weight * image_mean((output - pick_entries(noisy, others, target)).square())
            return SelfSupervisedOutput(per_image.mean(), output, per_image)
        first, second = sample_bank_entries(bank, generators, 2)
        with torch.no_grad():
            output = net(noisy)
        x1, x2 = pick_entries(noisy, bank, first), pick_entries(noisy, bank, second)
        per_image = self.loss_weight * image_mean((net(x1) - x2).square())
        return SelfSupervisedOutput(per_image.mean(), output, per_image)
