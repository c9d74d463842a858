"""Option files: safe YAML, ``_base_`` inheritance, ``--cfg-options`` overrides, validation.

BasicSR 1.4.2's ``parse_options`` loads YAML with a loader that can build Python objects, edits options with
``exec`` (``--force_yml``) and silently changes behaviour for names containing "debug"; we keep its option layout
but none of that. Inheritance and overrides reuse mmengine's merge logic (``_delete_: true`` replaces a section).
A key written twice in a file is an error; ``--cfg-options`` values are kept verbatim (:func:`parse_cli_value`);
every key and value is checked by :mod:`.option_schema` before anything is built. Reference: docs/options.md.
"""
import argparse
import os
import random
import re
from copy import deepcopy
from os import path as osp

import torch
import yaml
from basicsr.utils import set_random_seed
from basicsr.utils.dist_util import get_dist_info
from mmengine.config import Config

from .dist_util import init_dist
from .errors import OptionError

__all__ = [
    'load_yaml', 'load_config', 'merge_cfg_options', 'parse_options', 'validate_options', 'build_parser',
    'parse_cli_value', 'CfgOptionsAction', 'LANArgumentParser', 'OptionSources'
]

_SafeLoader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)
_MERGE_TAG = 'tag:yaml.org,2002:merge'


def _display(path):
    """A path as the user would type it: relative to the current directory unless that climbs out of it."""
    rel = osp.relpath(path)
    return path if rel.startswith('..') else rel


def _duplicate_keys(node, path):
    """Raise OptionError at the first mapping key written twice (YAML's safe loader silently keeps the last one)."""
    stack, seen = [(node, ())], set()
    while stack:
        node, keys = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    ident = (key_node.tag, key_node.value)
                    line = key_node.start_mark.line + 1
                    if ident in first:
                        where = '.'.join(str(k) for k in keys + (key_node.value, ))
                        raise OptionError(f'{_display(path)}:{line}: key "{where}" is set twice (lines {first[ident]} '
                                          f'and {line}); YAML would silently keep the second: keep one')
                    first[ident] = line
                    stack.append((value_node, keys + (key_node.value, )))
                else:
                    stack.append((value_node, keys))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, keys + (i, )) for i, item in enumerate(node.value))


def load_yaml(path):
    """Load one YAML file with the safe loader; errors name the file (and line). A key written twice is an error."""
    if osp.isdir(path):
        raise OptionError(f'{path}: is a folder; give an option file (.yml)')
    if not osp.isfile(path):
        raise OptionError(f'{path}: option file not found')
    try:
        with open(path, 'rb') as f:
            text = f.read().decode('utf-8')
    except UnicodeDecodeError as e:
        raise OptionError(f'{path}: not a UTF-8 text file (byte {e.start}); an option file is YAML text') from None
    except OSError as e:
        raise OptionError(f'{path}: cannot read the option file ({e.strerror or e})') from None
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _duplicate_keys(node, path)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        where = f':{mark.line + 1}:{mark.column + 1}' if mark is not None else ''
        problem = getattr(e, 'problem', None) or str(e).splitlines()[0]
        raise OptionError(f'{path}{where}: invalid YAML ({problem})') from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise OptionError(f'{path}: the top level must be a mapping of option keys, got {type(data).__name__}')
    return data


class OptionSources:
    """Which file (or ``--cfg-options``) set each key, so that an error names the place to fix."""

    def __init__(self, default='options'):
        self.default = default
        self.files = {}  # key tuple -> display name

    def record(self, cfg, name, prefix=()):
        for key, value in cfg.items():
            keys = prefix + (key, )
            self.files[keys] = name
            if isinstance(value, dict):
                self.record(value, name, keys)

    def record_cli(self, cfg_options):
        for key in cfg_options or {}:
            parts = tuple(key.split('.'))
            for i in range(1, len(parts) + 1):
                self.files[parts[:i]] = '--cfg-options'

    def file_of(self, keys):
        keys = tuple(keys)
        for i in range(len(keys), 0, -1):
            if keys[:i] in self.files:
                return self.files[keys[:i]]
        return self.default


