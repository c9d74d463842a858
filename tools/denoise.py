# Usage: python tools/denoise.py -i photo.jpg [-o denoised] [--method lan|full|first|last|none] [--compare] ...
#        (the same as the lan-denoise command that pip install -e . installs; see lan_basicsr/denoise.py)
import sys

from _entry import run

from lan_basicsr.denoise import main

if __name__ == '__main__':
    sys.exit(run(main) or 0)
