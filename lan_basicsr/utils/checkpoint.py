"""Reading checkpoints safely and loading them strictly, with errors that say what to change.

Every network weight file goes through here (models never call ``torch.load`` themselves): ``weights_only=True``
(a checkpoint cannot run code), CPU first (works without a GPU), the usual wrappers unwrapped. A checkpoint that
does not fit the network is an error that lists the offending keys and, when the pattern is a known configuration
slip (Restormer's LayerNorm_type, Uformer's modulator or img_size, DnCNN's nb/act_mode), the option to set.
"""
import os
import re
from collections import OrderedDict

import torch
from torch import nn

from .errors import CheckpointError

__all__ = [
    'read_checkpoint', 'checkpoint_entry', 'read_state_dict', 'load_network', 'describe_load_error', 'file_sha256'
]

PARAM_KEYS = ('params', 'params_ema', 'state_dict')
_MAX_LISTED = 8


def _is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def describe_load_error(exc):
    """One line on why ``torch.load(weights_only=True)`` failed, without torch's advice to retry unsafely."""
    text = str(exc)
    if 'Weights only load failed' in text:
        boilerplate = ('Weights only load failed', 'Please file an issue', 'Check the documentation')
        lines = [ln.strip() for ln in text.splitlines()]
        detail = next((ln for ln in lines if ln and not ln.startswith(boilerplate)), '')
        detail = detail.replace('WeightsUnpickler error:', '').strip()
        if 'GLOBAL' in detail:
            return (f'it holds Python objects besides tensors ({detail}); loading those can run code, so it is '
                    'refused: use a checkpoint you made or trust, saved as plain tensors')
        return f'not a PyTorch checkpoint, or a damaged one ({detail or type(exc).__name__})'
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if 'zip archive' in first or 'central directory' in first:
        return f'a damaged or truncated file ({first}); copy it again'
    return f'{type(exc).__name__}: {first}'


_SHA256_CACHE = {}  # (path, size, mtime_ns) -> digest, per process


def file_sha256(path):
    """sha256 of a file's content (hex), cached per process by path, size and modification time."""
    import hashlib
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    _cache = _SHA256_CACHE
    if key not in _cache:
        digest = hashlib.sha256()
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                digest.update(chunk)
        _cache[key] = digest.hexdigest()
    return _cache[key]


def _first_line(exc):
    return f'{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ""}'


