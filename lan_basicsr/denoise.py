"""lan-denoise: denoise your own photos (no ground truth) by test-time adaptation, one command.

    lan-denoise -i photo.jpg                          # -> denoised/photo_lan+full.png (offset + weights, pixel bank)
    lan-denoise -i "my photos/" -o out --compare      # a folder; also out/<name>_lan+full_compare.png
    lan-denoise -i 'shots/*.png' --method full --steps 10 --opt options/lan_restormer_polyu.yml

Each photo goes through LANModel's own loop (``adapt_image``, the one ``tools/test.py`` runs), built here from the
command line instead of an option file: the network (default: the embedded model best suited to real photos,
:data:`lan_basicsr.embedded.DEFAULT_REAL_PHOTO_MODEL`), the method and loss, and tiling (``adapt.tile``) chosen per
photo from the memory available unless ``--tile`` is given.

Habits of Real-ESRGAN's ``inference_realesrgan.py``: ``-i`` files, folders (their images, not recursive) or globs;
``-o`` a folder; ``--suffix``, ``--ext``. Also: the output keeps the input's bit depth (8- or 16-bit; PNG/TIFF for 16),
EXIF orientation is applied on reading, a photo that cannot be read or adapted is reported on its own line and the
others are still done, the run ends with a summary (done / failed / skipped) and exits with 1 if any failed.
Interrupted runs continue: a photo is skipped when its output exists and ``<output>/.lan-denoise.json`` records it as
made from the same input file with the same settings (outputs are written to a temporary name and renamed, so a
killed run never leaves a half-written image behind).
"""
import argparse
import glob
import hashlib
import json
import logging
import os
import sys
import time
import zlib
from copy import deepcopy
from os import path as osp

import cv2
import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

__all__ = ['main', 'cli', 'collect_inputs', 'read_photo', 'write_image', 'output_name', 'Manifest']

# --method: what the adapt section says for it (None: the pretrained network, no adaptation)
METHODS = {
    'lan': {
        'type': 'LAN'
    },
    'lan+last': {
        'type': 'OffsetAndWeights',
        'combined': {
            'weights': 'LastLayer'
        }
    },
    'lan+full': {
        'type': 'OffsetAndWeights',
        'combined': {
            'weights': 'FullTrainable'
        }
    },
    'full': {
        'type': 'FullTrainable'
    },
    'first': {
        'type': 'FirstLayer'
    },
    'last': {
        'type': 'LastLayer'
    },
    'none': None
}
LOSSES = {'zsn2n': 'ZSN2NLoss', 'nbr2nbr': 'Nbr2NbrLoss', 'bank': 'PixelBankLoss'}
DEFAULT_METHOD = 'lan+full'  # chosen on 177 held-out PolyU tiles by a criterion declared first (docs/selection.md)
DEFAULT_LOSS = 'bank'
EXTENSIONS = ('png', 'jpg', 'jpeg', 'tif', 'tiff', 'webp', 'bmp')
SIXTEEN_BIT = ('png', 'tif', 'tiff')
MANIFEST = '.lan-denoise.json'
DEFAULT_OUTPUT = 'denoised'
DEFAULT_STEPS = 20


