"""Denoisers of architectures this package does not implement, built from their checkpoints by spandrel.

`spandrel <https://github.com/chaiNNer-org/spandrel>`_ (an optional dependency: ``pip install -e ".[spandrel]"``)
detects an architecture and its hyper-parameters from the keys and shapes of a state dict. ``SpandrelNet`` reads the
file itself without running code (``torch.load(weights_only=True)`` or safetensors; spandrel's own ``.pth`` reader
uses a restricted unpickler and runs TorchScript for ``.pt``), hands the state dict to spandrel's detection, and wraps
the model it builds so that LAN and every adapter can use it:

- the spandrel model is the submodule ``model`` (forward-order hooks find its real first/last layer); the wrapper's
  state dict has the architecture's own keys (no ``model.`` prefix), so files saved from it load into the official
  code and spandrel, and ``path.pretrain_network_g`` / ``adapt.init_path`` take files in the official layout;
- the input is padded (bottom/right: reflect, then replicate where the image is too small, as spandrel does) to the
  size the architecture needs (spandrel's ``size_requirements``: minimum side, multiple of, square) and the output is
  cropped back, differentiably; unlike spandrel's inference call it is neither run without gradients nor clamped;
- DRUNet and FDnCNN take a noise-level map as an extra input channel: a constant ``noise_level / 255`` (default 15,
  spandrel's value) is appended after padding;
- models that are not denoisers are refused: a scale other than 1 (super-resolution), face restoration, inpainting,
  different input and output channels, and the architectures whose task is not denoising (``NOT_DENOISERS``).

The main spandrel package holds only permissively licensed architectures. ``extra_arches: true`` also detects those
of ``spandrel_extra_arches`` (Restormer, MPRNet, MIRNet2, ...: non-commercial or copyleft licences), which is never
installed by this package. Supported list and licences: docs/networks.md.
"""
import os
from os import path as osp

import torch
import torch.nn.functional as F
from basicsr.utils import get_root_logger
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from lan_basicsr.utils.checkpoint import checkpoint_entry, read_checkpoint
from lan_basicsr.utils.errors import CheckpointError, OptionError
from lan_basicsr.utils.option_schema import Bool, CheckpointPath, Number, Str

__all__ = ['SpandrelNet', 'NOT_DENOISERS', 'NOISE_MAP_ARCHS', 'pad_to_requirements']

# Architectures spandrel builds as scale-1 restoration models whose task is not denoising (or whose spandrel call
# does more than model(x)): refused with the reason.
NOT_DENOISERS = {
    'FBCNN': 'JPEG artefact removal (its forward also returns a quality factor)',
    'MixDehazeNet': 'dehazing',
    'RetinexFormer': 'low-light enhancement',
    'HVICIDNet': 'low-light enhancement',
    'IPT': 'a multi-task model whose spandrel call picks a task',
    'MMRealSR': 'real-world super-resolution',
    'SAFMNBCIE': 'JPEG-compressed image super-resolution',
    'GFPGAN': 'face restoration',
    'RestoreFormer': 'face restoration',
    'CodeFormer': 'face restoration',
    'DDColor': 'colourisation',
}
# Architectures that take a noise-level map as one extra input channel (spandrel fills it with 15 / 255).
NOISE_MAP_ARCHS = ('DRUNet', 'FDnCNN')
_MAX_LISTED = 6


def _import_spandrel():
    try:
        import spandrel
    except ImportError:
        raise OptionError('network_g.type SpandrelNet needs the optional package spandrel: '
                          'pip install -e ".[spandrel]" (or pip install spandrel)') from None
    return spandrel


def _registry(spandrel, extra_arches):
    if not extra_arches:
        return spandrel.MAIN_REGISTRY
    try:
        import spandrel_extra_arches
    except ImportError:
        raise OptionError(
            'network_g.extra_arches: needs spandrel_extra_arches, which holds architectures under '
            'non-commercial or copyleft licences (check them first): pip install spandrel_extra_arches') from None
    registry = spandrel.MAIN_REGISTRY.copy()
    registry.add(*spandrel_extra_arches.EXTRA_REGISTRY, ignore_duplicates=True)
    return registry


