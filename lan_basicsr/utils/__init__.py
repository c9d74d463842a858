from .errors import CheckpointError, DataError, LANError, OptionError
from .registry import ADAPTER_REGISTRY, NOISE_REGISTRY, build_from_registry, check_registered

__all__ = [
    'LANError', 'OptionError', 'DataError', 'CheckpointError', 'ADAPTER_REGISTRY', 'NOISE_REGISTRY',
    'build_from_registry', 'check_registered'
]
