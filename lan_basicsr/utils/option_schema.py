"""The option schema: which keys every section takes and which values they hold, checked before anything is built.

A misspelled key (``adapt.stpes``, a top-level ``adpat:``), a key a class does not take (``network_g.nbb``), an
out-of-range or non-finite number (``adapt.lr: .inf``) or optimiser arguments torch rejects (``betas: [2, 3]``) are
an :class:`~lan_basicsr.utils.errors.OptionError` naming the file, the key, the section and the closest valid key,
raised by :func:`check_options` before a network, a dataset or a results folder exists.

Where each section's keys come from (how a new option or class hooks in: ``docs/options.md``):

- BasicSR's own layout (the top level, ``path``, ``train``, ``val``, ``logger``, ``dist_params``, a dataset's
  loader keys): the tables in this module.
- A section that names a registered class with ``type`` (``network_*``, ``datasets.*``, ``train.*_opt``,
  ``val.metrics.*``, ``datasets.*.noise``, ``adapt``, ``adapt.loss``, ``meta.inner_loss``): the arguments of that
  class, read from its signature with :mod:`inspect`, so a new class or a new constructor argument needs no edit
  here. Dataset classes take one ``opt`` dict instead: they list their keys in a class attribute ``option_keys``
  (key -> :class:`Spec`); BasicSR's datasets are listed in :data:`BASICSR_DATASET_KEYS`.
- A model's own section (LANModel's ``adapt``, MetaDenoiseModel's ``meta``, DenoiseModel's additions to
  ``train``): the model's classmethod ``option_sections()`` (subclasses extend their parent's).
- A section read by a tool, not by a model (``demo``): :func:`register_section`.
- Values: a :class:`Spec` per key where a range or a type is known; every number anywhere must be finite.
"""
import difflib
import inspect
import math
import re
from os import path as osp

from .errors import OptionError

__all__ = [
    'Spec', 'Value', 'Int', 'Number', 'Bool', 'Str', 'AnyValue', 'OneOf', 'ListOf', 'Section', 'MapOf', 'Registered',
    'Arguments', 'TrainOnly', 'DirPath', 'CheckpointPath', 'TorchOptimizer', 'register_section', 'check_options',
    'accepted_arguments', 'dotted', 'OptionContext', 'check_optimizer_arguments', 'class_option_values', 'IO_BACKEND',
    'first_line'
]


def dotted(keys):
    """``('datasets', 'test', 'crop')`` -> ``datasets.test.crop``; list indices as ``[i]``."""
    out = ''
    for k in keys:
        out += f'[{k}]' if isinstance(k, int) else (f'.{k}' if out else str(k))
    return out or 'top level'


class OptionContext:
    """What the checks need besides a value: the whole options, the phase of the run, and where each key was set."""

    def __init__(self, opt, source='options', is_train=None, sources=None):
        self.opt = opt
        self.source = source
        self.is_train = is_train
        self.sources = sources  # OptionSources or None

    def where(self, keys):
        """``file: key.path`` for messages; the file is the one that set the key (a _base_ file, or --cfg-options)."""
        source = self.sources.file_of(keys) if self.sources is not None else self.source
        return f'{source}: {dotted(keys)}'

    def fail(self, keys, message):
        raise OptionError(f'{self.where(keys)}: {message}')


def _closest(key, known):
    """`` (did you mean "x"?)`` for the known name closest to ``key`` (case-insensitive), or nothing."""
    by_lower = {str(k).lower(): str(k) for k in known}
    match = difflib.get_close_matches(str(key).lower(), list(by_lower), n=1, cutoff=0.6)
    return f' (did you mean "{by_lower[match[0]]}"?)' if match else ''


def _listing(names, limit=30):
    names = [str(n) for n in names]
    return ', '.join(names[:limit]) + (f', ... ({len(names) - limit} more)' if len(names) > limit else '')


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


class Spec:
    """A rule for one option value; ``check`` raises OptionError through ``ctx.fail``."""

    what = 'a value'
    null = False

    def check(self, value, keys, ctx):
        raise NotImplementedError

    def is_mapping(self, value, keys, ctx, null=None):
        """True for a mapping to check, False for an allowed null (``null``, default ``self.null``); else the error."""
        if value is None and (self.null if null is None else null):
            return False
        if not isinstance(value, dict):
            ctx.fail(keys, f'expected {self.what}, got {_show(value)}')
        return True


class AnyValue(Spec):
    what = 'any value'

    def check(self, value, keys, ctx):
        pass


