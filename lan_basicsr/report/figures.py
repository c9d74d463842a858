"""The paper's figures from results folders (matplotlib, no pyplot state): Fig. 5 (PSNR/SSIM against step), per-image
gains, and Fig. 4 / Fig. 6 (the noise before and after LAN's offset, beside the training noise, and histograms).

Only what the runs saved is read: ``per_step.csv``, ``inputs.csv``, the PNGs under ``visualization/`` and ``compare/``,
the offsets under ``offsets/``. Training-noise samples are drawn (seeded) from the noise model a run declares in its
option file's ``report.train_noise`` (recorded in ``report.json``); the network is never run.
"""
import math
import os
import textwrap
from os import path as osp

import cv2
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lan_basicsr.utils.errors import DataError
from lan_basicsr.utils.registry import NOISE_REGISTRY, build_from_registry

__all__ = [
    'fig5', 'gains_figure', 'noise_residuals', 'fig4', 'fig6', 'noise_stats', 'save_figure', 'series_labels', 'read_rgb'
]

METHOD_GID = 'method'  # gid of the one line each method draws in Fig. 5 (tests count them)
COLOURS = ('tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple', 'tab:brown', 'tab:pink', 'tab:olive',
           'tab:cyan', 'tab:gray')
NOISE_COLOURS = {'train': 'tab:green', 'before': 'tab:red', 'after': 'tab:blue'}
NOISE_NAMES = {
    'train': 'training noise (samples)',
    'before': 'before: y − x̂ (step 0)',
    'after': 'after: y + tanh φ − x̂ (last step)'
}