def load_config(path, sources=None, _chain=()):
    """Load ``path`` and resolve its ``_base_`` file(s) (a path or a list, relative to ``path``), recursively.

    Later bases override earlier ones; the file itself overrides its bases. ``sources`` (an :class:`OptionSources`)
    learns which file set each key.
    """
    shown = path if not _chain else _display(osp.abspath(path))
    path = osp.abspath(path)
    if path in _chain:
        raise OptionError(f'{path}: circular _base_ inheritance ({" -> ".join(_chain + (path, ))})')
    cfg = load_yaml(shown)
    bases = cfg.pop('_base_', [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise OptionError(f'{shown}: _base_ must be a file path or a list of file paths')
    merged = {}
    for base in bases:
        base_path = osp.join(osp.dirname(path), base)
        if not osp.isfile(base_path):
            raise OptionError(f'{shown}: _base_ file "{base}" not found (paths are relative to {shown})')
        base_cfg = load_config(base_path, sources, _chain + (path, ))
        merged = Config._merge_a_into_b(base_cfg, merged)
    if sources is not None:
        sources.record(cfg, shown)
    return Config._merge_a_into_b(deepcopy(cfg), merged) if merged else cfg


def _plain_scalar(text):
    lowered = text.strip().lower()
    if lowered in ('true', 'false'):
        return lowered == 'true'
    if lowered in ('none', 'null', '~'):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def _from_node(node):
    if isinstance(node, yaml.ScalarNode):
        return node.value if node.style in ('"', "'") else _plain_scalar(node.value)
    if isinstance(node, yaml.SequenceNode):
        return [_from_node(n) for n in node.value]
    return {str(_from_node(k)): _from_node(v) for k, v in node.value}


def parse_cli_value(text):
    """One ``--cfg-options`` value, verbatim: spaces are kept and nothing is stripped.

    ``"..."`` or ``'...'`` around the whole value (after the shell removed its own quotes): a string as is.
    ``true``/``false``, ``null``/``none``/``~`` (any case), integers and floats (``1e-4``, ``inf``) are converted;
    ``[a, b]``, ``(a, b)`` (a tuple) and ``{k: v}`` are YAML flow collections whose items are converted alike (a
    quoted item stays a string). Anything else is the string itself, e.g. ``/my photos/x``.
    """
    if len(text) >= 2 and text[0] == text[-1] and text[0] in '"\'':
        return text[1:-1]
    if text[:1] in '[({':
        is_tuple = text.startswith('(')
        flow = '[' + text[1:-1] + ']' if is_tuple and text.endswith(')') else text
        try:
            value = _from_node(yaml.compose(flow, Loader=yaml.SafeLoader))
        except yaml.YAMLError as e:
            raise OptionError(f'--cfg-options: cannot read "{text}" as a list or mapping '
                              f'({getattr(e, "problem", None) or e}); quote it to pass a string') from None
        return tuple(value) if is_tuple else value
    return _plain_scalar(text)


_KEY = re.compile(r'[^\s=.]+(\.[^\s=.]+)*')


class CfgOptionsAction(argparse.Action):
    """``--cfg-options KEY=VALUE ...`` into ``{key: value}`` with :func:`parse_cli_value` (values kept verbatim).

    Unlike mmengine's DictAction, spaces and quotes inside a value are kept (``name=my run`` stays ``my run``) and a
    word without ``=`` (the second half of an unquoted value with a space) is an error. A key given twice: the last
    one wins (so that tools can append overrides, as tools/demo.py does).
    """

    def __call__(self, parser, namespace, values, option_string=None):
        options = dict(getattr(namespace, self.dest, None) or {})
        for i, item in enumerate(values):
            if '=' not in item:
                hint = (f'; a value with spaces must be one shell word: quote it, e.g. "{values[i - 1]} {item}"'
                        if i else '')
                raise OptionError(f'--cfg-options: "{item}" is not KEY=VALUE{hint}')
            key, text = item.split('=', 1)
            if not _KEY.fullmatch(key):
                raise OptionError(f'--cfg-options: "{key}" is not an option key (dotted names, e.g. adapt.lr)')
            options[key] = parse_cli_value(text)
        setattr(namespace, self.dest, options)


def merge_cfg_options(opt, cfg_options):
    """Apply ``{'a.b': value}`` overrides (from ``--cfg-options a.b=value``) to ``opt``; returns a new plain dict."""
    if not cfg_options:
        return opt
    cfg = Config(deepcopy(opt))
    try:
        cfg.merge_from_dict(cfg_options, allow_list_keys=True)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise OptionError(f'--cfg-options {cfg_options}: cannot apply ({e})') from None
    return cfg.to_dict()


class LANArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad command line is an OptionError (exit status 2, no usage dump)."""

    def error(self, message):
        raise OptionError(f'{self.prog}: {message} (see {self.prog} -h)')


def add_debug_argument(parser):
    parser.add_argument('--debug', action='store_true', help='show the full traceback of an error')
    return parser


_TEST_EXAMPLE = ('python tools/test.py -opt options/lan_uformer_polyu.yml --cfg-options adapt.type=FullTrainable '
                 'adapt.loss.type=Nbr2NbrLoss name=full_uformer_polyu_nbr2nbr')
_TRAIN_EXAMPLE = ('python tools/train.py -opt options/train_dncnn_sidd.yml --cfg-options train.total_iter=1000 '
                  'datasets.train.batch_size_per_gpu=8 name=train_dncnn_sidd_short')
_CFG_HELP = ('override options: KEY=VALUE, values verbatim (quote a value with spaces as one shell word: '
             '"name=my run"); true/false, null, numbers and [lists] are converted, "\'...\'" forces a string '
             '(docs/options.md)')


def build_parser(is_train):
    """The command line of tools/train.py (``is_train``) or tools/test.py; each shows only what it takes."""
    if is_train:
        parser = LANArgumentParser(
            prog='tools/train.py',
            description='Train a network (supervised pretraining or meta-training) with BasicSR\'s loop.',
            epilog=f'example:\n  {_TRAIN_EXAMPLE}\n  torchrun --nproc_per_node=2 tools/train.py -opt X.yml --launcher '
            'pytorch',
            formatter_class=argparse.RawDescriptionHelpFormatter)
    else:
        parser = LANArgumentParser(
            prog='tools/test.py',
            description='Test a network, or adapt it to every test image (model_type LANModel); results go to '
            'results/<name>/.',
            epilog=f'example:\n  {_TEST_EXAMPLE}\n  torchrun --nproc_per_node=2 tools/test.py -opt X.yml --launcher '
            'pytorch',
            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-opt', '--opt', required=True, help='path to the option YAML file')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch'],
        default='none',
        help='"pytorch" under torchrun (nccl on GPU, gloo on CPU)')
    if is_train:
        parser.add_argument('--auto_resume', action='store_true', help='resume from the latest training state')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction, default=None, metavar='KEY=VALUE', help=_CFG_HELP)
    add_debug_argument(parser)
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    return parser


def validate_options(opt, source='options', is_train=None):
    """Check every key and value against the option schema (:mod:`.option_schema`) before anything is built.

    ``source``: the option file's name, or an :class:`OptionSources` (messages then name the file that set the key).
    """
    from .option_schema import OptionContext, check_options
    sources = source if isinstance(source, OptionSources) else None
    ctx = OptionContext(opt, source=sources.default if sources else source, is_train=is_train, sources=sources)
    check_options(opt, ctx)


def parse_options(root_path, is_train, argv=None):
    """Parse the command line and the option file into BasicSR's option dict; initialise distribution and seeds.

    Returns ``(opt, args)``. Results go under ``root_path`` (``experiments/``, ``results/``, ``tb_logger/``).
    """
    args = build_parser(is_train).parse_args(argv)
    sources = OptionSources(args.opt)
    opt = load_config(args.opt, sources)
    opt = merge_cfg_options(opt, args.cfg_options)
    sources.record_cli(args.cfg_options)
    opt.setdefault('name', osp.splitext(osp.basename(args.opt))[0])
    if not isinstance(opt.get('path') or {}, dict):
        raise OptionError(f'{sources.file_of(("path", ))}: path: expected a mapping, got {opt["path"]!r}')
    opt['path'] = opt.get('path') or {}
    for key in ('resume_state', ) + tuple(k for k in opt['path'] if k.startswith('pretrain_network')):
        if isinstance(opt['path'].get(key), str):
            opt['path'][key] = osp.expanduser(opt['path'][key])
    for ds in (opt.get('datasets') or {}).values() if isinstance(opt.get('datasets'), dict) else ():
        if isinstance(ds, dict):
            for k in ds:
                if k.startswith('dataroot') and isinstance(ds[k], str):
                    ds[k] = osp.expanduser(ds[k])
    validate_options(opt, sources, is_train)

    num_gpu = opt.get('num_gpu', 'auto')
    if num_gpu == 'auto':
        num_gpu = torch.cuda.device_count()
    if not torch.cuda.is_available():
        num_gpu = 0
    opt['num_gpu'] = num_gpu

    opt['dist'] = args.launcher != 'none'
    if opt['dist']:
        init_dist(args.launcher, use_cuda=num_gpu > 0)
    opt['rank'], opt['world_size'] = get_dist_info()

    seed = opt.get('manual_seed')
    if seed is None:  # BasicSR's random seed for training; a test run is reproducible by default
        seed = random.randint(1, 10000) if is_train else 0
        opt['manual_seed'] = seed
    set_random_seed(seed + opt['rank'])

    opt['auto_resume'] = getattr(args, 'auto_resume', False)
    opt['is_train'] = is_train
    opt['root_path'] = root_path
    for phase, ds in opt['datasets'].items():
        ds['phase'] = phase.split('_')[0]
        ds.setdefault('name', phase)

    if is_train:
        experiments_root = osp.join(root_path, 'experiments', opt['name'])
        opt['path'].update(
            experiments_root=experiments_root,
            models=osp.join(experiments_root, 'models'),
            training_states=osp.join(experiments_root, 'training_states'),
            log=experiments_root,
            visualization=osp.join(experiments_root, 'visualization'))
    else:
        results_root = osp.join(root_path, 'results', opt['name'])
        opt['path'].update(
            results_root=results_root, log=results_root, visualization=osp.join(results_root, 'visualization'))
    logger_defaults = {'use_tb_logger': False, 'print_freq': 100, 'save_checkpoint_freq': 5000}
    opt['logger'] = {**logger_defaults, **(opt.get('logger') or {})}
    os.environ.setdefault('PYTHONHASHSEED', str(seed))
    return opt, args
