"""Learning-rate schedules of the official recipes that pip BasicSR 1.4.2 lacks, selected by ``train.scheduler.type``.

BasicSR steps every scheduler once per iteration from iteration 2 on (``BaseModel.update_learning_rate``), so at
iteration ``k`` a scheduler's ``last_epoch`` is ``k - 1``. Both schedules here are closed forms of ``last_epoch``
(no recursion on the previous value), so a resumed run (``load_state_dict``) continues on exactly the same curve.

- ``CosineAnnealingRestartCyclicLR`` (Restormer): cosine cycles of lengths ``periods``, each annealing from
  ``restart_weight * base_lr`` down to its own minimum ``eta_mins[i]``.
- ``LinearWarmupCosineLR`` (Uformer's warm-up then cosine, in iterations instead of epochs).

:func:`build_scheduler` falls back to BasicSR's own schedulers (``MultiStepLR``/``MultiStepRestartLR``,
``CosineAnnealingRestartLR``).
"""
import math
from copy import deepcopy

from basicsr.models import lr_scheduler as basicsr_lr_scheduler
from torch.optim.lr_scheduler import LRScheduler

from lan_basicsr.utils.errors import OptionError

__all__ = ['CosineAnnealingRestartCyclicLR', 'LinearWarmupCosineLR', 'SCHEDULERS', 'build_scheduler']


class CosineAnnealingRestartCyclicLR(LRScheduler):
    """Cosine annealing with restarts, a minimum per cycle (Restormer's schedule).

    Cycle ``i`` covers ``last_epoch`` in ``(sum(periods[:i]), sum(periods[:i + 1])]`` (the first one also includes
    0) and goes from ``eta_mins[i] + restart_weights[i] * (base_lr - eta_mins[i])`` to ``eta_mins[i]``. Restormer's
    real-denoising recipe: ``periods [92000, 208000]``, ``eta_mins [3e-4, 1e-6]`` with base lr 3e-4, i.e. constant
    3e-4 for 92k iterations, then a cosine down to 1e-6. After the last cycle the lr stays at the last minimum.

    Args:
        optimizer (torch.optim.Optimizer): the optimiser.
        periods (list[int]): length of each cycle in iterations.
        restart_weights (list[float]): peak of each cycle as a fraction of the base lr. Default: 1 for every cycle.
        eta_mins (list[float]): minimum lr of each cycle. Default: 0 for every cycle.
    """

    def __init__(self, optimizer, periods, restart_weights=None, eta_mins=None, last_epoch=-1):
        self.periods = [int(p) for p in periods]
        self.restart_weights = list(restart_weights) if restart_weights is not None else [1.] * len(self.periods)
        self.eta_mins = [float(v) for v in eta_mins] if eta_mins is not None else [0.] * len(self.periods)
        if not self.periods or min(self.periods) < 1:
            raise OptionError(f'train.scheduler.periods: expected a non-empty list of positive ints, got {periods!r}')
        if not len(self.periods) == len(self.restart_weights) == len(self.eta_mins):
            raise OptionError('train.scheduler: periods, restart_weights and eta_mins must have the same length, got '
                              f'{len(self.periods)}, {len(self.restart_weights)}, {len(self.eta_mins)}')
        self.cumulative_period = [sum(self.periods[:i + 1]) for i in range(len(self.periods))]
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t = self.last_epoch
        if t > self.cumulative_period[-1]:
            return [self.eta_mins[-1] for _ in self.base_lrs]
        idx = next(i for i, end in enumerate(self.cumulative_period) if t <= end)
        start = self.cumulative_period[idx - 1] if idx else 0
        eta_min, weight = self.eta_mins[idx], self.restart_weights[idx]
        cos = 0.5 * (1 + math.cos(math.pi * (t - start) / self.periods[idx]))
        return [eta_min + weight * (base_lr - eta_min) * cos for base_lr in self.base_lrs]


class LinearWarmupCosineLR(LRScheduler):
    """Linear warm-up to the base lr over ``warmup_iter`` iterations, then a cosine to ``eta_min`` at ``total_iter``.

    At iteration ``k`` (``last_epoch = k - 1``): ``base_lr * k / warmup_iter`` while ``k <= warmup_iter`` (Uformer's
    GradualWarmupScheduler with multiplier 1 starts at ``base_lr / warmup`` too), then
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * (k - warmup_iter) / (total_iter - warmup_iter))) / 2``;
    ``eta_min`` after ``total_iter``.

    Args:
        optimizer (torch.optim.Optimizer): the optimiser.
        total_iter (int): iteration at which the cosine reaches ``eta_min``.
        warmup_iter (int): warm-up length (0: no warm-up). Default: 0.
        eta_min (float): final lr. Default: 0.
    """

    def __init__(self, optimizer, total_iter, warmup_iter=0, eta_min=0., last_epoch=-1):
        self.total_iter, self.warmup_iter, self.eta_min = int(total_iter), int(warmup_iter), float(eta_min)
        if not 0 <= self.warmup_iter < self.total_iter:
            raise OptionError(f'train.scheduler: need 0 <= warmup_iter < total_iter, got {warmup_iter}, {total_iter}')
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        k = self.last_epoch + 1
        if k <= self.warmup_iter:
            return [base_lr * k / self.warmup_iter for base_lr in self.base_lrs]
        if k >= self.total_iter:
            return [self.eta_min for _ in self.base_lrs]
        cos = 0.5 * (1 + math.cos(math.pi * (k - self.warmup_iter) / (self.total_iter - self.warmup_iter)))
        return [self.eta_min + (base_lr - self.eta_min) * cos for base_lr in self.base_lrs]


SCHEDULERS = {
    'CosineAnnealingRestartCyclicLR': CosineAnnealingRestartCyclicLR,
    'LinearWarmupCosineLR': LinearWarmupCosineLR,
    # BasicSR 1.4.2's own (its BaseModel.setup_schedulers knows only these)
    'MultiStepLR': basicsr_lr_scheduler.MultiStepRestartLR,
    'MultiStepRestartLR': basicsr_lr_scheduler.MultiStepRestartLR,
    'CosineAnnealingRestartLR': basicsr_lr_scheduler.CosineAnnealingRestartLR,
}


def build_scheduler(optimizer, scheduler_opt):
    """Build the scheduler named by ``scheduler_opt['type']`` (see :data:`SCHEDULERS`) with its other keys."""
    scheduler_opt = deepcopy(dict(scheduler_opt))
    name = scheduler_opt.pop('type', None)
    if name not in SCHEDULERS:
        raise OptionError(f'train.scheduler.type: unknown scheduler {name!r}; '
                          f'available: {", ".join(sorted(SCHEDULERS))}')
    try:
        return SCHEDULERS[name](optimizer, **scheduler_opt)
    except TypeError as e:  # unknown or missing keyword
        raise OptionError(f'train.scheduler ({name}): {e}') from None
