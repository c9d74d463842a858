"""Compatibility shims that must run before the first ``import basicsr``.

pip ``basicsr==1.4.2`` imports ``torchvision.transforms.functional_tensor``, a module torchvision removed in 0.17.
Its only use there is ``rgb_to_grayscale``, which torchvision still ships in ``functional``. We register a tiny
alias module under the old name instead of editing site-packages.
"""
import sys
import types

__all__ = ['patch_torchvision_functional_tensor']

_OLD_NAME = 'torchvision.transforms.functional_tensor'


def patch_torchvision_functional_tensor():
    """Make ``torchvision.transforms.functional_tensor`` importable on torchvision >= 0.17 (idempotent)."""
    if _OLD_NAME in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (torchvision < 0.17 still has it)
        return
    except ImportError:
        pass
    from torchvision.transforms import functional
    alias = types.ModuleType(_OLD_NAME)
    alias.rgb_to_grayscale = functional.rgb_to_grayscale
    sys.modules[_OLD_NAME] = alias


patch_torchvision_functional_tensor()
