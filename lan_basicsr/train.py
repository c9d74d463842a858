"""Training pipeline: BasicSR's loop and building blocks, with our options, CPU-capable torchrun and exact resume.

Differences from ``basicsr.train.train_pipeline`` (which cannot be reused as is: it parses options itself, calls
the GPU-only ``init_dist`` and loads resume states onto CUDA):
- options come from :func:`lan_basicsr.utils.options.parse_options` (safe YAML, ``_base_``, ``--cfg-options``);
- a resumed run skips the batches its epoch already consumed and restores every rank's RNG streams, so its
  losses and final weights equal an uninterrupted run's (exact with ``num_worker_per_gpu: 0``);
- training states are written atomically and loaded with ``weights_only=True`` on the model's device;
- ``experiments/<name>/`` has one writer (the job holds its lock, :mod:`lan_basicsr.utils.job_lock`) and a start
  that fails leaves nothing behind.
"""
import datetime
import logging
import math
import os
import time
from os import path as osp

import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from basicsr.data.prefetch_dataloader import CPUPrefetcher
from basicsr.models import build_model
from basicsr.utils import (AvgTimer, MessageLogger, get_env_info, get_root_logger, get_time_str, init_tb_logger,
                           make_exp_dirs, mkdir_and_rename, scandir)
from basicsr.utils.options import dict2str

from lan_basicsr.data.channels import match_network_channels
from lan_basicsr.utils.errors import CheckpointError, OptionError
from lan_basicsr.utils.job_lock import job_folder
from lan_basicsr.utils.options import parse_options

__all__ = ['train_pipeline', 'ResumableSampler', 'find_resume_state']


class ResumableSampler(torch.utils.data.Sampler):
    """Wraps a sampler so that the next epoch can start after the first ``n`` indices (already consumed)."""

    def __init__(self, sampler):
        self.sampler = sampler
        self._skip = 0

    def skip_next(self, num_indices):
        self._skip = num_indices

    def set_epoch(self, epoch):
        self.sampler.set_epoch(epoch)

    def __iter__(self):
        skip, self._skip = self._skip, 0
        for i, index in enumerate(self.sampler):
            if i >= skip:
                yield index

    def __len__(self):
        return len(self.sampler)


def find_resume_state(opt):
    """Path of the training state to resume from (``--auto_resume``: the latest one), or None."""
    if opt['auto_resume']:
        state_dir = opt['path']['training_states']
        if osp.isdir(state_dir):
            iters = [int(v[:-len('.state')]) for v in scandir(state_dir, suffix='.state', recursive=False)]
            if iters:
                return osp.join(state_dir, f'{max(iters)}.state')
        return None
    return opt['path'].get('resume_state')


def _load_resume_state(path):
    from lan_basicsr.utils.checkpoint import describe_load_error
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # corrupt, foreign or unsafe file: say which, in one line
        raise CheckpointError(f'{path}: cannot read the training state ({describe_load_error(e)})') from None
    if not isinstance(state, dict) or 'iter' not in state:
        raise CheckpointError(f'{path}: not a training state of tools/train.py (no "iter" entry); use a file from '
                              'experiments/<name>/training_states/')
    return state


def _load_networks_of_iter(opt, resume_iter, logger):
    """Point every ``pretrain_network_*`` at the weights saved with the training state (BasicSR's ``check_resume``,
    logged instead of printed); ``path.ignore_resume_networks`` keeps the configured ones."""
    ignored = opt['path'].get('ignore_resume_networks') or []
    for network in (key for key in opt if key.startswith('network_')):
        if network not in ignored:
            path = osp.join(opt['path']['models'], f'net_{network[len("network_"):]}_{resume_iter}.pth')
            opt['path'][f'pretrain_{network}'] = path
            logger.info(f'Resuming {network} from {path}.')
    for key in (k for k in opt['path'] if k.startswith('param_key') and opt['path'][k] == 'params_ema'):
        opt['path'][key] = 'params'  # the saved net_g_{iter}.pth holds the trained weights under "params"


def _create_dataloaders(opt, logger):
    train_loader = train_sampler = None
    val_loaders = []
    for phase, dataset_opt in opt['datasets'].items():
        if phase == 'train':
            enlarge_ratio = dataset_opt.get('dataset_enlarge_ratio', 1)
            train_set = build_dataset(dataset_opt)
            train_sampler = ResumableSampler(EnlargedSampler(train_set, opt['world_size'], opt['rank'], enlarge_ratio))
            train_loader = build_dataloader(
                train_set,
                dataset_opt,
                num_gpu=opt['num_gpu'],
                dist=opt['dist'],
                sampler=train_sampler,
                seed=opt['manual_seed'])
            logger.info(f'Training set: {len(train_set)} images, batch {dataset_opt["batch_size_per_gpu"]} per '
                        f'process, world size {opt["world_size"]}, {len(train_loader)} iterations per epoch.')
        elif phase.split('_')[0] == 'val':
            val_set = build_dataset(dataset_opt)
            val_loaders.append(
                build_dataloader(val_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=None))
            logger.info(f'Validation set {dataset_opt["name"]}: {len(val_set)} images.')
        else:
            raise OptionError(f'datasets.{phase}: unknown phase; use "train" or "val*" keys')
    if train_loader is None:
        raise OptionError('datasets.train: a training run needs a "train" dataset')
    if len(train_loader) == 0:
        raise OptionError('datasets.train: fewer images than batch_size_per_gpu x world size; lower the batch size')
    return train_loader, train_sampler, val_loaders


