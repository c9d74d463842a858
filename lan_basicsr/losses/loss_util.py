"""Helpers shared by the self-supervised losses: the return type, input checks and the odd-size rule.

Odd-size rule: both losses work on 2x2 cells, so an odd height or width leaves a last row or column that belongs to
no cell. That row/column is dropped *for the loss only* (the network still sees the whole image, and the full-size
output is handed back). This is also what the official code does implicitly: its stride-2 convolution
(ZS-N2N) and its stride-2 ``unfold`` (Neighbor2Neighbor) both ignore a ragged last row/column.
"""
from typing import NamedTuple, Optional

import torch

__all__ = ['SelfSupervisedOutput', 'check_noisy', 'even_crop', 'image_mean']


class SelfSupervisedOutput(NamedTuple):
    """What a self-supervised loss returns.

    ``loss``: scalar tensor to back-propagate (for a batch: the mean of the per-image losses). ``output``: the
    network's output on the full-size input, which the loss computes anyway; the adapter scores a step with it instead
    of running the network once more. ``per_image``: optional (B,) tensor, each image's loss computed from that image
    alone (``loss == per_image.mean()``); a loss that provides it can adapt a batch of images as if one at a time
    (LANModel back-propagates ``per_image.sum()``, so each image gets its own gradient); without it LANModel adapts one
    image at a time.
    """
    loss: torch.Tensor
    output: Optional[torch.Tensor]
    per_image: Optional[torch.Tensor] = None


def image_mean(x):
    """Mean of ``x`` (B,...) over everything but the batch dimension: (B,), in any memory format."""
    return x.mean(dim=tuple(range(1, x.dim())))


def check_noisy(noisy):
    """Raise ``ValueError`` unless ``noisy`` is a non-empty ``B,C,H,W`` tensor with at least one 2x2 cell."""
    if not isinstance(noisy, torch.Tensor):
        raise ValueError(f'self-supervised loss: expected a B,C,H,W tensor, got {type(noisy).__name__}')
    shape = tuple(noisy.shape)
    if noisy.dim() != 4:
        raise ValueError(f'self-supervised loss: expected a B,C,H,W tensor, got shape {shape}')
    b, c, h, w = shape
    if b < 1 or c < 1 or h < 2 or w < 2:
        raise ValueError(f'self-supervised loss: input of shape {shape} (H={h}, W={w}) is empty or smaller than 2x2; '
                         'the loss needs at least one 2x2 cell')


def even_crop(x):
    """Drop the last row and/or column of ``x`` (``...,H,W``) when H and/or W is odd (the odd-size rule)."""
    h, w = x.shape[-2:]
    if h % 2 == 0 and w % 2 == 0:
        return x
    return x[..., :h - h % 2, :w - w % 2]