class Value(Spec):
    """A scalar of one of ``types`` (``int`` never accepts a bool; ``float`` accepts ints), within the bounds given,
    among ``choices`` if given; ``None`` only with ``null=True``."""

    def __init__(self, types, ge=None, gt=None, le=None, lt=None, choices=None, null=False, what=None, check=None):
        self.types = types if isinstance(types, tuple) else (types, )
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt
        self.choices, self.null, self.extra_check = choices, null, check
        self.what = what or self._describe()

    def _describe(self):
        names = {int: 'an integer', float: 'a number', bool: 'true or false', str: 'a string'}
        base = ' or '.join(names.get(t, t.__name__) for t in self.types)
        bounds = [
            f'{op} {v}' for op, v in (('>=', self.ge), ('>', self.gt), ('<=', self.le), ('<', self.lt)) if v is not None
        ]
        if bounds:
            base += ' ' + ' and '.join(bounds)
        if self.choices:
            base = 'one of ' + ', '.join(str(c) for c in self.choices)
        return base + (' (or null)' if self.null else '')

    def _type_ok(self, value):
        if isinstance(value, bool):
            return bool in self.types
        if isinstance(value, int) and (int in self.types or float in self.types):
            return True
        return isinstance(value, tuple(t for t in self.types if t is not int))

    def check(self, value, keys, ctx):
        if value is None:
            if not self.null:
                ctx.fail(keys, f'expected {self.what}, got null')
            return
        if not self._type_ok(value):
            hint = ''
            if str in self.types and isinstance(value, (bool, int, float)):  # e.g. --cfg-options name=007
                hint = ' (on the command line, quote a string that looks like a number: name=\'"007"\')'
            ctx.fail(keys, f'expected {self.what}, got {_show(value)}{hint}')
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                ctx.fail(keys, f'{value} is not a finite number; expected {self.what}')
            failed = ((self.ge is not None and value < self.ge) or (self.gt is not None and value <= self.gt)
                      or (self.le is not None and value > self.le) or (self.lt is not None and value >= self.lt))
            if failed:
                ctx.fail(keys, f'{value} is out of range; expected {self.what}')
        if self.choices is not None and value not in self.choices:
            ctx.fail(
                keys, f'{_show(value)} is not one of {", ".join(str(c) for c in self.choices)}'
                f'{_closest(value, self.choices)}')
        if self.extra_check is not None:
            message = self.extra_check(value)
            if message:
                ctx.fail(keys, message)


def Int(**kw):  # noqa: N802  (spec constructors read like types)
    return Value(int, **kw)


def Number(**kw):  # noqa: N802
    return Value(float, **kw)


def Bool(**kw):  # noqa: N802
    return Value(bool, **kw)


def Str(**kw):  # noqa: N802
    return Value(str, **kw)


class OneOf(Spec):
    """The first of ``specs`` that accepts the value."""

    def __init__(self, *specs, what=None):
        self.specs = specs
        self.what = what or ' or '.join(s.what for s in specs)

    def check(self, value, keys, ctx):
        for spec in self.specs:
            try:
                spec.check(value, keys, ctx)
                return
            except OptionError:
                continue
        ctx.fail(keys, f'expected {self.what}, got {_show(value)}')


class ListOf(Spec):
    """A list (or tuple) of items matching ``item``; ``length`` fixes its length, ``min_len`` bounds it."""

    def __init__(self, item, length=None, min_len=0, null=False, what=None):
        self.item, self.length, self.min_len, self.null = item, length, min_len, null
        size = f'{length} ' if length else ''
        self.what = what or f'a list of {size}{item.what}' + (' (or null)' if null else '')

    def check(self, value, keys, ctx):
        if value is None and self.null:
            return
        if not isinstance(value, (list, tuple)):
            ctx.fail(keys, f'expected {self.what}, got {_show(value)}')
        if (self.length is not None and len(value) != self.length) or len(value) < self.min_len:
            ctx.fail(keys, f'expected {self.what}, got {len(value)} item(s): {_show(value)}')
        for i, item in enumerate(value):
            self.item.check(item, keys + (i, ), ctx)


