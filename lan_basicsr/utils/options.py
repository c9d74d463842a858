"""Option files: safe YAML, ``_base_`` inheritance, ``--cfg-options`` overrides, validation.

BasicSR 1.4.2's ``parse_options`` loads YAML with a loader that can build Python objects, edits options with
``exec`` (``--force_yml``) and silently changes behaviour for names containing "debug"; we keep its option layout
but none of that. Inheritance and overrides reuse mmengine's merge logic (``_delete_: true`` replaces a section).
"""
import argparse
import os
import random
from copy import deepcopy
from os import path as osp

import torch
import yaml
from basicsr.utils import set_random_seed
from basicsr.utils.dist_util import get_dist_info
from mmengine.config import Config, DictAction

from .dist_util import init_dist
from .errors import OptionError

__all__ = ['load_yaml', 'load_config', 'merge_cfg_options', 'parse_options', 'validate_options', 'build_parser']

_SafeLoader = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)


def load_yaml(path):
    """Load one YAML file with the safe loader; errors name the file (and line)."""
    if not osp.isfile(path):
        raise OptionError(f'{path}: option file not found')
    try:
        with open(path, encoding='utf-8') as f:
            data = yaml.load(f, Loader=_SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, 'problem_mark', None)
        where = f':{mark.line + 1}:{mark.column + 1}' if mark is not None else ''
        problem = getattr(e, 'problem', None) or str(e).splitlines()[0]
        raise OptionError(f'{path}{where}: invalid YAML ({problem})') from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise OptionError(f'{path}: the top level must be a mapping of option keys, got {type(data).__name__}')
    return data


def load_config(path, _chain=()):
    """Load ``path`` and resolve its ``_base_`` file(s) (a path or a list, relative to ``path``), recursively.

    Later bases override earlier ones; the file itself overrides its bases.
    """
    path = osp.abspath(path)
    if path in _chain:
        raise OptionError(f'{path}: circular _base_ inheritance ({" -> ".join(_chain + (path, ))})')
    cfg = load_yaml(path)
    bases = cfg.pop('_base_', [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise OptionError(f'{path}: _base_ must be a file path or a list of file paths')
    merged = {}
    for base in bases:
        base_path = osp.join(osp.dirname(path), base)
        base_cfg = load_config(base_path, _chain + (path, ))
        merged = Config._merge_a_into_b(base_cfg, merged)
    return Config._merge_a_into_b(deepcopy(cfg), merged) if merged else cfg


def merge_cfg_options(opt, cfg_options):
    """Apply ``{'a.b': value}`` overrides (from ``--cfg-options a.b=value``) to ``opt``; returns a new plain dict."""
    if not cfg_options:
        return opt
    cfg = Config(deepcopy(opt))
    try:
        cfg.merge_from_dict(cfg_options, allow_list_keys=True)
    except (KeyError, TypeError, ValueError) as e:
        raise OptionError(f'--cfg-options {cfg_options}: cannot apply ({e})') from None
    return cfg.to_dict()


def build_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('-opt', '--opt', required=True, help='path to the option YAML file')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch'],
        default='none',
        help='"pytorch" under torchrun (nccl on GPU, gloo on CPU)')
    parser.add_argument('--auto_resume', action='store_true', help='resume from the latest training state')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default=None,
        metavar='KEY=VALUE',
        help='override options, e.g. adapt.type=FullTrainable adapt.loss.type=Nbr2NbrLoss')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)
    return parser


def _registries():
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

    from .registry import ADAPTER_REGISTRY, NOISE_REGISTRY
    return dict(
        arch=ARCH_REGISTRY,
        dataset=DATASET_REGISTRY,
        loss=LOSS_REGISTRY,
        metric=METRIC_REGISTRY,
        model=MODEL_REGISTRY,
        adapter=ADAPTER_REGISTRY,
        noise=NOISE_REGISTRY)


def _check_type(registry, section, key, source):
    from .registry import check_registered
    if not isinstance(section, dict):
        raise OptionError(f'{source}: {key} must be a mapping, got {section!r}')
    check_registered(registry, section.get('type'), f'{source}: {key}.type')


REPORT_KEYS = ('label', 'train_noise')


