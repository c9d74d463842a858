"""Supervised denoiser training and plain inference (the paper's pretraining step and its "pretrained" row)."""
from os import path as osp

import torch
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, imwrite, tensor2img
from basicsr.utils.registry import MODEL_REGISTRY
from torch.utils.data import default_collate

from lan_basicsr.metrics import score_images
from lan_basicsr.utils.errors import OptionError

from .model_util import PluginModelMixin, gather_rows

__all__ = ['DenoiseModel']


@MODEL_REGISTRY.register()
class DenoiseModel(PluginModelMixin, SRModel):
    """BasicSR's SRModel on CPU or GPU, any ``torch.optim`` optimiser, and validation sharded over ranks.

    Validation scores as the official LAN evaluation does (float PSNR/SSIM, see ``lan_basicsr.metrics``). Under
    torchrun each rank takes every ``world_size``-th image and the per-image scores are gathered, so the averages
    equal a single-process run's.
    """

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        optim_cls = getattr(torch.optim, optim_type, None)
        if not (isinstance(optim_cls, type) and issubclass(optim_cls, torch.optim.Optimizer)):
            raise OptionError(f'train.optim_g.type: "{optim_type}" is not a torch.optim optimiser (e.g. Adam, AdamW)')
        return optim_cls(params, lr, **kwargs)

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        dataset = dataloader.dataset
        dataset_name = dataset.opt['name']
        rank, world_size = self.opt['rank'], self.opt['world_size']
        metrics_opt = (self.opt.get('val') or {}).get('metrics') or {}
        rows = []
        for index in range(rank, len(dataset), world_size):
            data = default_collate([dataset[index]])
            self.feed_data(data)
            self.test()
            output = self.output.detach()
            image_name = _image_name(data, index)
            row = {'index': index, 'image': image_name}
            if 'gt' in data:
                row.update(score_images(output, self.gt, metrics_opt))
            rows.append(row)
            if save_img:
                suffix = '' if not self.is_train else f'_{current_iter}'
                imwrite(tensor2img(output), osp.join(self.opt['path']['visualization'], dataset_name,
                                                     f'{image_name}{suffix}.png'))
            del self.lq, self.output
            if hasattr(self, 'gt'):
                del self.gt
        rows = gather_rows(rows, self.opt)
        self.metric_results = {}
        if rows and metrics_opt and all(name in rows[0] for name in metrics_opt):
            self.metric_results = {name: sum(r[name] for r in rows) / len(rows) for name in metrics_opt}
        if rank == 0:
            self._log_metrics(dataset_name, len(rows), current_iter, tb_logger)
        return rows

    def _log_metrics(self, dataset_name, num_images, current_iter, tb_logger):
        msg = f'Validation {dataset_name} ({num_images} images)'
        for name, value in self.metric_results.items():
            msg += f'\n\t # {name}: {value:.4f}'
            if tb_logger and isinstance(current_iter, int):
                tb_logger.add_scalar(f'metrics/{dataset_name}/{name}', value, current_iter)
        get_root_logger().info(msg)


def _image_name(data, index):
    if 'name' in data:
        return data['name'][0]
    if 'lq_path' in data:
        return osp.splitext(osp.basename(data['lq_path'][0]))[0]
    return f'{index:06d}'
