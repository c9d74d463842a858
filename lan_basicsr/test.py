"""Test pipeline: build the test datasets and the model, then run the model's validation on each.

Unlike ``basicsr.test.test_pipeline`` the results folder is not archived when it exists: a test run that adapts
per image (LANModel) continues an interrupted run from what is already there. The folder has one writer: the job
holds its lock (:func:`lan_basicsr.utils.job_lock.job_folder`), and a start that fails leaves nothing behind.
"""
import logging
import os
from os import path as osp

import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model
from basicsr.utils import get_env_info, get_root_logger, get_time_str
from basicsr.utils.options import dict2str

from lan_basicsr.data.channels import match_network_channels
from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.job_lock import job_folder
from lan_basicsr.utils.options import parse_options

__all__ = ['test_pipeline']


def test_pipeline(root_path, argv=None):
    opt, _ = parse_options(root_path, is_train=False, argv=argv)
    torch.backends.cudnn.benchmark = True
    with job_folder(opt['path']['results_root'], opt):
        return _run(opt)


def _run(opt):
    if opt['rank'] == 0:
        try:
            os.makedirs(opt['path']['visualization'], exist_ok=True)
        except OSError as e:
            raise OptionError(f'{opt["path"]["results_root"]}: cannot create the results folder ({e.strerror or e}); '
                              'make it writable or set LAN_BASICSR_ROOT to a folder you can write to') from None
    if opt['dist']:
        torch.distributed.barrier()
    log_file = osp.join(opt['path']['log'], f"test_{opt['name']}_{get_time_str()}.log")
    logger = get_root_logger(logger_name='basicsr', log_level=logging.INFO, log_file=log_file)
    logger.info(get_env_info())
    logger.info(dict2str(opt))

    test_loaders = []
    for _, dataset_opt in sorted(opt['datasets'].items()):
        test_set = build_dataset(dataset_opt)
        test_loader = build_dataloader(test_set, dataset_opt, num_gpu=opt['num_gpu'], dist=opt['dist'], sampler=None)
        logger.info(f"Number of test images in {dataset_opt['name']}: {len(test_set)}")
        test_loaders.append(test_loader)

    model = build_model(opt)
    match_network_channels(model.get_bare_model(model.net_g), [loader.dataset for loader in test_loaders])
    save_img = (opt.get('val') or {}).get('save_img', True)
    for test_loader in test_loaders:
        logger.info(f"Testing {test_loader.dataset.opt['name']}...")
        model.validation(test_loader, current_iter=opt['name'], tb_logger=None, save_img=save_img)
    return model