def _check_report(report, noise_registry, source):
    """The ``report`` section (read by lan_basicsr.report, recorded by LANModel): known keys, a buildable noise."""
    from .registry import build_from_registry
    if not isinstance(report, dict):
        raise OptionError(f'{source}: report must be a mapping (keys: {", ".join(REPORT_KEYS)}), got {report!r}')
    unknown = sorted(set(report) - set(REPORT_KEYS))
    if unknown:
        raise OptionError(f'{source}: report.{unknown[0]}: unknown key (report takes: {", ".join(REPORT_KEYS)})')
    if report.get('label') is not None and not isinstance(report['label'], str):
        raise OptionError(f'{source}: report.label must be a string, got {report["label"]!r}')
    if report.get('train_noise') is not None:
        _check_type(noise_registry, report['train_noise'], 'report.train_noise', source)
        try:
            build_from_registry(noise_registry, report['train_noise'], where=f'{source}: report.train_noise')
        except (TypeError, OptionError) as e:  # unknown or invalid arguments of the noise model
            raise OptionError(f'{source}: report.train_noise: {e}') from None


def validate_options(opt, source='options'):
    """Check that every ``type`` is registered and every data/checkpoint path exists, before anything is built.

    ``source`` (the option file) prefixes every message, so the user knows which file and key to fix.
    """
    reg = _registries()
    if 'model_type' not in opt:
        raise OptionError(f'{source}: missing key model_type (registered: {", ".join(sorted(reg["model"].keys()))})')
    from .registry import check_registered
    check_registered(reg['model'], opt['model_type'], f'{source}: model_type')
    for key, section in opt.items():
        if key.startswith('network_'):
            _check_type(reg['arch'], section, key, source)
    datasets = opt.get('datasets')
    if not isinstance(datasets, dict) or not datasets:
        raise OptionError(f'{source}: missing or empty "datasets" section')
    for phase, ds in datasets.items():
        _check_type(reg['dataset'], ds, f'datasets.{phase}', source)
        for k, v in ds.items():
            if k.startswith('dataroot') and v is not None and not osp.exists(osp.expanduser(str(v))):
                raise OptionError(f'{source}: datasets.{phase}.{k}: path "{v}" does not exist; prepare the data '
                                  '(see README, Data preparation) or fix the path')
        if isinstance(ds.get('noise'), dict):
            _check_type(reg['noise'], ds['noise'], f'datasets.{phase}.noise', source)
    for k, v in (opt.get('train') or {}).items():
        if k.endswith('_opt') and isinstance(v, dict) and 'type' in v and k != 'optim_g' and not k.startswith('optim'):
            _check_type(reg['loss'], v, f'train.{k}', source)
    for name, metric in ((opt.get('val') or {}).get('metrics') or {}).items():
        _check_type(reg['metric'], metric, f'val.metrics.{name}', source)
    adapt = opt.get('adapt')
    if adapt is not None:
        _check_type(reg['adapter'], adapt, 'adapt', source)
        if 'loss' in adapt:
            _check_type(reg['loss'], adapt['loss'], 'adapt.loss', source)
    meta = opt.get('meta')
    if isinstance(meta, dict) and 'inner_loss' in meta:
        _check_type(reg['loss'], meta['inner_loss'], 'meta.inner_loss', source)
    if opt.get('report') is not None:
        _check_report(opt['report'], reg['noise'], source)
    for k, v in (opt.get('path') or {}).items():
        if v is not None and (k.startswith('pretrain_network') or k == 'resume_state') and not osp.isfile(v):
            raise OptionError(f'{source}: path.{k}: checkpoint "{v}" not found')


def parse_options(root_path, is_train, argv=None):
    """Parse the command line and the option file into BasicSR's option dict; initialise distribution and seeds.

    Returns ``(opt, args)``. Results go under ``root_path`` (``experiments/``, ``results/``, ``tb_logger/``).
    """
    args = build_parser('Train a network.' if is_train else 'Test / adapt a network.').parse_args(argv)
    opt = load_config(args.opt)
    opt = merge_cfg_options(opt, args.cfg_options)
    opt.setdefault('name', osp.splitext(osp.basename(args.opt))[0])
    opt.setdefault('path', {})
    opt['path'] = opt['path'] or {}
    for key in ('resume_state', ) + tuple(k for k in opt['path'] if k.startswith('pretrain_network')):
        if opt['path'].get(key):
            opt['path'][key] = osp.expanduser(opt['path'][key])
    for ds in (opt.get('datasets') or {}).values():
        if isinstance(ds, dict):
            for k in ds:
                if k.startswith('dataroot') and isinstance(ds[k], str):
                    ds[k] = osp.expanduser(ds[k])
    validate_options(opt, source=args.opt)

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
    if seed is None:
        seed = random.randint(1, 10000)
        opt['manual_seed'] = seed
    set_random_seed(seed + opt['rank'])

    opt['auto_resume'] = args.auto_resume
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
