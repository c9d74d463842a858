# Usage: python tools/train.py -opt options/train_dncnn_gaussian.yml [--auto_resume] [--cfg-options k=v ...]
#        torchrun --nproc_per_node=2 tools/train.py -opt X.yml --launcher pytorch
from _entry import ROOT, run

import lan_basicsr  # noqa: F401  (registers archs, datasets, losses, models)
from lan_basicsr.train import train_pipeline

if __name__ == '__main__':
    run(train_pipeline, ROOT)