def save_figure(fig, out_dir, stem):
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.svg`` under ``out_dir``; return the two paths."""
    os.makedirs(out_dir, exist_ok=True)
    png, svg = osp.join(out_dir, f'{stem}.png'), osp.join(out_dir, f'{stem}.svg')
    fig.savefig(png, dpi=110, metadata={'Software': None})
    fig.set_layout_engine('none')  # keep the layout the PNG computed (constrained layout is the slow part)
    fig.savefig(svg, metadata={'Date': None})  # no time stamp: the same runs give the same file
    return png, svg


def series_labels(runs):
    """``{run.folder: legend label}``: the method, plus the loss / network where the runs differ in them."""
    losses = {r.loss for r in runs if r.steps > 0}
    networks = {r.network for r in runs}
    out = {}
    for run in runs:
        label = run.method
        if len(losses) > 1 and run.steps > 0:
            label += f' · {run.loss}'
        if len(networks) > 1:
            label = f'{run.network} {label}'
        out[run.folder] = label
    return out


def _colours(runs):
    return {r.folder: COLOURS[i % len(COLOURS)] for i, r in enumerate(runs)}


def fig5(runs, dataset):
    """Fig. 5: mean PSNR and SSIM against the adaptation step, one line per method, with a band of one standard
    deviation over the images; below, the same as gains over step 0 (where the methods' differences are visible).
    A run without adaptation steps (Pretrained) is a dotted horizontal line. Returns the Figure (None without GT)."""
    labels, colours = series_labels(runs), _colours(runs)  # over all runs: one colour per run in every figure
    runs = [r for r in runs if dataset in r.scores and r.has_gt(dataset)]
    if not runs:
        return None
    fig = Figure(figsize=(11, 7.4), layout='constrained')
    axes = fig.subplots(2, 2, sharex=True)
    longest = max(r.steps for r in runs)
    for run in runs:
        curves = run.curves(dataset)  # images, steps + 1, (psnr, ssim)
        steps = np.arange(run.steps + 1)
        for col in (0, 1):
            values = curves[:, :, col]
            mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
            gain = values - values[:, :1]
            gmean, gstd = np.nanmean(gain, axis=0), np.nanstd(gain, axis=0)
            style = dict(color=colours[run.folder], label=labels[run.folder])
            if run.steps == 0:
                axes[0, col].axhline(mean[0], ls=':', lw=1.8, gid=METHOD_GID, **style)
                continue
            axes[0, col].plot(steps, mean, marker='o', ms=3, lw=1.8, gid=METHOD_GID, **style)
            axes[0, col].fill_between(steps, mean - std, mean + std, color=colours[run.folder], alpha=0.12, lw=0)
            axes[1, col].plot(steps, gmean, marker='o', ms=3, lw=1.8, **style)
            axes[1, col].fill_between(steps, gmean - gstd, gmean + gstd, color=colours[run.folder], alpha=0.12, lw=0)
    for col, name, unit in ((0, 'PSNR', ' (dB)'), (1, 'SSIM', '')):
        axes[0, col].set_ylabel(f'mean {name}{unit}')
        axes[1, col].set_ylabel(f'mean {name} gain over step 0{unit}')
        axes[1, col].axhline(0, color='black', lw=0.8)
        axes[1, col].set_xlabel('adaptation step k (optimiser updates)')
        for row in (0, 1):
            axes[row, col].grid(alpha=0.3)
            axes[row, col].xaxis.set_major_locator(MaxNLocator(integer=True))
            axes[row, col].set_xlim(0, max(longest, 1))
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc='outside lower center', ncol=min(len(names), 2), fontsize=9)
    n = len(runs[0].images(dataset))
    noisy = _noisy_mean(runs, dataset)
    noisy = f'; noisy input {noisy[0]:.2f} dB / {noisy[1]:.4f}' if noisy else ''
    fig.suptitle(
        f'{dataset}: mean over {n} images (band: ± one standard deviation over the images){noisy}', fontsize=11)
    return fig


def _noisy_mean(runs, dataset):
    for run in runs:
        values = [run.noisy(dataset, im) for im in run.images(dataset)]
        if values and all(v is not None for v in values):
            return tuple(float(np.nanmean([v[i] for v in values])) for i in (0, 1))
    return None


def gains_figure(runs, dataset):
    """Per-image PSNR gain (last step − step 0) as sorted bars, one panel per adapted run; images that end below
    their noisy input (``inputs.csv``) are marked. Returns the Figure, or None when no run adapted with GT."""
    labels, colours = series_labels(runs), _colours(runs)
    runs = [r for r in runs if r.steps > 0 and dataset in r.scores and r.has_gt(dataset)]
    if not runs:
        return None
    n = len(runs[0].images(dataset))
    side = n <= 12  # few images: the methods side by side; many: one wide panel per method, stacked
    if side:
        fig = Figure(figsize=(min(15, 1.2 + 4.4 * len(runs)), 4.2), layout='constrained')
        axes = fig.subplots(1, len(runs), squeeze=False, sharey=True)[0]
    else:
        fig = Figure(figsize=(min(14, max(9, 0.3 * n + 4)), 0.6 + 2.8 * len(runs)), layout='constrained')
        axes = fig.subplots(len(runs), 1, squeeze=False, sharey=True)[:, 0]
    for ax, run in zip(axes, runs):
        curves = run.curves(dataset)
        gain = curves[:, -1, 0] - curves[:, 0, 0]
        order = np.argsort(gain, kind='stable')
        names = [run.images(dataset)[i] for i in order]
        colour = np.where(gain[order] > 0, 'tab:green', np.where(gain[order] < 0, 'tab:red', 'tab:gray'))
        x = np.arange(n)
        bars = ax.bar(x, gain[order], color=colour, width=0.8 if n <= 200 else 1.0, lw=0)
        if side:  # few bars: print each gain (a -0.001 dB bar is invisible but counts as "hurts")
            ax.bar_label(bars, fmt='%+.3f', fontsize=7, padding=2)
        ax.axhline(0, color='black', lw=0.8)
        noisy = [run.noisy(dataset, im) for im in run.images(dataset)]
        below = ''
        if all(v is not None for v in noisy):
            worse = curves[:, -1, 0] < np.array([v[0] for v in noisy])
            ax.plot(x[worse[order]], gain[order][worse[order]], 'v', color='black', ms=5)
            below = f'; {int(worse.sum())} end below their noisy input' + (' (▼)' if worse.any() else '')
        helps, hurts = int((gain > 0).sum()), int((gain < 0).sum())
        width = 48 if side else 95
        head = '\n'.join(textwrap.wrap(labels[run.folder], width))
        body = f'helps {helps} of {n} images, hurts {hurts}; mean {gain.mean():+.3f} dB{below}'
        body = '\n'.join(textwrap.wrap(body, width))
        ax.set_title(f'{head}\n{body}', fontsize=9, color=colours[run.folder])
        if ax is axes[0] or not side:
            ax.set_ylabel(f'PSNR gain, step {run.steps} − 0 (dB)')
        ax.grid(axis='y', alpha=0.3)
        ax.set_xlim(-0.6, n - 0.4)
        if n <= 40:
            ax.set_xticks(x, names, rotation=90 if n > 6 else 0, fontsize=7 if n > 6 else 8)
        else:
            ax.set_xticks([])
        if side or ax is axes[-1]:
            ax.set_xlabel(f'{dataset}: images, sorted by gain')
    return fig


# ---------------------------------------------------------------------------------------------------------------------
# Fig. 4 / Fig. 6: the noise


def read_rgb(path):
    """A saved 8-bit PNG as float32 in [0, 1]: H, W, 3 (RGB) for colour, H, W, 1 for grey images."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f'{path}: not a readable image')
    if img.ndim == 2:
        img = img[..., None]
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    scale = 65535. if img.dtype == np.uint16 else 255.
    return img.astype(np.float32) / scale


def train_noise_model(run):
    """The noise model of ``report.train_noise`` (``report.json``), or None when the run declares none."""
    spec = run.report_opt.get('train_noise')
    if not spec:
        return None
    return build_from_registry(NOISE_REGISTRY, spec, where=f'{run.folder}/report.json: train_noise')


def noise_residuals(run, dataset, image, seed=0):
    """The noise pictures of one image (H, W, 3 float32 arrays in 0-255 units, or None where unavailable).

    ``noisy`` y = input − tanh φ, ``adapted`` y + tanh φ (``offsets/``, exact floats), ``offset`` tanh φ;
    ``before`` = y − x̂₀ (x̂₀: the step-0 output, ``compare/*_step0.png``), ``after`` = y + tanh φ − x̂ (x̂: the final
    output, ``visualization/``); ``clean`` c: the GT if saved, else x̂₀; with ``report.train_noise``: ``train`` =
    clip(c + n, 0, 1) − c for n drawn from the training noise model on c, as the training data clipped it, and
    ``clean_train`` = clip(c + n, 0, 1).
    The PNG outputs are 8-bit: the residuals carry their rounding (±0.5 in 0-255 units).
    """
    if run.selects:
        raise DataError(f'{run.folder}: its visualization/ PNGs are the images adapt.select chose, not the last '
                        "step's; the noise pictures need a run without adapt.select")
    paths = run.offset_paths(dataset, image)
    step0, final = run.image_path('step0', dataset, image), run.image_path('adapted', dataset, image)
    if paths is None or step0 is None or final is None:
        missing = 'offsets (adapt.save_offset)' if paths is None else 'compare/ and visualization/ PNGs'
        raise DataError(f'{run.folder}: {dataset}/{image} has no saved {missing}; rerun with adapt.save_offset=True '
                        'adapt.save_compare=True (and val.save_img=True)')
    phi, adapted = (np.load(p).astype(np.float32).transpose(1, 2, 0) for p in paths)
    offset = np.tanh(phi)
    noisy = adapted - offset
    x0, xn = read_rgb(step0), read_rgb(final)
    if x0.shape != noisy.shape or xn.shape != noisy.shape:
        raise DataError(f'{run.folder}: {dataset}/{image}: the saved images ({x0.shape}) and offsets '
                        f'({noisy.shape}) differ in size')
    out = {
        'noisy': noisy * 255,
        'adapted': adapted * 255,
        'offset': offset * 255,
        'before': (noisy - x0) * 255,
        'after': (adapted - xn) * 255,
        'train': None,
        'clean_train': None
    }
    gt = run.image_path('gt', dataset, image)
    clean = read_rgb(gt) if gt else x0
    out['clean'] = clean * 255
    model = train_noise_model(run)
    if model is not None:
        rng = np.random.default_rng(seed)
        noisy_train = np.clip(model(clean, rng), 0, 1)
        out['train'] = (noisy_train - clean) * 255
        out['clean_train'] = noisy_train * 255
    return out


def _w1(a, b):
    from scipy.stats import wasserstein_distance
    return float(wasserstein_distance(a.ravel(), b.ravel()))


def noise_stats(residuals):
    """Std of each noise (0-255 units), its 1-Wasserstein distance to the training noise, the offset's size."""
    stats = {'max_abs_offset': float(np.abs(residuals['offset']).max())}
    for key in ('train', 'before', 'after'):
        stats[f'std_{key}'] = float(residuals[key].std()) if residuals[key] is not None else math.nan
    for key in ('before', 'after'):
        stats[f'w1_{key}'] = _w1(residuals[key], residuals['train']) if residuals['train'] is not None else math.nan
    return stats


def _centre_crop(img, size):
    h, w = img.shape[:2]
    size = min(size, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    return img[top:top + size, left:left + size]


def _noise_rgb(noise, scale):
    return np.clip(0.5 + noise / (2 * scale), 0, 1)


def _show(ax, img):
    """imshow of an H, W, C image in [0, 1]; grey (C = 1) with a grey colour map."""
    if img.shape[2] == 1:
        ax.imshow(img[..., 0], cmap='gray', vmin=0, vmax=1, interpolation='nearest')
    else:
        ax.imshow(img, interpolation='nearest')


def _histograms(ax, residuals, limit, log=False):
    bins = np.linspace(-limit, limit, 121)
    for key in ('train', 'before', 'after'):
        if residuals.get(key) is None:
            continue
        values = residuals[key].ravel()
        ax.hist(
            values,
            bins=bins,
            density=True,
            histtype='step',
            lw=1.6,
            color=NOISE_COLOURS[key],
            label=f'{NOISE_NAMES[key]}, std {values.std():.2f}')
    ax.set_xlabel('noise value (0-255 units)')
    ax.set_ylabel('density' + (' (log scale)' if log else ''))
    if log:
        ax.set_yscale('log')
    ax.grid(alpha=0.3)


def _limit(residuals):
    spread = max(float(residuals[k].std()) for k in ('train', 'before', 'after') if residuals.get(k) is not None)
    return max(4 * spread, 1.)


def fig4(residuals, title, crop=96):
    """Fig. 4 for one image: top, the inputs (clean + training noise, noisy y, adapted y + tanh φ) and the offset;
    bottom, their noise (centre crop, one grey scale: ±3 std of the training noise) and the histograms overlaid."""
    fig = Figure(figsize=(13.5, 7), layout='constrained')
    axes = fig.subplots(2, 4)
    ref = residuals['train'] if residuals['train'] is not None else residuals['before']
    scale = 3 * float(ref.std()) or 1.
    tops = [('clean + training noise', residuals['clean_train']), ('noisy input y', residuals['noisy']),
            ('adapted input y + tanh φ', residuals['adapted'])]
    for ax, (name, img) in zip(axes[0], tops):
        if img is None:
            ax.text(0.5, 0.5, 'training noise not declared\n(report.train_noise)', ha='center', va='center')
        else:
            _show(ax, np.clip(_centre_crop(img, crop) / 255, 0, 1))
        ax.set_title(name, fontsize=10)
    offset = _centre_crop(residuals['offset'], crop)
    peak = float(np.abs(residuals['offset']).max()) or 1.
    _show(axes[0, 3], _noise_rgb(offset, peak))
    axes[0, 3].set_title(f'offset tanh φ (grey = 0, full scale ±{peak:.2f})', fontsize=10)
    bottoms = [('train', 'training noise'), ('before', 'before: y − x̂ (step 0)'),
               ('after', 'after: y + tanh φ − x̂ (last step)')]
    for ax, (key, name) in zip(axes[1], bottoms):
        if residuals[key] is None:
            ax.text(0.5, 0.5, 'not declared', ha='center', va='center')
        else:
            _show(ax, _noise_rgb(_centre_crop(residuals[key], crop), scale))
        ax.set_title(f'{name} (±{scale:.0f})', fontsize=10, color=NOISE_COLOURS[key])
    for ax in list(axes[0]) + list(axes[1, :3]):
        ax.set_xticks([])
        ax.set_yticks([])
    _histograms(axes[1, 3], residuals, _limit(residuals))
    axes[1, 3].legend(fontsize=6.5, loc='upper right')
    axes[1, 3].set_title('histograms (whole image)', fontsize=10)
    fig.suptitle(
        f'{title}; noise maps: centre {min(crop, *residuals["noisy"].shape[:2])} px crop, values in 0-255 '
        'units',
        fontsize=11)
    return fig


def fig6(pooled, title):
    """Fig. 6: histograms of the training noise and of the noise before and after adaptation (pooled over images),
    linear and log density, and each noise's std against the clean intensity (``pooled['clean']``), which shows whether
    signal-dependent noise was made to look like signal-independent training noise."""
    intensity = pooled.get('clean')
    panels = 3 if intensity is not None else 2
    fig = Figure(figsize=(5 * panels, 4.4), layout='constrained')
    axes = fig.subplots(1, panels)
    limit = _limit(pooled)
    _histograms(axes[0], pooled, limit)
    _histograms(axes[1], pooled, limit, log=True)
    axes[0].legend(fontsize=7, loc='upper right')
    stats = noise_stats(pooled)
    if not math.isnan(stats['w1_before']):
        axes[1].set_title(
            f'distance to the training noise (1-Wasserstein): before {stats["w1_before"]:.3f}, '
            f'after {stats["w1_after"]:.3f}',
            fontsize=8.5)
    if intensity is not None:
        ax = axes[2]
        bins = np.linspace(0, 255, 17)
        centres = (bins[:-1] + bins[1:]) / 2
        which = np.clip(np.digitize(intensity.ravel(), bins) - 1, 0, len(centres) - 1)
        for key in ('train', 'before', 'after'):
            if pooled.get(key) is None:
                continue
            values = pooled[key].ravel()
            std = np.array([values[which == b].std() if (which == b).sum() > 50 else np.nan for b in range(16)])
            ax.plot(centres, std, marker='o', ms=3, color=NOISE_COLOURS[key], label=NOISE_NAMES[key])
        ax.set_xlabel('clean intensity (GT, else the step-0 output; 0-255)')
        ax.set_ylabel('noise std in that intensity bin (0-255 units)')
        ax.set_xlim(0, 255)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title('signal dependence (bins with > 50 values)', fontsize=9)
    fig.suptitle(title, fontsize=11)
    return fig
