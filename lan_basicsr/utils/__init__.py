from .checkpoint import load_network, read_state_dict
from .errors import CheckpointError, DataError, LANError, OptionError
from .registry import ADAPTER_REGISTRY, NOISE_REGISTRY, build_from_registry, check_registered

__all__ = [
    'LANError', 'OptionError', 'DataError', 'CheckpointError', 'ADAPTER_REGISTRY', 'NOISE_REGISTRY',
    'build_from_registry', 'check_registered', 'read_state_dict', 'load_network'
]