def build_arg_parser():
    p = argparse.ArgumentParser(
        prog='lan-denoise',
        description='Denoise your own photos by test-time adaptation (LAN, CVPR 2024): no ground truth needed.',
        epilog='Example: lan-denoise -i photos/ -o denoised --compare',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('-i', '--input', nargs='+', required=True, metavar='PATH', help='photos, folders or glob patterns')
    p.add_argument('-o', '--output', default=DEFAULT_OUTPUT, help='output folder')
    p.add_argument('--suffix', default=None, help='added to output names (default: the method; "" for none)')
    p.add_argument('--ext', default='png', choices=('auto', ) + EXTENSIONS, help='output format; auto = the input\'s')
    p.add_argument(
        '--method',
        choices=list(METHODS),
        default=None,
        help='lan (input offset), full / first / last (network weights), lan+last / lan+full (the offset and the '
        f'last layer / all weights), none (the pretrained network); default: the --opt file\'s, else {DEFAULT_METHOD}')
    p.add_argument('--steps', type=int, default=None, help=f'adaptation steps (default: {DEFAULT_STEPS})')
    p.add_argument(
        '--loss',
        default=None,
        help=f'zsn2n | nbr2nbr | bank (PixelBankLoss), or a registered loss type; default: the --opt file\'s, else '
        f'{DEFAULT_LOSS}')
    p.add_argument('--lr', type=float, default=None, help='learning rate (default: the method\'s, LAN 5e-4, else 5e-6)')
    p.add_argument('--seed', type=int, default=0, help='Nbr2Nbr masks: seed + a hash of the photo\'s name')
    p.add_argument('--tile', default='auto', help='tile size in pixels, 0 = whole image, auto = from --max-memory')
    p.add_argument('--tile-pad', default='auto', help='context around each tile (auto = the receptive field)')
    p.add_argument(
        '--max-memory',
        type=float,
        default=None,
        metavar='GB',
        help='memory for the automatic tile size (CPU: process RSS; GPU: allocated); default: what the '
        'process uses now + half of the available RAM (GPU: 80%% of the free device memory)')
    p.add_argument('--device', default='auto', help='auto | cpu | cuda | cuda:N')
    p.add_argument('--opt', default=None, help='an option file: its network_g, path.pretrain_network_g and adapt')
    p.add_argument('--model', default=None, help='an embedded model by name (default: the real-photo default)')
    p.add_argument(
        '--arch',
        default=None,
        help='a registered network type (e.g. Restormer) or a YAML file with '
        'network_g; needs --weights')
    p.add_argument('--arch-opt', nargs='+', default=[], metavar='KEY=VALUE', help='arguments of --arch')
    p.add_argument('--weights', default=None, help='checkpoint for --arch (or to replace --opt\'s)')
    p.add_argument('--compare', action='store_true', help='also save noisy | pretrained | adapted side by side')
    p.add_argument('--overwrite', action='store_true', help='redo photos already done')
    p.add_argument('--jpg-quality', type=int, default=95, help='quality of JPEG / WebP outputs')
    p.add_argument('-v', '--verbose', action='store_true', help='log the model and tile choices')
    return p


# ------------------------------------------------------------------------------------------------------- inputs/outputs
def collect_inputs(patterns):
    """``(paths, missing)``: the photos named by ``patterns`` (files; folders: their image files, sorted, not
    recursive; glob patterns), without repeats, in the order given; ``missing`` lists patterns that matched nothing."""
    from lan_basicsr.data.data_util import IMG_EXTENSIONS
    paths, missing, seen = [], [], set()

    def add(path):
        key = osp.normcase(osp.abspath(path))
        if key not in seen:
            seen.add(key)
            paths.append(path)

    for pattern in patterns:
        if osp.isdir(pattern):
            names = sorted(n for n in os.listdir(pattern) if n.lower().endswith(IMG_EXTENSIONS))
            for n in names:
                if osp.isfile(osp.join(pattern, n)):
                    add(osp.join(pattern, n))
        elif osp.isfile(pattern):
            add(pattern)
        else:
            matches = sorted(p for p in glob.glob(pattern) if osp.isfile(p)) if glob.has_magic(pattern) else []
            if not matches:
                missing.append(pattern)
            for p in matches:
                add(p)
    return paths, missing


def read_photo(path, color='rgb'):
    """``(image, bits)``: float32 HWC in [0, 1] (RGB, or one grey channel for ``color='gray'``, converted as the
    datasets do) and 8 or 16; EXIF orientation applied. A file that cannot be read is a :class:`DataError`."""
    from lan_basicsr.data.data_util import decode_raw, read_file_bytes
    from lan_basicsr.utils.errors import DataError
    img = decode_raw(read_file_bytes(path), path, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
    if img.dtype == np.uint8:
        bits = 8
    elif img.dtype == np.uint16:
        bits = 16
    else:
        raise DataError(f'{path}: unsupported sample type {img.dtype} (expected an 8- or 16-bit image)')
    img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None] if color == 'gray' else img[..., ::-1]
    img = img.astype(np.float32)
    img /= 2**bits - 1
    return img, bits


def to_integers(rgb, bits):
    """Float RGB (or grey) in [0, 1], an H,W,C array or a 1,C,H,W tensor, to the BGR (grey) HWC integers of a
    ``bits``-bit image."""
    if isinstance(rgb, torch.Tensor):
        rgb = rgb.detach()[0].clamp(0, 1).mul_(2**bits - 1).round_().permute(1, 2, 0).cpu().numpy()
    else:
        rgb = (np.clip(rgb, 0, 1) * (2**bits - 1)).round()
    return np.ascontiguousarray(rgb[..., ::-1].astype(np.uint16 if bits == 16 else np.uint8))


def write_image(path, bgr, quality=95):
    """Encode ``bgr`` (uint8 / uint16 HWC) by ``path``'s extension and write it atomically (temporary file, rename)."""
    from lan_basicsr.utils.errors import DataError
    ext = osp.splitext(path)[1].lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext in ('.jpg', '.jpeg') else []
    params = [cv2.IMWRITE_WEBP_QUALITY, quality] if ext == '.webp' else params
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:
        raise DataError(f'{path}: OpenCV cannot encode a {bgr.dtype} image as {ext}')
    tmp = osp.join(osp.dirname(path), f'.{osp.basename(path)}.{os.getpid()}.tmp')
    try:
        with open(tmp, 'wb') as f:
            f.write(buf.tobytes())
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f'{path}: cannot write ({e.strerror or e})') from None
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def output_name(path, suffix, ext):
    """``<stem>[_<suffix>].<ext>`` (``ext`` auto: the input's extension, lower case)."""
    stem, in_ext = osp.splitext(osp.basename(path))
    ext = in_ext.lstrip('.').lower() if ext == 'auto' else ext
    return f'{stem}_{suffix}.{ext}' if suffix else f'{stem}.{ext}'


