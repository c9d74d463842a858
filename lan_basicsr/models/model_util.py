"""Fixes for BasicSR 1.4.2's ``BaseModel`` that every lan_basicsr model mixes in.

BasicSR wraps DDP with ``device_ids=[torch.cuda.current_device()]`` (crashes on CPU), loads checkpoints with
``torch.load`` without ``weights_only`` and a fixed param key, and does not store RNG states in training states
(so a resumed run draws different crops). This mixin replaces those pieces and nothing else.
"""
import os
import random

import numpy as np
import torch
from basicsr.utils import get_root_logger
from torch.nn.parallel import DataParallel, DistributedDataParallel

from lan_basicsr.utils.dist_util import ddp_device_ids

__all__ = ['PluginModelMixin', 'get_rng_state', 'set_rng_state', 'gather_rows']


def get_rng_state():
    """Python, NumPy, torch (and this process's CUDA device) RNG states as tensors/ints: ``weights_only`` loads them."""
    np_state = np.random.get_state()
    return {
        'python': list(random.getstate()[1]) + [random.getstate()[0]],
        'python_gauss': random.getstate()[2],
        'numpy': torch.from_numpy(np_state[1].astype(np.int64)),
        'numpy_pos': int(np_state[2]),
        'torch': torch.get_rng_state(),
        'cuda': torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
    }


def set_rng_state(state):
    py = state['python']
    random.setstate((py[-1], tuple(py[:-1]), state['python_gauss']))
    np.random.set_state(('MT19937', state['numpy'].numpy().astype(np.uint32), state['numpy_pos'], 0, 0.0))
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])  # this process's device: dropout / drop-path on GPU resume exactly


class PluginModelMixin:
    """Device-agnostic DDP, safe strict checkpoint loading, RNG-complete training states."""

    def model_to_device(self, net):
        net = net.to(self.device)
        if self.opt['dist']:
            net = DistributedDataParallel(
                net,
                device_ids=ddp_device_ids(self.device),
                find_unused_parameters=self.opt.get('find_unused_parameters', False))
        elif self.opt['num_gpu'] > 1:
            net = DataParallel(net)
        return net

    def load_network(self, net, load_path, strict=True, param_key=None):
        """Strict, ``weights_only`` loading; the param key is detected unless ``path.param_key_g`` names one."""
        from lan_basicsr.utils.checkpoint import load_network as _load_network
        if param_key == 'params' and 'param_key_g' not in self.opt['path']:
            param_key = None
        _load_network(self.get_bare_model(net), load_path, strict=strict, param_key=param_key)
        get_root_logger().info(f'Loaded {net.__class__.__name__} from {load_path} (strict={strict}).')

    def save_training_state(self, epoch, current_iter):
        """Called on every rank: each rank's RNG state is gathered so that every rank resumes its own stream."""
        if current_iter == -1:
            return
        rng = [get_rng_state()]
        if self.opt['dist']:
            rng = [None] * self.opt['world_size']
            torch.distributed.all_gather_object(rng, get_rng_state())
        if self.opt['rank'] == 0:
            self._write_training_state(epoch, current_iter, rng)

    def _write_training_state(self, epoch, current_iter, rng):
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'rng': rng,
        }
        save_path = os.path.join(self.opt['path']['training_states'], f'{current_iter}.state')
        tmp_path = save_path + '.tmp'
        torch.save(state, tmp_path)
        os.replace(tmp_path, save_path)  # never leave a half-written state for --auto_resume to pick up

    def restore_rng(self, resume_state):
        """Restore this rank's RNG streams; the pipeline calls it once the resumed epoch's iterator exists."""
        rng = resume_state.get('rng')
        if rng:
            set_rng_state(rng[self.opt['rank']] if len(rng) == self.opt['world_size'] else rng[0])


def gather_rows(rows, opt):
    """Concatenate every rank's result rows (dicts with an ``index``), sorted; a no-op without torch.distributed."""
    if opt.get('dist') and torch.distributed.is_initialized():
        gathered = [None] * opt['world_size']
        torch.distributed.all_gather_object(gathered, rows)
        rows = [row for part in gathered for row in part]
    return sorted(rows, key=lambda r: r['index'])
