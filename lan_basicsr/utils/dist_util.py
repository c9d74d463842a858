"""Distributed initialisation that works on CPU as well as GPU.

BasicSR's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and hard-codes nccl, so it crashes on machines
without a GPU. Under torchrun we use nccl with ``LOCAL_RANK`` on GPU, and gloo on CPU.
"""
import atexit
import os

import torch
import torch.distributed as dist

__all__ = ['init_dist', 'ddp_device_ids']


def init_dist(launcher='pytorch', use_cuda=None, **kwargs):
    """Initialise the default process group from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, ...)."""
    if launcher != 'pytorch':
        raise ValueError(f'launcher "{launcher}" is not supported; use --launcher pytorch under torchrun')
    if dist.is_initialized():
        return
    if 'RANK' not in os.environ or 'WORLD_SIZE' not in os.environ:
        from .errors import OptionError
        raise OptionError('--launcher pytorch needs torchrun (RANK/WORLD_SIZE are not set); '
                          'run: torchrun --nproc_per_node=N tools/train.py -opt X.yml --launcher pytorch')
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
        backend = 'nccl'
    else:
        backend = 'gloo'
    dist.init_process_group(backend=backend, **kwargs)
    atexit.register(_destroy_process_group)


def _destroy_process_group():
    # Released here, at exit, rather than left to the interpreter's teardown: a gloo group destroyed during teardown
    # after its peer has gone can abort the process (SIGABRT) although the work finished.
    if dist.is_initialized():
        dist.destroy_process_group()


def ddp_device_ids(device):
    """``device_ids`` for DistributedDataParallel: the local GPU on CUDA, None on CPU (required by DDP)."""
    if device.type == 'cuda':
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return None