class Section(Spec):
    """A mapping with known keys (``keys``: name -> Spec; ``patterns``: [(regex, Spec)]). An unknown key is an error
    naming the closest known one; ``tool_keys`` are set by the tools and refused in files; ``required`` must be
    present; ``open`` accepts any further key (a section whose keys cannot be known)."""

    def __init__(self, keys=None, patterns=(), tool_keys=(), required=(), open=False, null=False, what=None):
        self.keys = dict(keys or {})
        self.patterns = [(re.compile(p), s) for p, s in patterns]
        self.tool_keys, self.required, self.open, self.null = tuple(tool_keys), required, open, null
        self.what = what or 'a mapping of options'

    def extended(self, other):
        """A new Section with ``other``'s keys and patterns added (``other`` wins on a key both have)."""
        keys = {**self.keys, **other.keys}
        tool_keys, required = self.tool_keys + other.tool_keys, tuple(self.required) + tuple(other.required)
        out = Section(
            keys,
            tool_keys=tool_keys,
            required=required,
            open=self.open or other.open,
            null=self.null or other.null,
            what=self.what)
        out.patterns = self.patterns + other.patterns
        return out

    def lookup(self, key):
        key = str(key)
        if key in self.keys:
            return self.keys[key]
        return next((spec for pattern, spec in self.patterns if pattern.fullmatch(key)), None)

    def known(self):
        return list(self.keys) + [p.pattern.replace('\\w+', '<name>').replace('.*', '<name>') for p, _ in self.patterns]

    def unknown_key(self, key, keys, ctx, known=None):
        known = self.known() if known is None else known
        section = f'section "{dotted(keys)}"' if keys else 'the top level'
        ctx.fail(keys + (key, ), f'unknown key in {section}{_closest(key, known)}; it takes: {_listing(known)}')

    def check(self, value, keys, ctx):
        if not self.is_mapping(value, keys, ctx):
            return
        for key, item in value.items():
            if key in self.tool_keys:
                ctx.fail(keys + (key, ), 'is set by the tool, not by option files; remove it')
            spec = self.lookup(key)
            if spec is None:
                if self.open:
                    continue
                self.unknown_key(key, keys, ctx)
            spec.check(item, keys + (key, ), ctx)
        for key in self.required:
            if key not in value:
                ctx.fail(keys + (key, ), f'missing (required in {dotted(keys)})')


class MapOf(Spec):
    """A mapping of user-chosen names (e.g. ``val.metrics``) to values matching ``item``."""

    def __init__(self, item, key=None, null=False, what=None):
        self.item, self.key, self.null = item, key, null
        self.what = what or f'a mapping of names to {item.what}'

    def check(self, value, keys, ctx):
        if not self.is_mapping(value, keys, ctx):
            return
        for name, item in value.items():
            if self.key is not None:
                self.key.check(name, keys + (name, ), ctx)
            self.item.check(item, keys + (name, ), ctx)


def accepted_arguments(obj, skip=()):
    """``(parameters, open)`` of a class or function: ``parameters`` maps the keyword arguments it takes to their
    ``inspect.Parameter``; ``open`` is True when a ``**kwargs`` is passed on to something we cannot see.

    For a class, a ``**kwargs`` forwarded to the parent's ``__init__`` is followed up the MRO (stopping at
    ``torch.nn.Module`` and ``object``); a function's ``**kwargs`` is taken as a sink (BasicSR's metrics ignore it).
    """
    params, open_ = {}, False
    if inspect.isclass(obj):
        chain = []
        for klass in obj.__mro__:
            if klass is object or klass.__module__.startswith('torch.nn'):
                break
            if '__init__' in vars(klass):
                chain.append(klass.__init__)
                sig = inspect.signature(klass.__init__)
                if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
                    break
        else:
            open_ = True
        for init in reversed(chain):
            for name, p in list(inspect.signature(init).parameters.items())[1:]:  # drop self
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                    params[name] = p
    else:
        for name, p in inspect.signature(obj).parameters.items():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                params[name] = p
    return {k: v for k, v in params.items() if k not in skip}, open_


class Arguments(Section):
    """A mapping whose keys are the keyword arguments of ``fn`` (minus ``skip``), e.g. ``train.mixup`` -> Mixup."""

    def __init__(self, fn, skip=(), values=None, null=False, what=None):
        params, _ = accepted_arguments(fn, skip)
        values = values or {}
        super().__init__({k: values.get(k, AnyValue())
                          for k in params},
                         required=[k for k, p in params.items() if p.default is p.empty],
                         null=null,
                         what=what or f'a mapping of {getattr(fn, "__name__", "")} arguments')


def _registry(kind):
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

    from .registry import ADAPTER_REGISTRY, NOISE_REGISTRY, SELECT_REGISTRY
    return dict(
        arch=ARCH_REGISTRY,
        dataset=DATASET_REGISTRY,
        loss=LOSS_REGISTRY,
        metric=METRIC_REGISTRY,
        model=MODEL_REGISTRY,
        adapter=ADAPTER_REGISTRY,
        noise=NOISE_REGISTRY,
        select=SELECT_REGISTRY)[kind]


