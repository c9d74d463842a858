"""Learning-rate schedules: exact values at known iterations, BasicSR's stepping convention, resume, selection."""
import math

import pytest
import torch

from lan_basicsr.models.lr_scheduler import (SCHEDULERS, CosineAnnealingRestartCyclicLR, LinearWarmupCosineLR,
                                             build_scheduler)
from lan_basicsr.utils.errors import OptionError


def _optimizer(lr):
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def _lrs(scheduler, num_iters, start_iter=1):
    """lr at iterations start_iter..num_iters, stepped as BasicSR's update_learning_rate does (from iteration 2)."""
    lrs = {}
    for it in range(start_iter, num_iters + 1):
        if it > 1:
            scheduler.step()
        lrs[it] = scheduler.optimizer.param_groups[0]['lr']
    return lrs


def test_cyclic_cosine_restormer_shape():
    # Restormer's real-denoising schedule scaled down: constant 3e-4 for 4 iterations, then cosine to 1e-6 over 6.
    base, low = 3e-4, 1e-6
    lrs = _lrs(CosineAnnealingRestartCyclicLR(_optimizer(base), periods=[4, 6], eta_mins=[base, low]), 14)
    for it in range(1, 6):  # last_epoch 0..4: first cycle, whose minimum is the base lr
        assert lrs[it] == pytest.approx(base, rel=1e-12)
    for it in range(6, 12):
        t = it - 1 - 4
        assert lrs[it] == pytest.approx(low + (base - low) * 0.5 * (1 + math.cos(math.pi * t / 6)), rel=1e-12)
    assert lrs[11] == pytest.approx(low, rel=1e-12)
    assert lrs[14] == pytest.approx(low, rel=1e-12)  # after the last cycle: its minimum


def test_cyclic_cosine_restart_weights():
    lrs = _lrs(
        CosineAnnealingRestartCyclicLR(_optimizer(1.), periods=[2, 2], restart_weights=[1, 0.5], eta_mins=[0., 0.1]), 5)
    assert [round(lrs[i], 12) for i in range(1, 6)] == [1., 0.5, 0., 0.1 + 0.5 * 0.9 * 0.5, 0.1]


def test_linear_warmup_cosine_uformer_shape():
    base, eta_min = 1e-3, 1e-5
    lrs = _lrs(LinearWarmupCosineLR(_optimizer(base), total_iter=10, warmup_iter=4, eta_min=eta_min), 12)
    assert [lrs[i] for i in range(1, 5)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3], rel=1e-12)
    assert lrs[7] == pytest.approx(eta_min + (base - eta_min) * 0.5, rel=1e-12)  # half-way through the cosine
    assert lrs[10] == lrs[12] == eta_min
    assert all(lrs[i] > lrs[i + 1] for i in range(4, 10))


def test_resumed_scheduler_continues_on_the_same_curve():
    make = lambda: LinearWarmupCosineLR(_optimizer(1e-3), total_iter=20, warmup_iter=3)  # noqa: E731
    full = _lrs(make(), 20)
    first = make()
    _lrs(first, 7)
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    resumed.optimizer.load_state_dict(first.optimizer.state_dict())
    assert _lrs(resumed, 20, start_iter=8) == {i: full[i] for i in range(8, 21)}


def test_build_scheduler_selects_ours_then_basicsr_and_rejects_unknown():
    assert type(build_scheduler(_optimizer(1.), {'type': 'LinearWarmupCosineLR', 'total_iter': 5})).__name__ == \
        'LinearWarmupCosineLR'
    multistep = build_scheduler(_optimizer(1.), {'type': 'MultiStepLR', 'milestones': [2], 'gamma': 0.5})
    assert type(multistep).__module__ == 'basicsr.models.lr_scheduler'
    assert {'CosineAnnealingRestartLR', 'MultiStepRestartLR'} <= set(SCHEDULERS)
    with pytest.raises(OptionError, match='unknown scheduler .*available: CosineAnnealingRestartCyclicLR'):
        build_scheduler(_optimizer(1.), {'type': 'Nope'})
    with pytest.raises(OptionError, match='train.scheduler'):
        build_scheduler(_optimizer(1.), {'type': 'LinearWarmupCosineLR', 'total_iters': 5})
    with pytest.raises(OptionError, match='same length'):
        build_scheduler(_optimizer(1.), {'type': 'CosineAnnealingRestartCyclicLR', 'periods': [2, 2], 'eta_mins': [0]})