def _state_dict(spandrel, path, param_key):
    """Weights-only read, then spandrel's own unwrapping (``params_ema``, ``params``, ``state_dict``, ``module.``)."""
    ckpt = read_checkpoint(path)
    if param_key is not None:
        ckpt = checkpoint_entry(ckpt, path, param_key)
    state = spandrel.canonicalize_state_dict(ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state or not all(torch.is_tensor(v) for v in state.values()):
        keys = ', '.join(map(str, list(ckpt)[:_MAX_LISTED])) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f'{path}: found no state dict (a mapping of names to tensors only; found: {keys}); '
                              'name the entry holding the weights with network_g.param_key')
    return dict(state)  # a fresh dict: some spandrel loaders rename keys in place


def _detect(registry, state, path, version):
    """``(architecture id, descriptor)`` of the first architecture whose detection accepts ``state``."""
    for support in registry.architectures('detection'):
        if not support.detect(state):
            continue
        arch = str(support.architecture.id)
        try:
            return arch, support.architecture.load(state)  # builds the model and loads the weights strictly
        except Exception as exc:
            why = f'{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}'
            raise CheckpointError(f'{path}: spandrel {version} detected {arch} but could not load the file strictly '
                                  f'({why[:300]})') from exc
    keys = ', '.join(list(state)[:_MAX_LISTED])
    raise CheckpointError(f'{path}: spandrel {version} recognises no architecture in these weights (keys: {keys}, ...; '
                          f'{len(state)} in all); supported architectures: docs/networks.md')


def _check_denoiser(spandrel, arch, descriptor, path):
    kind = descriptor.purpose
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise CheckpointError(f'{path}: {arch} is an {kind.lower()} model (it needs a mask); LAN adapts denoisers')
    if descriptor.scale != 1:
        raise CheckpointError(f'{path}: {arch} is a {descriptor.scale}x super-resolution model; LAN adapts denoisers, '
                              'which keep the image size (scale 1)')
    if kind == 'FaceSR' or arch in NOT_DENOISERS:
        why = NOT_DENOISERS.get(arch, 'face restoration')
        raise CheckpointError(f'{path}: {arch} is a model for {why}, not a denoiser; LAN adapts denoisers')
    if descriptor.input_channels != descriptor.output_channels:
        raise CheckpointError(f'{path}: {arch} maps {descriptor.input_channels} to {descriptor.output_channels} '
                              'channels; a denoiser returns the channels it is given')


def pad_to_requirements(x, requirements):
    """Pad ``x`` (B, C, H, W) at the bottom/right to satisfy spandrel ``SizeRequirements`` (minimum, multiple of,
    square): reflect as far as the image allows, the rest replicate (spandrel's rule); crop back with ``[..., :h, :w]``.
    """
    h, w = x.shape[-2:]
    pad_w, pad_h = requirements.get_padding(w, h)
    if not (pad_w or pad_h):
        return x
    reflect_w, reflect_h = min(pad_w, w - 1), min(pad_h, h - 1)
    if reflect_w or reflect_h:
        x = F.pad(x, (0, reflect_w, 0, reflect_h), mode='reflect')
    if pad_w > reflect_w or pad_h > reflect_h:
        x = F.pad(x, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode='replicate')
    return x


def _describe(requirements):
    parts = [f'minimum {requirements.minimum}'] if requirements.minimum else []
    if requirements.multiple_of > 1:
        parts.append(f'multiple of {requirements.multiple_of}')
    if requirements.square:
        parts.append('square')
    return ', '.join(parts) or 'none'


def _strip_inner_prefix(module, state_dict, prefix, local_metadata):
    inner = prefix + 'model.'
    for key in [k for k in state_dict if k.startswith(inner)]:  # keys stay in order: this module's are the last
        state_dict[prefix + key[len(inner):]] = state_dict.pop(key)


def _add_inner_prefix(module, state_dict, prefix, *args):
    # Every key under this module is the inner model's (the wrapper owns nothing else), even one that itself starts
    # with "model." (KAIR's DnCNN: model.0.weight).
    for key in [k for k in state_dict if k.startswith(prefix)]:
        state_dict[prefix + 'model.' + key[len(prefix):]] = state_dict.pop(key)