def train_pipeline(root_path, argv=None):
    opt, args = parse_options(root_path, is_train=True, argv=argv)
    torch.backends.cudnn.benchmark = True
    with job_folder(opt['path']['experiments_root'], opt):
        return _train(opt, root_path)


def _train(opt, root_path):
    resume_path = find_resume_state(opt)
    if resume_path is None:
        make_exp_dirs(opt)
        if opt['logger'].get('use_tb_logger') and opt['rank'] == 0:
            mkdir_and_rename(osp.join(root_path, 'tb_logger', opt['name']))
    elif opt['rank'] == 0:  # resuming from a state given in path.resume_state into a new experiment folder
        for key in ('experiments_root', 'models', 'training_states', 'visualization'):
            os.makedirs(opt['path'][key], exist_ok=True)
    if opt['dist']:
        torch.distributed.barrier()  # rank 0 created the experiment folders
    log_file = osp.join(opt['path']['log'], f"train_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(dict2str(opt))
    tb_logger = None
    if opt['logger'].get('use_tb_logger') and opt['rank'] == 0:
        tb_logger = init_tb_logger(log_dir=osp.join(root_path, 'tb_logger', opt['name']))

    train_loader, train_sampler, val_loaders = _create_dataloaders(opt, logger)
    iters_per_epoch = len(train_loader)
    total_iters = int(opt['train']['total_iter'])
    total_epochs = math.ceil(total_iters / iters_per_epoch)

    resume_state = None
    start_epoch, current_iter = 0, 0
    if resume_path is not None:
        resume_state = _load_resume_state(resume_path)
        opt['path']['resume_state'] = resume_path
        _load_networks_of_iter(opt, resume_state['iter'], logger)
    model = build_model(opt)
    match_network_channels(model.get_bare_model(model.net_g), [train_loader.dataset] + [v.dataset for v in val_loaders])
    if resume_state is not None:
        model.resume_training(resume_state)
        current_iter = resume_state['iter']
        start_epoch = current_iter // iters_per_epoch
        train_sampler.skip_next((current_iter - start_epoch * iters_per_epoch) * train_loader.batch_size)
        logger.info(f'Resuming from {resume_path}: epoch {start_epoch}, iter {current_iter}.')

    msg_logger = MessageLogger(opt, current_iter, tb_logger)
    prefetcher = CPUPrefetcher(train_loader)
    logger.info(f'Start training from epoch {start_epoch}, iter {current_iter}; total {total_iters} iters.')
    data_timer, iter_timer = AvgTimer(), AvgTimer()
    start_time = time.time()
    epoch = start_epoch
    for epoch in range(start_epoch, total_epochs + 1):
        if current_iter >= total_iters:
            break
        train_sampler.set_epoch(epoch)
        # Creating an epoch's iterator draws from torch's RNG. A state saved mid-epoch was saved after that draw, so
        # its RNG streams are restored once the iterator exists; one saved at an epoch's end, before the next draw.
        if resume_state is not None and current_iter == epoch * iters_per_epoch:
            model.restore_rng(resume_state)
            resume_state = None
        prefetcher.reset()
        if resume_state is not None:
            model.restore_rng(resume_state)
            resume_state = None
        train_data = prefetcher.next()
        while train_data is not None:
            data_timer.record()
            current_iter += 1
            if current_iter > total_iters:
                break
            model.update_learning_rate(current_iter, warmup_iter=opt['train'].get('warmup_iter', -1))
            model.feed_data(train_data)
            model.optimize_parameters(current_iter)
            iter_timer.record()
            if current_iter == 1:
                msg_logger.reset_start_time()
            if current_iter % opt['logger'].get('print_freq', 100) == 0:
                log_vars = {'epoch': epoch, 'iter': current_iter, 'lrs': model.get_current_learning_rate()}
                log_vars.update({'time': iter_timer.get_avg_time(), 'data_time': data_timer.get_avg_time()})
                log_vars.update(model.get_current_log())
                msg_logger(log_vars)
            if current_iter % opt['logger'].get('save_checkpoint_freq', 5000) == 0:
                logger.info('Saving models and training states.')
                model.save(epoch, current_iter)
            if opt.get('val') is not None and opt['val'].get('val_freq') and current_iter % opt['val']['val_freq'] == 0:
                for val_loader in val_loaders:
                    model.validation(val_loader, current_iter, tb_logger, opt['val'].get('save_img', False))
            data_timer.start()
            iter_timer.start()
            train_data = prefetcher.next()

    logger.info(f'End of training. Time consumed: {datetime.timedelta(seconds=int(time.time() - start_time))}')
    model.save(epoch=-1, current_iter=-1)  # net_g_latest.pth
    if opt.get('val') is not None:
        for val_loader in val_loaders:
            model.validation(val_loader, current_iter, tb_logger, opt['val'].get('save_img', False))
    if tb_logger:
        tb_logger.close()
    return model
