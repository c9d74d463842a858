"""Run under torchrun by the distributed tests: the real train/test pipeline, then dump what each rank ended with.

Usage: torchrun --nproc_per_node=2 tests/helpers/ddp_worker.py {train,test} ROOT OUT -opt X.yml --launcher pytorch
"""
import json
import os
import sys
from os import path as osp

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

import lan_basicsr  # noqa: E402,F401
from lan_basicsr.test import test_pipeline  # noqa: E402
from lan_basicsr.train import train_pipeline  # noqa: E402

if __name__ == '__main__':
    mode, root, out = sys.argv[1:4]
    rank = int(os.environ.get('RANK', 0))
    pipeline = train_pipeline if mode == 'train' else test_pipeline
    model = pipeline(root, argv=sys.argv[4:])
    net = model.get_bare_model(model.net_g)
    torch.save(net.state_dict(), osp.join(out, f'weights_rank{rank}.pth'))
    with open(osp.join(out, f'metrics_rank{rank}.json'), 'w') as f:
        json.dump(getattr(model, 'metric_results', {}), f)