@ARCH_REGISTRY.register()
class SpandrelNet(nn.Module):
    """A denoiser of any architecture spandrel detects, built from its checkpoint (see the module docstring).

    Args:
        path (str): ``.pth`` / ``.ckpt`` / ``.pt`` (a pickled state dict, read weights-only) or ``.safetensors``,
            in the layout of the architecture's release (bare state dict, ``params``, ``params_ema``, ``state_dict``,
            ...).
        param_key (str | None): the entry holding the weights; None: spandrel's rules (``params_ema`` before
            ``params``).
        noise_level (float | None): DRUNet / FDnCNN only: the noise level of their input map, 0-255 units; None:
            15, spandrel's value.
        extra_arches (bool): also detect the architectures of ``spandrel_extra_arches`` (restrictive licences).

    Attributes: ``arch`` (spandrel's architecture id, e.g. ``SCUNet``), ``tags``, ``in_channels``, ``out_channels``,
    ``size_requirements`` (spandrel's ``SizeRequirements``), ``noise_level`` (None where no map is taken).
    """

    dry_build = False  # building reads the checkpoint: the option check looks at the values only
    option_values = {
        'path': CheckpointPath(null=False),
        'param_key': Str(null=True),
        'noise_level': Number(ge=0, null=True),
        'extra_arches': Bool(),
    }

    def __init__(self, path, param_key=None, noise_level=None, extra_arches=False):
        super().__init__()
        spandrel = _import_spandrel()
        path = osp.expanduser(os.fspath(path))
        state = _state_dict(spandrel, path, param_key)
        arch, descriptor = _detect(_registry(spandrel, extra_arches), state, path, spandrel.__version__)
        if arch == 'DnCNN' and 'FDnCNN' in descriptor.tags:
            arch = 'FDnCNN'
        _check_denoiser(spandrel, arch, descriptor, path)
        if arch in NOISE_MAP_ARCHS:
            noise_level = 15. if noise_level is None else noise_level
            if isinstance(noise_level, bool) or not isinstance(noise_level, (int, float)) or not noise_level >= 0:
                raise OptionError(f'network_g.noise_level: expected a number >= 0 (0-255 units), got {noise_level!r}')
            noise_level = float(noise_level)
        elif noise_level is not None:
            raise OptionError(f'network_g.noise_level: {arch} ({path}) takes no noise-level map; remove the option')
        self.model = descriptor.model
        self.arch = arch
        self.tags = list(descriptor.tags)
        self.in_channels = descriptor.input_channels
        self.out_channels = descriptor.output_channels
        self.size_requirements = descriptor.size_requirements
        self.noise_level = noise_level
        self.path = path
        self.register_state_dict_post_hook(_strip_inner_prefix)
        self.register_load_state_dict_pre_hook(_add_inner_prefix)
        params = sum(p.numel() for p in self.model.parameters())
        get_root_logger().info(f'SpandrelNet: {path} is {arch} ({", ".join(self.tags) or "no tags"}; spandrel '
                               f'{spandrel.__version__}), {self.in_channels} channels, {params:,} parameters, size '
                               f'requirements: {_describe(self.size_requirements)}' +
                               ('' if noise_level is None else f', noise level {noise_level:g}'))
        if arch == 'Uformer':
            get_root_logger().warning(
                'SpandrelNet: spandrel builds Uformer with img_size 256 (it cannot be read from the weights); for '
                'checkpoints trained at another size (the official SIDD Uformer-B: 128) the window shifts differ. '
                'Use network_g type Uformer (options/_base_/networks/uformer_b_sidd.yml) for those')

    def forward(self, x):
        h, w = x.shape[-2:]
        x = pad_to_requirements(x, self.size_requirements)
        if self.noise_level is not None:
            b, _, ph, pw = x.shape
            x = torch.cat([x, x.new_full((b, 1, ph, pw), self.noise_level / 255.)], dim=1)
        out = self.model(x)
        return out[..., :h, :w]

    def extra_repr(self):
        return f'arch={self.arch}, path={self.path!r}'
