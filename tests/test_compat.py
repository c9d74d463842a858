"""``import lan_basicsr`` makes pip basicsr 1.4.2 importable on torchvision >= 0.17, without editing site-packages."""
import subprocess
import sys


def test_basicsr_modules_import_after_lan_basicsr():
    code = ('import lan_basicsr, basicsr.data.degradations as d, torchvision.transforms.functional as F; '
            'assert d.rgb_to_grayscale is F.rgb_to_grayscale; '
            'from basicsr.utils.registry import ARCH_REGISTRY; '
            'assert {"DnCNN", "Restormer", "Uformer"} <= set(ARCH_REGISTRY.keys())')
    subprocess.run([sys.executable, '-c', code], check=True, timeout=120)


def test_shim_is_idempotent():
    from lan_basicsr import compat
    before = sys.modules[compat._OLD_NAME]
    compat.patch_torchvision_functional_tensor()
    assert sys.modules[compat._OLD_NAME] is before
