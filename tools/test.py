# Usage: python tools/test.py -opt options/lan_uformer_polyu.yml [--cfg-options adapt.type=FullTrainable ...]
#        torchrun --nproc_per_node=2 tools/test.py -opt X.yml --launcher pytorch
from _entry import ROOT, run

import lan_basicsr  # noqa: F401  (registers archs, datasets, losses, models)
from lan_basicsr.test import test_pipeline

if __name__ == '__main__':
    run(test_pipeline, ROOT)