def first_line(exc):
    text = str(exc).strip().splitlines()
    return f'{type(exc).__name__}: {text[0]}' if text else type(exc).__name__


# Exceptions a constructor raises for bad arguments (a dry build turns them into a one-line OptionError).
ARGUMENT_ERRORS = (TypeError, ValueError, IndexError, KeyError, AssertionError, ZeroDivisionError, AttributeError)


def _dry_build_cheap(cls, kwargs, keys, ctx):
    try:
        cls(**kwargs)
    except OptionError as e:
        ctx.fail(keys, str(e))
    except ARGUMENT_ERRORS as e:
        ctx.fail(keys, f'{cls.__name__} rejects these options ({first_line(e)})')


def _dry_build_meta(cls, kwargs, keys, ctx):
    """Build a network on torch's ``meta`` device: no memory, milliseconds, but every constructor check runs."""
    import torch
    try:
        with torch.device('meta'):
            cls(**kwargs)
    except OptionError as e:
        ctx.fail(keys, str(e))
    except ARGUMENT_ERRORS as e:
        ctx.fail(keys, f'{cls.__name__} rejects these options ({first_line(e)})')
    except Exception:  # noqa: BLE001  (a meta-device limitation, not the user's: the real build will tell)
        pass


# BasicSR's losses that are cheap to build (no weight download); the project's own classes are dry-built unless
# they set ``dry_build = False``.
_CHEAP_BASICSR_LOSSES = ('L1Loss', 'MSELoss', 'CharbonnierLoss', 'WeightedTVLoss', 'GANLoss', 'MultiScaleGANLoss')


def _dry_build_for(kind, cls):
    """How a registered class is test-built at validation time (None: only its keys are checked)."""
    own = cls.__module__.startswith('lan_basicsr') and getattr(cls, 'dry_build', True)
    if kind == 'arch' and own:  # e.g. SpandrelNet sets dry_build = False: building it reads its checkpoint
        return _dry_build_meta
    if kind in ('noise', 'select') and own:
        return _dry_build_cheap
    if kind == 'loss' and (own or cls.__name__ in _CHEAP_BASICSR_LOSSES):
        return _dry_build_cheap
    return None


def class_option_values(cls):
    """A registered class's value rules for its arguments: ``option_values`` (name -> Spec), merged along the MRO."""
    values = {}
    for klass in reversed(getattr(cls, '__mro__', ())):
        values.update(vars(klass).get('option_values', {}))
    return values


class Registered(Spec):
    """``{type: <registered name>, **arguments}``: the arguments are those of the class's signature (minus ``skip``),
    values checked by ``values`` and the class's own ``option_values`` (name -> Spec) and, for cheap classes, by
    building one (see :func:`_dry_build_for`). ``provided``: arguments the caller passes itself."""

    def __init__(self, kind, skip=(), values=None, provided=(), null=False, default_type=None, what=None):
        self.kind, self.skip, self.values, self.provided = kind, tuple(skip), dict(values or {}), tuple(provided)
        self.null, self.default_type = null, default_type
        self.what = what or f'a mapping {{type: <registered {kind}>, ...its arguments}}'

    def resolve(self, value, keys, ctx):
        from .registry import check_registered
        registry = _registry(self.kind)
        name = value.get('type', self.default_type)
        try:
            check_registered(registry, name, dotted(keys + ('type', )))
        except OptionError as e:
            known = sorted(registry.keys())
            ctx.fail(keys + ('type', ), str(e).split(': ', 1)[1] + _closest(name, known))
        return registry.get(name)

    def check(self, value, keys, ctx):
        if not self.is_mapping(value, keys, ctx):
            return
        cls = self.resolve(value, keys, ctx)
        params, open_ = accepted_arguments(cls, self.skip)
        values = {**self.values, **class_option_values(cls)}
        kwargs = {k: v for k, v in value.items() if k != 'type'}
        for key, item in kwargs.items():
            if key not in params and not open_:
                known = ['type'] + list(params)
                ctx.fail(
                    keys + (key, ), f'unknown key: {cls.__name__} ({self.kind} "{value.get("type")}") takes no '
                    f'argument "{key}"{_closest(key, known)}; it takes: {_listing(known)} (changing the type with '
                    '--cfg-options keeps the option file\'s other keys; to replace the whole block: '
                    f'"{dotted(keys)}={{_delete_: true, type: ...}}")')
            if key in values:
                values[key].check(item, keys + (key, ), ctx)
        missing = [k for k, p in params.items() if p.default is p.empty and k not in kwargs and k not in self.provided]
        if missing:
            ctx.fail(keys, f'{cls.__name__} needs {", ".join(missing)} (missing here)')
        build = _dry_build_for(self.kind, cls)
        if build is not None:
            build(cls, kwargs, keys, ctx)