def compare_name(name):
    """``<output stem>_compare.<ext>``: the side-by-side image of output ``name``."""
    stem, ext = osp.splitext(name)
    return f'{stem}_compare{ext}'


def compare_image(panels, labels):
    """Panels (BGR HWC, same size and dtype) side by side under a band with their labels."""
    h, w = panels[0].shape[:2]
    top = max(20, h // 30)
    channels = panels[0].shape[2]
    band = np.zeros((top, w * len(panels), channels), np.uint8)
    scale = top / 40
    for i, label in enumerate(labels):
        cv2.putText(band, label, (i * w + top // 3, int(top * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, ) * channels, max(1, int(2 * scale)), cv2.LINE_AA)
    if panels[0].dtype == np.uint16:
        band = band.astype(np.uint16) * 257
    return np.concatenate([band, np.concatenate(panels, axis=1)], axis=0)


def _file_id(path):
    st = os.stat(path)
    return {'path': osp.abspath(path), 'size': st.st_size, 'mtime_ns': st.st_mtime_ns}


class Manifest:
    """``<output>/.lan-denoise.json``: which output was made from which input file with which settings (for resume)."""

    def __init__(self, folder):
        self.path = osp.join(folder, MANIFEST)
        self.entries = {}
        if osp.isfile(self.path):
            try:
                with open(self.path, encoding='utf-8') as f:
                    self.entries = json.load(f).get('outputs', {})
            except (OSError, ValueError, AttributeError):
                self.entries = {}  # unreadable: every photo is redone

    def done(self, name, source, settings, folder, needed):
        """Whether output ``name`` exists, was made from ``source`` with ``settings`` and with the ``needed`` files."""
        entry = self.entries.get(name)
        if entry is None or entry.get('input') != source or entry.get('settings') != settings:
            return False
        files = entry.get('files', [])
        return set(needed) <= set(files) and all(osp.isfile(osp.join(folder, f)) for f in files)

    def record(self, name, source, settings, files):
        self.entries[name] = {'input': source, 'settings': settings, 'files': files}
        tmp = f'{self.path}.{os.getpid()}.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump({'outputs': self.entries}, f, indent=1, ensure_ascii=False, sort_keys=True)
        os.replace(tmp, self.path)

    def outputs(self, folder):
        return {osp.normcase(osp.abspath(osp.join(folder, f))) for e in self.entries.values() for f in e['files']}


# ------------------------------------------------------------------------------------------------------------- model
def _parse_value(text):
    import yaml
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _resolve(path, where):
    """``path`` as given (from the current folder), else relative to the repository root (option files' habit)."""
    from lan_basicsr.utils.errors import OptionError
    path = osp.expanduser(str(path))
    if osp.exists(path):
        return path
    root_relative = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), path)
    if not osp.isabs(path) and osp.exists(root_relative):
        return root_relative
    raise OptionError(f'{where}: {path} not found')


def network_source(args):
    """``(network_g, checkpoint path, path options, adapt options of --opt)`` from --opt / --model / --arch."""
    from lan_basicsr import embedded
    from lan_basicsr.utils.errors import OptionError
    from lan_basicsr.utils.options import load_config, load_yaml
    if sum(x is not None for x in (args.opt, args.model, args.arch)) > 1:
        raise OptionError('--opt, --model and --arch each choose the network: give one of them')
    if args.arch_opt and args.arch is None:
        raise OptionError('--arch-opt: only with --arch')
    path_opt, adapt = {}, {}
    if args.opt is not None:
        opt = load_config(_resolve(args.opt, '--opt'))
        if not isinstance(opt.get('network_g'), dict):
            raise OptionError(f'{args.opt}: no network_g section')
        network_g = opt['network_g']
        path_opt = {k: v for k, v in (opt.get('path') or {}).items() if k in ('param_key_g', 'strict_load_g')}
        weights = args.weights or (opt.get('path') or {}).get('pretrain_network_g')
        if weights is None:
            raise OptionError(f'{args.opt}: no path.pretrain_network_g; give --weights')
        weights = _resolve(weights, f'{args.opt}: path.pretrain_network_g' if not args.weights else '--weights')
        adapt = opt.get('adapt') or {}
    elif args.arch is not None:
        if args.weights is None:
            raise OptionError('--arch needs --weights (a checkpoint for that network)')
        if args.arch.lower().endswith(('.yml', '.yaml')):
            network_g = load_yaml(_resolve(args.arch, '--arch')).get('network_g')
            if not isinstance(network_g, dict):
                raise OptionError(f'{args.arch}: no network_g section')
        else:
            network_g = {'type': args.arch}
        for item in args.arch_opt:
            key, sep, value = item.partition('=')
            if not sep or not key:
                raise OptionError(f'--arch-opt {item}: expected KEY=VALUE (e.g. LayerNorm_type=BiasFree)')
            network_g[key] = _parse_value(value)
        weights = _resolve(args.weights, '--weights')
    else:
        if args.weights is not None:
            raise OptionError('--weights: give --arch (or --opt) to say which network it is for')
        weights, network_g = embedded.embedded_model(args.model)  # None: embedded.DEFAULT_REAL_PHOTO_MODEL
    from basicsr.utils.registry import ARCH_REGISTRY

    from lan_basicsr.utils.registry import check_registered
    check_registered(ARCH_REGISTRY, network_g.get('type'), 'network_g.type' if args.arch is None else '--arch')
    return network_g, weights, path_opt, adapt


def method_of(adapt):
    """The --method name of an ``adapt`` section (lan when its adapter has none)."""
    from lan_basicsr.adapters.combined_adapter import COMBINED_DEFAULTS
    for name, settings in METHODS.items():
        if settings and settings['type'] == adapt.get('type'):
            if 'combined' not in settings or settings['combined']['weights'] == (adapt.get('combined') or {}).get(
                    'weights', COMBINED_DEFAULTS['weights']):
                return name
    return 'lan'


def adapt_settings(args, opt_adapt):
    """The ``adapt`` section for LANModel: --opt's, then the command line's choices."""
    from lan_basicsr.models.lan_model import ADAPT_DEFAULTS
    from lan_basicsr.utils.errors import OptionError
    adapt = dict(ADAPT_DEFAULTS)
    adapt.update({
        k: v
        for k, v in opt_adapt.items() if k not in ('report_steps', 'save_offset', 'tile', 'batch_size')
    })  # one photo at a time
    method = args.method or (method_of(opt_adapt) if opt_adapt else DEFAULT_METHOD)
    if args.method and method_of(adapt) != method:
        adapt = {k: v for k, v in adapt.items() if k not in ('lr', 'layer', 'init_path', 'combined')}  # the other's
    steps = args.steps if args.steps is not None else opt_adapt.get('steps', DEFAULT_STEPS)
    if not isinstance(steps, int) or steps < 0:
        raise OptionError(f'--steps: expected an integer >= 0, got {steps!r}')
    adapt.update(deepcopy(METHODS[method]) or {'type': 'LAN'})
    adapt.update(steps=0 if method == 'none' else steps, seed=args.seed)
    loss = args.loss if args.loss is not None else None if 'loss' in opt_adapt else DEFAULT_LOSS
    if loss is not None:
        adapt['loss'] = {'type': LOSSES.get(loss.lower(), loss)}
    if args.lr is not None:
        adapt['lr'] = args.lr
    return method, adapt


def _device(name):
    from lan_basicsr.utils.errors import OptionError
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(f'--device {name}: expected auto, cpu, cuda or cuda:N') from None
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise OptionError(f'--device {name}: no CUDA device is available (use --device cpu)')
        if device.index is not None:
            torch.cuda.set_device(device.index)
    elif device.type != 'cpu':
        raise OptionError(f'--device {name}: expected auto, cpu, cuda or cuda:N')
    return device


def _int_or_auto(value, flag, minimum):
    from lan_basicsr.utils.errors import OptionError
    if value == 'auto':
        return None
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise OptionError(f'{flag}: expected auto or an integer >= {minimum}, got {value!r}')
    return number


def build_model(args, output):
    """LANModel for the command line's network, method and loss; tiling set up (size chosen per photo)."""
    from lan_basicsr.data.channels import network_in_channels
    from lan_basicsr.models.lan_model import LANModel
    from lan_basicsr.utils.errors import OptionError
    device = _device(args.device)
    network_g, weights, path_opt, opt_adapt = network_source(args)
    method, adapt = adapt_settings(args, opt_adapt)
    tile = _int_or_auto(args.tile, '--tile', 0)
    pad = _int_or_auto(args.tile_pad, '--tile-pad', 0)
    if tile != 0:
        adapt['tile'] = {'size': tile or 2**30, 'pad': pad}  # auto: resized per photo
    opt = {
        'name': 'lan-denoise',
        'model_type': 'LANModel',
        'num_gpu': 1 if device.type == 'cuda' else 0,
        'is_train': False,
        'dist': False,
        'rank': 0,
        'world_size': 1,
        'root_path': output,
        'network_g': network_g,
        'path': dict(path_opt, pretrain_network_g=weights, results_root=output),
        'adapt': adapt,
    }
    model = LANModel(opt)
    channels = network_in_channels(model.get_bare_model(model.net_g))
    if channels not in (None, 1, 3):
        raise OptionError(f'network_g ({network_g["type"]}) takes {channels} input channels; photos give 3 (colour) '
                          'or 1 (grey)')
    model.photo_color = 'gray' if channels == 1 else 'rgb'  # a grey network gets (and gives) grey photos
    return model, method, weights, tile


def _memory_in_use(device):
    if device.type == 'cuda':
        return torch.cuda.memory_allocated(device)
    import psutil
    return psutil.Process().memory_info().rss


def _default_budget(device):
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return _memory_in_use(device) + int(0.8 * free)
    import psutil
    return _memory_in_use(device) + psutil.virtual_memory().available // 2


class _StepBar:
    """The loss, counting its calls (one per adaptation step) on a progress bar."""

    def __init__(self, loss_fn, bar):
        self.loss_fn, self.bar = loss_fn, bar

    def __call__(self, *args, **kwargs):
        out = self.loss_fn(*args, **kwargs)
        self.bar.update(1)
        return out


def _settings(model, method, weights, args):
    adapter = model.adapter
    settings = {
        'method': method,
        'adapt': {
            k: v
            for k, v in model.adapt_opt.items() if k not in ('tile', 'report_steps', 'save_offset')
        },
        'lr': adapter.lr,
        'network_g': model.opt['network_g'],
        'weights': _file_id(weights),
        'quality': args.jpg_quality,
    }
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


# -------------------------------------------------------------------------------------------------------------- main
def _seed_index(name):
    return zlib.crc32(name.encode('utf-8')) & 0x7fffffff


def denoise_photo(model, path, out_path, args, method, tile, budget, bpp, step_bar):
    """Adapt to one photo and write its output (and comparison); returns the written file names and a note."""
    from lan_basicsr.models.tiling import IMAGE_BYTES_PER_PIXEL, choose_tile
    img, bits = read_photo(path, model.photo_color)
    h, w = img.shape[:2]
    lq = torch.from_numpy(img.transpose(2, 0, 1).copy()).unsqueeze(0)
    del img
    ext = osp.splitext(out_path)[1].lstrip('.').lower()
    out_bits = bits if ext in SIXTEEN_BIT else 8
    note = 'whole image'
    if tile is None and hasattr(model.net, 'size'):  # automatic: from the budget left now
        loss = getattr(model.loss_fn, 'loss_fn', model.loss_fn)  # (behind the step bar)
        extra = loss.image_bytes_per_pixel(lq.shape[1]) if hasattr(loss, 'image_bytes_per_pixel') else 0
        model.net.size = choose_tile(
            h,
            w,
            bpp,
            budget - _memory_in_use(model.device),
            model.net.pad,
            image_bytes_per_pixel=IMAGE_BYTES_PER_PIXEL + extra)
        note = f'tiles of {model.net.size} px, pad {model.net.pad}' if model.net.size else note
    elif tile:
        note = f'tiles of {tile} px, pad {model.net.pad}'
    pretrained = None
    if args.compare and method != 'none':  # after a reset: a network adapter's weights are the last photo's
        x = lq.to(model.device)
        model.adapter.reset(x)
        with torch.no_grad():
            pretrained = to_integers(model.net(model.adapter.adapted_input(x)), out_bits)
        del x
    step_bar.reset(total=model.steps)
    step_bar.set_description_str(osp.basename(path)[:40])
    step_bar.set_postfix_str(note)
    result = model.adapt_one({'lq': lq}, _seed_index(osp.basename(out_path)), osp.basename(path))
    if result.stopped_at is not None:
        tqdm.write(f'warning: {path}: non-finite loss at step {result.stopped_at}; saved the output of that step')
    adapted = to_integers(result.output, out_bits)
    del result
    if out_bits != bits:
        tqdm.write(f'note: {path}: 16-bit input saved as 8-bit {ext} (use --ext png or tif to keep 16 bits)')
    files = [osp.basename(out_path)]
    write_image(out_path, adapted, args.jpg_quality)
    if args.compare:
        noisy = to_integers(lq, out_bits)
        panels = [noisy, adapted] if pretrained is None else [noisy, pretrained, adapted]
        labels = ['noisy', 'pretrained'] + ([] if pretrained is None else [f'{method}, {model.steps} steps'])
        compare_path = compare_name(out_path)
        write_image(compare_path, compare_image(panels, labels), args.jpg_quality)
        files.append(osp.basename(compare_path))
    return files, f'{w}x{h}, {note}'


def _failure(path, error):
    """One line saying why ``path`` failed: a :class:`LANError` names the file itself; other errors get the path."""
    from lan_basicsr.utils.errors import LANError
    if isinstance(error, LANError):
        return str(error).splitlines()[0]
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or 'out of memory' in str(error).lower():
        return f'{path}: out of memory; give a smaller --tile or --max-memory'
    text = str(error).strip().splitlines()
    return f'{path}: {type(error).__name__}: {text[-1] if text else "(no message)"}'


def main(argv=None):
    """Run the command line; returns the exit status (0: all done, 1: some photo failed)."""
    args = build_arg_parser().parse_args(argv)
    from basicsr.utils import get_root_logger

    import lan_basicsr  # noqa: F401  (registers archs, losses, adapters, models)
    from lan_basicsr.models.tiling import activation_bytes_per_pixel
    from lan_basicsr.utils.errors import LANError, OptionError
    logger = get_root_logger()
    logger.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    paths, missing = collect_inputs(args.input)
    if not paths and not missing:
        from lan_basicsr.data.data_util import IMG_EXTENSIONS
        raise OptionError(f'-i {" ".join(args.input)}: no image files there ({", ".join(IMG_EXTENSIONS)})')
    output = osp.abspath(args.output)
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:
        raise OptionError(f'-o {args.output}: cannot create the output folder ({e.strerror or e})') from None
    manifest = Manifest(output)
    produced = manifest.outputs(output)
    paths = [p for p in paths if osp.normcase(osp.abspath(p)) not in produced]  # -o inside -i: not our outputs
    with logging_redirect_tqdm(loggers=[logger]):
        model, method, weights, tile = build_model(args, output)
    suffix = ('pretrained' if method == 'none' else method) if args.suffix is None else args.suffix
    names = {}
    for p in paths:
        name = output_name(p, suffix, args.ext)
        if name.rsplit('.', 1)[-1] not in EXTENSIONS:
            raise OptionError(f'{p}: --ext auto gives ".{name.rsplit(".", 1)[-1]}", which cannot be written; '
                              f'choose --ext {"|".join(EXTENSIONS)}')
        if name in names:
            raise OptionError(f'{names[name]} and {p} would both be written to {osp.join(output, name)}: give them '
                              'different names or run them separately')
        if osp.normcase(osp.abspath(p)) == osp.normcase(osp.join(output, name)):
            raise OptionError(f'{p}: the output would overwrite the input; give a --suffix or another -o folder')
        names[name] = p
    settings = _settings(model, method, weights, args)
    budget = int(args.max_memory * 2**30) if args.max_memory else _default_budget(model.device)
    bpp = activation_bytes_per_pixel(model.net.net) if tile is None and hasattr(model.net, 'net') else None
    step_bar = tqdm(total=model.steps, unit='step', leave=False, position=1, dynamic_ncols=True)
    model.loss_fn = _StepBar(model.loss_fn, step_bar)
    done, failed, skipped = [], list(missing), []
    start = time.time()
    with logging_redirect_tqdm(loggers=[logger]):
        for pattern in missing:
            tqdm.write(f'failed: {pattern}: no such file, folder or matching file')
        bar = tqdm(names.items(), total=len(names), unit='photo', position=0, dynamic_ncols=True, desc='photos')
        try:
            for name, path in bar:
                out_path = osp.join(output, name)
                source = _file_id(path)
                needed = [name] + ([compare_name(name)] if args.compare else [])
                if not args.overwrite and manifest.done(name, source, settings, output, needed):
                    skipped.append(path)
                    continue
                t0 = time.time()
                try:
                    files, note = denoise_photo(model, path, out_path, args, method, tile, budget, bpp, step_bar)
                except Exception as e:  # noqa: B902  (one photo's failure, whatever it is, must not stop the others)
                    tqdm.write(f'failed: {_failure(path, e)}')
                    if not isinstance(e, LANError):
                        logger.debug(f'{path}: traceback', exc_info=True)
                    failed.append(path)
                    continue
                manifest.record(name, source, settings, files)
                done.append(path)
                tqdm.write(f'done: {path} -> {out_path} ({note}; {time.time() - t0:.0f} s)')
        except KeyboardInterrupt:
            bar.close()
            step_bar.close()
            print(f'interrupted: {len(done)} done this run; run the same command again to continue', file=sys.stderr)
            return 130
        bar.close()
        step_bar.close()
    print(f'lan-denoise: {len(done)} done, {len(failed)} failed, {len(skipped)} skipped (already done) in '
          f'{time.time() - start:.0f} s -> {output}')
    for path in failed:
        print(f'  failed: {path}')
    return 1 if failed else 0


def cli(argv=None):
    """Console entry point (``lan-denoise``): a :class:`LANError` is one line on stderr and exit status 2."""
    from lan_basicsr.utils.errors import LANError
    try:
        status = main(argv)
    except LANError as e:
        print(f'error: {e}', file=sys.stderr)
        status = 2
    sys.exit(status)


if __name__ == '__main__':
    cli()
