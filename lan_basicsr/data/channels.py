"""Grey or colour: the datasets deliver the channels the network takes, checked once before the first image.

A dataset's ``color`` option (``gray`` | ``rgb``) fixes its mode; left unset, the network's input channels decide
(1 -> gray, 3 -> rgb). The pipelines call :func:`match_network_channels` once, after building the network and the
datasets and before any image is read, so a grey network on colour data given ``color: rgb`` (or the reverse) is a
one-line :class:`OptionError` instead of a shape error from inside the first convolution.
"""
from basicsr.utils import get_root_logger
from torch import nn

from lan_basicsr.utils.errors import OptionError
from .data_util import COLOR_CHANNELS, ColorMode, option_where

__all__ = ['network_in_channels', 'match_network_channels']

_COLOR_OF = {channels: color for color, channels in COLOR_CHANNELS.items()}


def network_in_channels(net):
    """Image channels ``net`` takes: its ``in_channels`` attribute if it has one (e.g. ``SpandrelNet``), else the
    input channels of its first ``Conv2d`` in registration order (DnCNN ``model.0``, Restormer ``patch_embed.proj``,
    Uformer ``input_proj``); None when neither exists."""
    value = getattr(net, 'in_channels', None)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return None


def match_network_channels(net, datasets, network='network_g'):
    """Give every dataset without a ``color`` option the network's mode; refuse an explicit mode that disagrees.

    ``datasets`` may hold any dataset; those without a colour mode (not :class:`ColorMode`) are left alone. Raises
    :class:`OptionError` naming the dataset option and the fix. Returns the network's mode (None if unknown).
    """
    channels = network_in_channels(net)
    arch = type(net).__name__ + (f': {net.arch}' if isinstance(getattr(net, 'arch', None), str) else '')
    if channels is None:
        get_root_logger().warning(f'{network} ({arch}): input channels unknown (no in_channels attribute, no Conv2d); '
                                  'the datasets keep their color option (default rgb)')
        return None
    if channels not in _COLOR_OF:
        raise OptionError(f'{network} ({arch}) takes {channels} input channels; the image datasets deliver 1 '
                          '(color: gray) or 3 (color: rgb)')
    color = _COLOR_OF[channels]
    for dataset in datasets:
        if not isinstance(dataset, ColorMode):
            continue
        where = option_where(dataset.opt, 'color')
        if dataset.color_option is None:
            dataset.color = color
            get_root_logger().info(f'{where}: {color} ({channels} channel{"s" if channels > 1 else ""}), the input '
                                   f'channels of {network} ({arch})')
        elif dataset.color_option != color:
            given = dataset.color_option
            raise OptionError(f'{where}: {given} gives {COLOR_CHANNELS[given]}-channel images but {network} ({arch}) '
                              f'takes {channels}; set color: {color}, or leave it unset to follow the network')
    return color
