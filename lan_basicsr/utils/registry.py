"""Registries of our own, plus a builder that fails clearly on an unknown ``type``.

BasicSR's registries (ARCH, MODEL, LOSS, DATASET, METRIC) are used as they are; LAN adds ADAPTER_REGISTRY (what is
adapted at test time), NOISE_REGISTRY (synthetic noise models) and SELECT_REGISTRY (ground-truth-free rules that choose
the step to keep, ``adapt.select``).
"""
from copy import deepcopy

from basicsr.utils.registry import Registry

from .errors import OptionError

__all__ = ['ADAPTER_REGISTRY', 'NOISE_REGISTRY', 'SELECT_REGISTRY', 'build_from_registry', 'check_registered']

ADAPTER_REGISTRY = Registry('adapter')
NOISE_REGISTRY = Registry('noise')
SELECT_REGISTRY = Registry('select')


def check_registered(registry, name, where):
    """Raise :class:`OptionError` unless ``name`` is in ``registry``; ``where`` names the option key."""
    if name is None:
        raise OptionError(f'{where}: missing "type" (registered {registry._name} types: '
                          f'{", ".join(sorted(registry.keys()))})')
    if name not in registry and f'{name}_basicsr' not in registry:  # BasicSR's Registry.get falls back to the suffix
        raise OptionError(f'{where}: unknown type "{name}"; registered {registry._name} types: '
                          f'{", ".join(sorted(registry.keys()))}')


def build_from_registry(registry, opt, where, **extra):
    """Build ``registry[opt['type']](**rest_of_opt, **extra)``, with a clear error on an unknown type."""
    opt = deepcopy(dict(opt))
    name = opt.pop('type', None)
    check_registered(registry, name, where)
    return registry.get(name)(**opt, **extra)