def read_checkpoint(path):
    """The top-level dict stored in ``path``, read without running code: ``torch.load(weights_only=True)`` on the
    CPU, or ``safetensors`` for ``.safetensors`` files. A missing or unreadable file is a :class:`CheckpointError`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'{path}: checkpoint file not found')
    if path.lower().endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise CheckpointError(f'{path}: reading .safetensors files needs the safetensors package '
                                  '(pip install safetensors)') from None
        try:
            return load_file(path, device='cpu')
        except Exception as exc:
            raise CheckpointError(f'{path}: cannot be read as a safetensors file ({_first_line(exc)})') from exc
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # any failure here means: not a loadable weights-only file
        raise CheckpointError(f'{path}: cannot be read as a weights-only PyTorch checkpoint '
                              f'({describe_load_error(exc)})') from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{path}: expected a dict of weights, found a {type(ckpt).__name__}')
    return ckpt


def checkpoint_entry(ckpt, path, param_key):
    """``ckpt[param_key]`` of a checkpoint read from ``path``; a missing entry is a :class:`CheckpointError` listing the
    top-level keys."""
    if param_key not in ckpt:
        raise CheckpointError(f'{path}: no entry "{param_key}"; top-level keys: {_listing(list(ckpt))}. '
                              f'Set param_key to one of them, or leave it unset to detect it')
    return ckpt[param_key]


def read_state_dict(path, param_key=None):
    """Return the state dict stored in ``path`` as an OrderedDict of CPU tensors, ``module.`` prefixes removed.

    ``param_key`` names the entry holding the weights; ``None`` looks for ``params``, ``params_ema``, ``state_dict``
    (in that order), then accepts a bare state dict (KAIR). Raises :class:`CheckpointError` when the file is missing
    or unreadable, or holds no state dict where expected (the message lists the keys it has).
    """
    path = os.fspath(path)
    ckpt = read_checkpoint(path)

    if param_key is not None:
        state = checkpoint_entry(ckpt, path, param_key)
        if not _is_state_dict(state):
            raise CheckpointError(f'{path}: entry "{param_key}" is not a state dict of tensors')
    else:
        key = next((k for k in PARAM_KEYS if _is_state_dict(ckpt.get(k))), None)
        if key is not None:
            state = ckpt[key]
        elif _is_state_dict(ckpt):
            state = ckpt
        else:
            raise CheckpointError(f'{path}: found no state dict (looked for {", ".join(PARAM_KEYS)} or a bare state '
                                  f'dict); top-level keys: {_listing(list(ckpt))}. Set param_key')
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v) for k, v in state.items())


def load_network(net, path, strict=True, param_key=None):
    """Load the checkpoint at ``path`` into ``net`` (a DataParallel/DDP wrapper is unwrapped) and return ``net``.

    ``strict=True`` (the default) raises :class:`CheckpointError` on any missing, unexpected or shape-mismatched key,
    naming them and, when recognised, the option that fixes it. ``strict=False`` loads the keys that match (same
    name and shape) and logs the rest as a warning. ``param_key`` is as in :func:`read_state_dict`.
    """
    state = read_state_dict(path, param_key)
    bare = net.module if isinstance(net, (nn.DataParallel, nn.parallel.DistributedDataParallel)) else net
    own = bare.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [(k, tuple(state[k].shape), tuple(own[k].shape)) for k in own
                  if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        report = _mismatch_report(type(bare).__name__, path, missing, unexpected, mismatched, state, own)
        if strict:
            raise CheckpointError(report)
        from basicsr.utils import get_root_logger
        get_root_logger().warning(f'Loading non-strictly, skipping these keys. {report}')
        state = OrderedDict((k, v) for k, v in state.items() if k in own and v.shape == own[k].shape)
    bare.load_state_dict(state, strict=strict)
    return net


def _listing(keys):
    shown = ', '.join(str(k) for k in keys[:_MAX_LISTED])
    return shown + (f', ... ({len(keys) - _MAX_LISTED} more)' if len(keys) > _MAX_LISTED else '')


def _mismatch_report(arch, path, missing, unexpected, mismatched, state, own):
    parts = [f'{path} does not match {arch}:']
    if missing:
        parts.append(f'{len(missing)} missing key(s) [{_listing(missing)}];')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected key(s) [{_listing(unexpected)}];')
    if mismatched:
        shown = [f'{k}: checkpoint {list(a)} vs network {list(b)}' for k, a, b in mismatched]
        parts.append(f'{len(mismatched)} shape mismatch(es) [{_listing(shown)}];')
    hints = _hints(missing, unexpected, mismatched, state, own)
    if hints:
        parts.append('Fix: ' + '; '.join(hints) + '.')
    else:
        parts.append('Check that network_g matches the checkpoint (type and sizes) and that param_key picks the '
                     'right weights.')
    return ' '.join(parts)


def _hints(missing, unexpected, mismatched, state, own):
    """Recognise common configuration slips from the key differences; return the options to set."""
    hints = []
    norm_bias = re.compile(r'\.norm[12]\.body\.bias$')
    if any(norm_bias.search(k) for k in missing) and not any(norm_bias.search(k) for k in state):
        hints.append('set network_g.LayerNorm_type: BiasFree (the checkpoint\'s LayerNorms have no bias, as in '
                     'Restormer\'s real_denoising.pth)')
    if any(norm_bias.search(k) for k in unexpected) and not any(norm_bias.search(k) for k in own):
        hints.append('set network_g.LayerNorm_type: WithBias (the checkpoint\'s LayerNorms have a bias)')
    conv_bias = re.compile(r'\.(qkv|qkv_dwconv|project_in|project_out|dwconv)\.bias$')
    if any(conv_bias.search(k) for k in missing) and not any(conv_bias.search(k) for k in state):
        hints.append('set network_g.bias: false (the checkpoint\'s Restormer convs have no bias)')
    if any(conv_bias.search(k) for k in unexpected) and not any(conv_bias.search(k) for k in own):
        hints.append('set network_g.bias: true (the checkpoint\'s Restormer convs have a bias)')

    if any(k.endswith('.modulator.weight') for k in unexpected):
        hints.append('set network_g.modulator: true (the checkpoint has modulators, as Uformer-B SIDD does)')
    if any(k.endswith('.modulator.weight') for k in missing) and not any('.modulator.' in k for k in state):
        hints.append('set network_g.modulator: false (the checkpoint has no modulators)')
    window_keys = ('relative_position_bias_table', 'relative_position_index')
    if any(k.endswith(window_keys) for k, _, _ in mismatched):
        hints.append('Uformer window sizes differ: set network_g.win_size and img_size to the training values (a '
                     'level whose resolution img_size / 2^level is <= win_size gets a smaller window; the SIDD '
                     'Uformer-B uses win_size 8, img_size 128)')

    dncnn = _describe_dncnn(state)
    if dncnn and (missing or unexpected or mismatched) and all(k.startswith('model.') for k in own):
        hints.append(f'the checkpoint is a DnCNN with {dncnn}: set these in network_g')
    return hints


def _describe_dncnn(state):
    """Infer DnCNN(in_nc, out_nc, nc, nb, act_mode) from a KAIR-layout state dict, or None if it is not one."""
    if not state or not all(k.startswith('model.') for k in state):
        return None
    convs = [(int(k.split('.')[1]), v) for k, v in state.items() if re.fullmatch(r'model\.\d+\.weight', k)]
    convs = sorted((i, v) for i, v in convs if v.ndim == 4)
    if len(convs) < 2:
        return None
    has_bn = any(k.endswith('.running_mean') for k in state)
    first, last = convs[0][1], convs[-1][1]
    return (f'in_nc: {first.shape[1]}, out_nc: {last.shape[0]}, nc: {first.shape[0]}, nb: {len(convs)}, '
            f'act_mode: {"BR" if has_bn else "R"}')