class TrainOnly(Spec):
    """A dataset key read only in the training phase; elsewhere it would be silently ignored, so it is refused."""

    def __init__(self, spec):
        self.spec, self.what = spec, spec.what

    def check(self, value, keys, ctx):
        phase = str(keys[1]).split('_')[0] if len(keys) > 1 and keys[0] == 'datasets' else 'train'
        if phase != 'train':
            ctx.fail(keys, f'only read by training datasets (phase "train"); datasets.{keys[1]} ignores it, remove it')
        self.spec.check(value, keys, ctx)


class DirPath(Value):
    """An existing folder (an image folder or an ``.lmdb`` folder). A missing official dataset names its source."""

    def __init__(self, null=False):
        super().__init__(str, null=null, what='a folder path')

    def check(self, value, keys, ctx):
        super().check(value, keys, ctx)
        if value is None:
            return
        path = osp.expanduser(value)
        if not osp.exists(path):
            from .sources import dataset_hint
            ctx.fail(keys, f'path "{value}" does not exist; {dataset_hint(value)}')
        if not osp.isdir(path):
            ctx.fail(
                keys, f'"{value}" is a file, not a folder; give the folder that holds the images (or the '
                '.lmdb folder)')


class CheckpointPath(Value):
    """An existing checkpoint file. A missing official checkpoint names the page it is released on."""

    def __init__(self, null=True):
        super().__init__(str, null=null, what='a checkpoint file path')

    def check(self, value, keys, ctx):
        super().check(value, keys, ctx)
        if value is None:
            return
        path = osp.expanduser(value)
        if osp.isdir(path):
            ctx.fail(keys, f'"{value}" is a folder; give the checkpoint file (.pth)')
        if not osp.isfile(path):
            from .sources import checkpoint_hint
            ctx.fail(keys, f'checkpoint "{value}" not found; {checkpoint_hint(value)}')


def check_optimizer_arguments(optim_cls, lr, kwargs):
    """Build ``optim_cls`` on a dummy tensor; return torch's complaint (one line) or None. Cheap: one tensor."""
    import torch
    try:
        optim_cls([torch.zeros(1, requires_grad=True)], lr=lr, **kwargs)
    except (TypeError, ValueError, RuntimeError) as e:
        return first_line(e)
    return None


class TorchOptimizer(Spec):
    """``{type: <torch.optim class>, **arguments}`` (``train.optim_g``, ``adapt.optim``); torch's own argument checks
    run on a dummy tensor. ``lr``: required (``train.optim_*``) or refused (``adapt.optim``: set adapt.lr)."""

    what = 'a mapping {type: <torch.optim optimiser, e.g. Adam>, ...its arguments}'

    def __init__(self, lr='required', default_type=None, null=False):
        self.lr, self.default_type, self.null = lr, default_type, null

    def check(self, value, keys, ctx):
        import torch
        if value is None and self.null:
            return
        if not isinstance(value, dict):
            ctx.fail(keys, f'expected {self.what}, got {_show(value)}')
        name = value.get('type', self.default_type)
        names = [
            n for n in dir(torch.optim) if isinstance(getattr(torch.optim, n), type)
            and issubclass(getattr(torch.optim, n), torch.optim.Optimizer) and n != 'Optimizer'
        ]
        if name not in names:
            ctx.fail(keys + ('type', ), f'"{name}" is not a torch.optim optimiser{_closest(name, names)}; e.g. Adam, '
                     'AdamW, SGD')
        optim_cls = getattr(torch.optim, name)
        params, _ = accepted_arguments(optim_cls, skip=('params', ))
        kwargs = {k: v for k, v in value.items() if k != 'type'}
        if 'lr' in kwargs and self.lr == 'refused':
            ctx.fail(keys + ('lr', ), 'set the learning rate with adapt.lr (null = the adapter default), not here')
        for key in kwargs:
            if key not in params:
                known = ['type'] + [p for p in params if not (p == 'lr' and self.lr == 'refused')]
                ctx.fail(
                    keys + (key, ), f'unknown key: torch.optim.{name} takes no argument "{key}"'
                    f'{_closest(key, known)}; it takes: {_listing(known)}')
        if 'lr' not in kwargs and self.lr == 'required':
            ctx.fail(keys + ('lr', ), 'missing: the learning rate of the optimiser')
        lr = kwargs.pop('lr', 1e-3)
        Number(gt=0).check(lr, keys + ('lr', ), ctx)
        problem = check_optimizer_arguments(optim_cls, lr, kwargs)
        if problem:
            ctx.fail(keys, f'torch.optim.{name} rejects these arguments ({problem})')


