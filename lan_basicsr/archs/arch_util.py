"""Helpers shared by the denoisers: padding to the sizes an architecture needs, and activation checkpointing.

Every arch accepts any H, W >= 1 and pads internally. The padding must be differentiable with respect to the input
(LAN optimises an offset added to the input), so it is done with ``F.pad`` and cropped back by slicing.
"""
import math

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ['pad_to_multiple', 'pad_to_centred_square', 'run_blocks']


def pad_to_multiple(x, multiple, mode='reflect'):
    """Pad ``x`` (B, C, H, W) at the bottom and right so that H and W are multiples of ``multiple``.

    Returns the padded tensor; crop back with ``out[..., :h, :w]``. ``mode`` is an ``F.pad`` mode. Reflect padding
    needs the pad to be smaller than the side it mirrors; for inputs too small for that (e.g. 3x3 padded to 8x8)
    the pad falls back to 'replicate', the nearest reflect-like mode that is defined for any size.
    """
    h, w = x.shape[-2:]
    pad_h = (multiple - h % multiple) % multiple
    pad_w = (multiple - w % multiple) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == 'reflect' and (pad_h >= h or pad_w >= w):
        mode = 'replicate'
    if mode == 'constant':
        return F.pad(x, (0, pad_w, 0, pad_h), mode='constant', value=0.)
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def pad_to_centred_square(x, multiple):
    """Zero-pad ``x`` (B, C, H, W) to a centred S x S square, S = the smallest multiple of ``multiple`` >= max(H, W).

    This is what Uformer's official test (``expand2square``) does. Returns ``(padded, (top, left))``; crop back with
    ``out[..., top:top + h, left:left + w]``.
    """
    h, w = x.shape[-2:]
    side = int(math.ceil(max(h, w) / multiple)) * multiple
    top, left = (side - h) // 2, (side - w) // 2
    if side == h and side == w:
        return x, (0, 0)
    return F.pad(x, (left, side - w - left, top, side - h - top), mode='constant', value=0.), (top, left)


def run_blocks(blocks, x, *args, use_checkpoint=False):
    """Apply ``blocks`` in order as ``x = blk(x, *args)``, optionally with activation checkpointing.

    Checkpointing (non-reentrant, so it works when only the input or only the weights require grad) trades a second
    forward per block for not storing its activations: memory for large images. It is skipped when no gradient is
    being recorded (``torch.no_grad``), where it would only cost time.
    """
    use_checkpoint = use_checkpoint and torch.is_grad_enabled()
    for blk in blocks:
        if use_checkpoint:
            x = checkpoint(blk, x, *args, use_reentrant=False)
        else:
            x = blk(x, *args)
    return x