# ----------------------------------------------------------------------------------------------------------------------
# BasicSR's option layout


def _name_check(value):
    if not value or value in ('.', '..') or '/' in value or '\\' in value or value != value.strip():
        return (f'"{value}" cannot name a folder (results/<name>/, experiments/<name>/): use letters, digits, '
                '_ - . and spaces, no slashes')
    return None


# Keys BasicSR's build_dataloader reads; in a test or val phase it uses batch 1 and no workers, so there they are
# ignored and refused (TrainOnly).
LOADER_KEYS = {
    'name': Str(),
    'type': Str(),
    'batch_size_per_gpu': TrainOnly(Int(ge=1)),
    'num_worker_per_gpu': TrainOnly(Int(ge=0)),
    'use_shuffle': TrainOnly(Bool()),
    'dataset_enlarge_ratio': TrainOnly(Number(ge=1)),
    'prefetch_mode': TrainOnly(Str(choices=('cpu', 'cuda'), null=True)),
    'pin_memory': TrainOnly(Bool()),
    'persistent_workers': TrainOnly(Bool()),
    'num_prefetch_queue': TrainOnly(Int(ge=1)),
}

IO_BACKEND = Section(
    {
        'type': Str(choices=('disk', 'lmdb', 'memcached')),
        'server_list_cfg': Str(),
        'client_cfg': Str(),
        'sys_path': Str(),
    },
    what='{type: disk | lmdb}')

# BasicSR's own datasets (keys from their sources); datasets not listed here and without ``option_keys`` are not
# checked key by key.
_PAIRED = ('dataroot_gt', 'dataroot_lq', 'meta_info_file', 'io_backend', 'filename_tmpl', 'mean', 'std', 'color',
           'scale')
BASICSR_DATASET_KEYS = {
    'PairedImageDataset': _PAIRED + ('gt_size', 'use_hflip', 'use_rot'),
    'SingleImageDataset': ('dataroot_lq', 'meta_info_file', 'io_backend', 'mean', 'std', 'color'),
}
_BASICSR_TRAIN_ONLY = ('gt_size', 'use_hflip', 'use_rot')


class DatasetSpec(Spec):
    """One ``datasets.<phase>`` entry: the loader keys plus the keys its dataset class declares."""

    what = 'a dataset mapping {name, type, ...}'

    def check(self, value, keys, ctx):
        self.is_mapping(value, keys, ctx, null=False)
        cls = Registered('dataset').resolve(value, keys, ctx)
        declared = getattr(cls, 'option_keys', None)
        if declared is None and cls.__name__ in BASICSR_DATASET_KEYS:
            declared = {
                k: (TrainOnly(AnyValue()) if k in _BASICSR_TRAIN_ONLY else
                    (DirPath() if k.startswith('dataroot') else AnyValue()))
                for k in BASICSR_DATASET_KEYS[cls.__name__]
            }
        section = Section({**LOADER_KEYS, **(declared or {})}, tool_keys=('phase', ), open=declared is None)
        # a key another dataset type takes may stay in the file as null (e.g. dataroot_gt: ~ when switching to
        # NoisyImageDataset with --cfg-options): null sets nothing
        others = set()
        registry = _registry('dataset')
        for name in registry.keys():
            klass = registry.get(name)
            others.update(getattr(klass, 'option_keys', None) or BASICSR_DATASET_KEYS.get(klass.__name__, ()))
        value = {k: v for k, v in value.items() if not (v is None and k in others and section.lookup(k) is None)}
        section.check(value, keys, ctx)
        if declared is None:  # at least the data paths
            for k, v in value.items():
                if k.startswith('dataroot') and v is not None:
                    DirPath().check(v, keys + (k, ), ctx)


class DatasetsSpec(Spec):
    """``datasets``: ``train`` and ``val*`` in training runs; ``test*`` and ``val*`` in test runs."""

    what = 'a mapping of phases (train, val_*, test_*) to datasets'

    def check(self, value, keys, ctx):
        if not isinstance(value, dict) or not value:
            ctx.fail(keys, 'missing or empty: give at least one dataset (e.g. datasets.test: {name, type, ...})')
        for phase, ds in value.items():
            kind = str(phase).split('_')[0]
            if kind not in ('train', 'val', 'test'):
                ctx.fail(
                    keys + (phase, ), f'unknown phase{_closest(phase, ["train", "val", "test"])}; name datasets '
                    'train, val or val_<x> (training) and test or test_<x> (testing)')
            if ctx.is_train is False and kind == 'train':
                ctx.fail(
                    keys + (phase, ), 'a test run would score this dataset in the training phase (random crops '
                    'and flips); name test datasets test or test_<x>')
            DatasetSpec().check(ds, keys + (phase, ), ctx)


# Value rules of BasicSR's metric functions, by argument name.
METRIC_VALUES = {
    'crop_border': Int(ge=0),
    'test_y_channel': Bool(),
    'input_order': Str(choices=('HWC', 'CHW')),
    'convert_to': Str(choices=('y', 'Y')),
}

_PATH_KEYS = {'resume_state': CheckpointPath(), 'ignore_resume_networks': ListOf(Str(), null=True)}
_PATH_PATTERNS = [(r'pretrain_network_\w+', CheckpointPath()), (r'param_key_\w+', Str(null=True)),
                  (r'strict_load_\w+', Bool())]
_PATH_TOOL_KEYS = ('experiments_root', 'results_root', 'models', 'training_states', 'log', 'visualization')
PATH = Section(_PATH_KEYS, patterns=_PATH_PATTERNS, tool_keys=_PATH_TOOL_KEYS, null=True)

VAL = Section(
    {
        'val_freq':
        Number(gt=0, null=True),
        'save_img':
        Bool(),
        'suffix':
        Str(null=True),
        'pbar':
        Bool(),
        'metrics':
        MapOf(Registered('metric', skip=('img', 'img2'), values=METRIC_VALUES, provided=('crop_border', )), null=True),
    },
    null=True)

LOGGER = Section(
    {
        'print_freq': Number(ge=1),
        'save_checkpoint_freq': Number(ge=1),
        'use_tb_logger': Bool(),
        'wandb': Section({
            'project': Str(null=True),
            'resume_id': Str(null=True)
        }, null=True),
    },
    null=True)


class SchedulerSpec(Spec):
    """``train.scheduler``: a registered scheduler built on a dummy optimiser, so bad arguments fail here."""

    what = 'a mapping {type: <scheduler>, ...its arguments}'
    null = True  # no scheduler: constant learning rate

    def check(self, value, keys, ctx):
        import torch

        from lan_basicsr.models.lr_scheduler import SCHEDULERS, build_scheduler
        if not self.is_mapping(value, keys, ctx):
            return
        name = value.get('type')
        if name not in SCHEDULERS:
            ctx.fail(
                keys + ('type', ), f'unknown scheduler {name!r}{_closest(name, SCHEDULERS)}; available: '
                f'{_listing(sorted(SCHEDULERS))}')
        params, _ = accepted_arguments(SCHEDULERS[name], skip=('optimizer', 'last_epoch'))
        for key in value:
            if key != 'type' and key not in params:
                known = ['type'] + list(params)
                ctx.fail(
                    keys + (key, ), f'unknown key: {name} takes no argument "{key}"{_closest(key, known)}; it '
                    f'takes: {_listing(known)}')
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
        try:
            build_scheduler(optimizer, value)
        except OptionError as e:
            ctx.fail(keys, str(e))
        except ARGUMENT_ERRORS as e:
            ctx.fail(keys, f'{name} rejects these options ({first_line(e)})')


TRAIN = Section(
    {
        'total_iter': Number(ge=1),
        'warmup_iter': Int(ge=-1),
        'ema_decay': Number(ge=0, lt=1),
        'scheduler': SchedulerSpec(),
        'net_d_iters': Int(ge=1),
        'net_d_init_iters': Int(ge=0),
    },
    patterns=[(r'optim_\w+', TorchOptimizer(lr='required')), (r'\w+_opt', Registered('loss', null=True))],
    null=True)

TOP = Section(
    {
        'name': Str(check=_name_check),
        'model_type': Str(),
        'scale': Int(ge=1),
        'num_gpu': OneOf(Str(choices=('auto', )), Int(ge=0), what='auto or an integer >= 0'),
        'manual_seed': Int(ge=0, le=2**32 - 1025, null=True),
        'datasets': DatasetsSpec(),
        'path': PATH,
        'train': TRAIN,
        'val': VAL,
        'logger': LOGGER,
        'dist_params': Section({
            'backend': Str(),
            'port': Int(ge=1, le=65535)
        }, null=True),
        'find_unused_parameters': Bool(),
    },
    patterns=[(r'network_\w+', Registered('arch'))],
    tool_keys=('is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path'))

# Sections read by tools rather than by a model: name -> Spec.
TOOL_SECTIONS = {}


def register_section(name, spec):
    """Declare a top-level section read by a tool (not by the model), e.g. ``demo`` (read by tools/demo.py)."""
    TOOL_SECTIONS[name] = spec
    return spec


def _embedded_check(name):
    from lan_basicsr.embedded import EMBEDDED_MODELS
    if name in EMBEDDED_MODELS:
        return None
    return f'"{name}" is not an embedded model ({", ".join(sorted(EMBEDDED_MODELS))})'


_DEMO_METHOD_KEYS = {
    'key': Str(check=_name_check),
    'label': Str(),
    'model': Str(check=_embedded_check),
    'cfg_options': MapOf(AnyValue(), null=True)
}
_DEMO_METHOD = Section(_DEMO_METHOD_KEYS, required=('key', ))
register_section('demo', Section({'methods': ListOf(_DEMO_METHOD, min_len=1)}))  # read by tools/demo.py

_TABLE_ROW_KEYS = {**_DEMO_METHOD_KEYS, 'per_loss': Bool()}
_TABLE_ROW = Section(_TABLE_ROW_KEYS, required=('key', ))
_TABLE_ROW_VALUE = Section({k: v for k, v in _TABLE_ROW_KEYS.items() if k != 'key'}, null=True)


class _TableRows(Spec):
    """``table.methods`` / ``table.losses``: a list of ``{key, ...}`` entries, or a mapping ``key -> entry`` (which
    merges under ``_base_``; a null entry removes an inherited one)."""

    what = 'a list of {key, label, cfg_options} entries or a mapping of keys to {label, cfg_options}'

    def check(self, value, keys, ctx):
        if isinstance(value, (list, tuple)):
            ListOf(_TABLE_ROW, min_len=1).check(value, keys, ctx)
        elif isinstance(value, dict):
            MapOf(_TABLE_ROW_VALUE, key=Str(check=_name_check)).check(value, keys, ctx)
        else:
            ctx.fail(keys, f'expected {self.what}, got {_show(value)}')


register_section(
    'table',
    Section({  # read by tools/run_table.py (lan_basicsr/table_runs.py)
        'title': Str(),
        'steps': ListOf(Int(ge=0), min_len=1),
        'losses': _TableRows(),
        'methods': _TableRows(),
    }))


def _model_sections(model_cls):
    hook = getattr(model_cls, 'option_sections', None)
    return dict(hook()) if hook is not None else {}


def _merge_sections(base, extra):
    out = dict(base)
    for name, spec in extra.items():
        if name in out and isinstance(out[name], Section) and isinstance(spec, Section):
            out[name] = out[name].extended(spec)
        else:
            out[name] = spec
    return out


def _finite_everywhere(value, keys, ctx):
    if isinstance(value, float) and not math.isfinite(value):
        ctx.fail(keys, f'{value} is not a finite number')
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_everywhere(v, keys + (k, ), ctx)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite_everywhere(v, keys + (i, ), ctx)


def check_options(opt, ctx):
    """Check ``opt`` against the schema of its ``model_type``: keys, values, registered types, paths. Raises the first
    problem as an OptionError naming the file and the key."""
    from .registry import check_registered
    if not isinstance(opt, dict):
        ctx.fail((), 'the options must be a mapping')
    models = _registry('model')
    if 'model_type' not in opt:
        ctx.fail(('model_type', ), f'missing (registered: {_listing(sorted(models.keys()))})')
    try:
        check_registered(models, opt['model_type'], 'model_type')
    except OptionError as e:
        ctx.fail(('model_type', ), str(e).split(': ', 1)[1] + _closest(opt['model_type'], models.keys()))
    model_cls = models.get(opt['model_type'])
    # every registered model's sections are known keys (a LAN option file run with model_type DenoiseModel for plain
    # inference keeps its adapt: section); the run's own model comes last so that its rules win
    sections = _merge_sections(TOP.keys, TOOL_SECTIONS)
    for name in sorted(models.keys()):
        if models.get(name) is not model_cls:
            sections = _merge_sections(sections, _model_sections(models.get(name)))
    sections = _merge_sections(sections, _model_sections(model_cls))
    top = Section(sections, patterns=[(p.pattern, s) for p, s in TOP.patterns], tool_keys=TOP.tool_keys)
    _finite_everywhere(opt, (), ctx)
    if 'datasets' not in opt:
        ctx.fail(('datasets', ), 'missing: give at least one dataset (e.g. datasets.test: {name, type, ...})')
    top.check(opt, (), ctx)
    extra = getattr(model_cls, 'check_options', None)
    if extra is not None:
        extra(opt, ctx)
