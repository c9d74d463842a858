"""Ground-truth-free choice, per image, of the adaptation step to keep (``adapt.select``), and of a blend with the
noisy input.

A rule is an observer of the adaptation loop: ``start(lq)`` with the noisy images (B,C,H,W), then
``rule(step, adapted_input, output, losses)`` at every scored step (``losses`` None at the last step), then
``finish()`` gives one :class:`Selection` per image. It sees what the loop computes anyway (the adapted input, the
network output, the loss) and the noisy image; it never sees ground truth, and it draws no random numbers, so the
adaptation (per_step.csv) is the same with and without it.

Rules (``SELECT_REGISTRY``):

- ``last``: the last step (the default; no selection files are written).
- ``SubImageScore`` (the one to use): a held-out score on sub-image pairs, ZS-N2N's diagonal downsampler on cells
  the loss does not train on, the first cell ranking and coarser cells guarding against spatially correlated noise,
  with the blend weight α in closed form (see the class).
- ``ResidualSURE``: Stein's unbiased risk estimate of each candidate's MSE, its divergence term probed with the
  pretrained network's residual, which keeps the noise's spatial correlation (camera noise), where white-noise SURE
  assumes independent pixels; the blend weight α in closed form, optional sub-image guard cells (see the class).
- ``PixelBankScore``: a held-out noise-to-noise score. For every pixel p the pixel bank (:mod:`lan_basicsr.losses.
  pixel_bank_loss`) names pixels q outside p's neighbourhood whose patches resemble p's; their mean m_p is a noisy
  estimate of p's clean value whose noise is independent of p's own (for noise correlated over fewer than
  ``exclude`` pixels). ``score(o) = mean((o - m)^2)`` then ranks candidate outputs o like their MSE against the
  clean image: ``E score = MSE(o) + const`` up to the bank's own error and the (small) weight the network gives to
  the bank pixels. The same score ranks the noisy input itself, so with ``blend`` the rule also picks, in closed form,
  the weight α in ``α·output + (1 - α)·noisy`` (α in [0, 1], one per image) that minimises it: "do nothing" is always
  a candidate. For comparison only: in practice the bank's regression to the mean makes it prefer smoother
  outputs (a synthetic check in docs/selection.md ranked a worse, smoother step first).
- ``WindowedVariance``: ES-WMV (Wang et al., "Early stopping for untrained neural networks", 2021): the step in
  the middle of the window of ``window`` successive outputs whose variance is smallest; blind to the noisy input.

Ties keep the earlier step. The score is the rule's own number (lower is better), comparable between runs on the same
image with the same rule settings (the report chooses a method per image with it).
"""
import math
from typing import NamedTuple

import torch

from lan_basicsr.losses.pixel_bank_loss import _check_bank_args, bank_mean, build_pixel_bank
from lan_basicsr.utils.errors import DataError, OptionError
from lan_basicsr.utils.option_schema import Registered, Spec
from lan_basicsr.utils.registry import SELECT_REGISTRY, build_from_registry, check_registered

__all__ = [
    'Selection', 'StepSelector', 'Last', 'SubImageScore', 'ResidualSURE', 'PixelBankScore', 'WindowedVariance',
    'build_selector', 'is_last', 'SelectSpec', 'diagonal_pairs', 'block_signs', 'LAST'
]

LAST = 'last'


class Selection(NamedTuple):
    """One image's choice: ``output = alpha * network output at step + (1 - alpha) * noisy input``."""
    step: int
    alpha: float
    score: float  # the rule's score of the choice, lower is better (NaN: the rule has none)
    output: torch.Tensor  # 1,C,H,W, detached, clipped to [0, 1]


def is_last(select):
    """Whether ``adapt.select`` asks for no selection (None, ``last`` or ``{type: Last}``)."""
    if select is None or (isinstance(select, str) and select.lower() == LAST):
        return True
    return isinstance(select, dict) and select.get('type') == 'Last' and len(select) == 1


class SelectSpec(Spec):
    """Option rule of ``adapt.select``: null, ``last``, a rule name, or ``{type: <rule>, ...its arguments}``."""

    what = 'last, a selection rule name or {type: <rule>, ...its arguments}'

    def check(self, value, keys, ctx):
        if value is None or isinstance(value, str) and value.lower() == LAST:
            return
        Registered('select', what=self.what).check({'type': value} if isinstance(value, str) else value, keys, ctx)


def build_selector(select):
    """``adapt.select``: None / ``last`` (no selection: returns None), a rule name, or ``{type: rule, **args}``."""
    if is_last(select):
        return None
    if isinstance(select, str):
        select = {'type': select}
    if not isinstance(select, dict):
        raise OptionError(f'adapt.select: expected "last", a rule name or {{type: rule, ...}}, got {select!r} '
                          f'(rules: {", ".join(sorted(SELECT_REGISTRY.keys()))})')
    check_registered(SELECT_REGISTRY, select.get('type'), 'adapt.select.type')
    if select['type'] == 'Last':
        return None
    try:
        return build_from_registry(SELECT_REGISTRY, select, where='adapt.select')
    except (TypeError, ValueError) as e:
        raise OptionError(f'adapt.select: {e}') from None


class StepSelector:
    """Base class of the rules: per image, keep the best-scoring (step, α) seen so far and its output.

    Subclasses implement :meth:`prepare` (per batch, from the noisy images) and :meth:`score` (per step: the score
    and α of every image, each B). The loop may adapt an image a second time alone (after a non-finite step); every
    observation starting at step 0 opens a new *pass*, and :meth:`finish` maps the later passes to the images they
    replayed.
    """

    candidates = 'all'  # 'ends': only step 0 and the last step observed (set by the rules that offer it)

    def start(self, lq):
        """A new batch of noisy images ``lq`` (B,C,H,W)."""
        self.lq = lq.detach()
        self.passes = []

    def prepare(self, lq):
        """Per-pass state computed from the noisy images of the pass (B,C,H,W)."""
        return None

    def score(self, state, step, adapted_input, output, losses):
        """``(score, alpha)`` of every image of the pass at this step, each a B tensor (lower score is better)."""
        raise NotImplementedError

    def __call__(self, step, adapted_input, output, losses=None):
        if step == 0 or not self.passes:
            rows = output.shape[0]
            lq = self.lq if rows == self.lq.shape[0] else None  # a replay: its image is found in finish()
            self.passes.append({'rows': rows, 'lq': lq, 'state': None, 'best': None, 'pending': []})
        run = self.passes[-1]
        if run['lq'] is None:  # keep a replay's observations until its image is known
            run['pending'].append((step, adapted_input.detach(), output.detach(), losses))
            return
        self._observe(run, step, adapted_input, output, losses)

    def _observe(self, run, step, adapted_input, output, losses):
        if run['state'] is None:
            run['state'] = self.prepare(run['lq'])
        out = output.detach().clamp(0, 1)
        score, alpha = self.score(run['state'], step, adapted_input, out, losses)
        score = torch.nan_to_num(score.detach().double(), nan=math.inf)
        alpha = alpha.detach().double()
        # (out is clamp's own new tensor: the kept outputs need no copy)
        observed = {'score': score, 'alpha': alpha, 'step': torch.full_like(score, step), 'output': out}
        if run['best'] is None:
            run['best'] = observed
        elif self.candidates == 'ends':  # the latest step stands in for the last until finish()
            run['latest'] = observed
        else:
            self._keep_better(run['best'], observed)

    @staticmethod
    def _keep_better(best, observed):
        """Per image, replace ``best`` by ``observed`` where its score is lower (ties keep the earlier step)."""
        score = observed['score']
        better = score < best['score']
        for key in ('score', 'alpha', 'step'):
            best[key] = torch.where(better, observed[key], best[key])
        best['output'][better] = observed['output'][better]

    def finish(self, replayed=None):
        """One :class:`Selection` per image of the batch. A later pass (an image adapted again alone) replaces that
        image's observations; the image is the one whose noisy input equals the pass's step-0 input (every adapter
        starts from the noisy image), or ``replayed[k]`` for the k-th later pass when given."""
        if not self.passes:
            raise RuntimeError('step selection: the loop observed no step')
        first, later = self.passes[0], self.passes[1:]
        if replayed is not None and len(replayed) != len(later):
            raise RuntimeError(f'step selection: {len(later)} replayed passes for {len(replayed)} replayed images')
        runs = [(first, i) for i in range(first['rows'])]
        for k, run in enumerate(later):
            image = replayed[k] if replayed is not None else self._replayed_image(run)
            run['lq'] = self.lq[image:image + 1]
            for observation in run['pending']:
                self._observe(run, *observation)
            runs[image] = (run, 0)
        for run, _ in runs:
            if run.get('latest') is not None:  # candidates 'ends': step 0 against the last step observed
                self._keep_better(run['best'], run.pop('latest'))
        selections = []
        for run, i in runs:
            best = run['best']
            alpha = float(best['alpha'][i])
            out = best['output'][i:i + 1]
            if alpha != 1.0:
                out = (alpha * out + (1 - alpha) * run['lq'][i:i + 1]).clamp(0, 1)
            score = float(best['score'][i])
            selections.append(Selection(int(best['step'][i]), alpha, math.nan if math.isinf(score) else score, out))
        return selections

    def _replayed_image(self, run):
        start = run['pending'][0][1] if run['pending'] else None
        if start is None and run['lq'] is not None and self.lq.shape[0] == 1:
            return 0
        for i in range(self.lq.shape[0]):
            if start is not None and torch.equal(start, self.lq[i:i + 1]):
                return i
        raise RuntimeError('step selection: an image was adapted again, but its first input matches no noisy image '
                           'of the batch')


@SELECT_REGISTRY.register()
class Last(StepSelector):
    """The last step, no blend (the default: ``adapt.select: last`` writes no selection files)."""

    def score(self, state, step, adapted_input, output, losses):
        n = output.shape[0]
        return torch.full((n, ), -float(step), device=output.device), torch.ones(n, device=output.device)


@SELECT_REGISTRY.register()
class SubImageScore(StepSelector):
    """Held-out sub-image score (ZS-N2N's downsampler generalised), lower is better; see the module doc.

    Every ``cell`` x ``cell`` cell of the noisy image y gives two sub-image pixels, the means of its two diagonals'
    corner pixels (``cell: 2`` is ZS-N2N's pair downsampler). Both have the same centre, so their clean values differ
    only by a mixed second derivative (not by the blur a smoothing denoiser leaves), and their pixels are
    ``cell - 1`` apart, so their noise is independent when it is correlated over fewer pixels. A candidate's score is
    ``(mean((g(D1) - D2 y)^2) + mean((g(D2) - D1 y)^2)) / 2`` where ``g`` is the step's denoiser (the network on the
    sub-image of the adapted input) or, with ``blend``, ``α g + (1 - α) · identity`` with the α in [0, 1] that
    minimises the score (closed form; α = 0 is the noisy input).

    ``cell`` may be a list: the first cell's score ranks the candidates; every other cell is a guard: a candidate
    whose score there is worse than the plain step-0 output's is never chosen (step 0 always can be). Small cells
    see fine detail but are fooled by spatially correlated noise (it makes the noisy input look good); large cells
    see through correlation over ``cell - 2`` pixels but judge at a coarser scale. ``[2, 4]`` ranks at the fine
    scale and lets nothing through that the coarse scale calls worse than doing nothing.

    Cells start at (``offset``, ``offset``): with the default 1 they are not the cells ZS-N2N trains on, so the score
    does not reward fitting the training pairs. Costs two no-grad forwards of the network on 1/cell^2-size images per
    step and cell.

    ``candidates: ends`` considers step 0 and the last step only; ``margin`` m makes every later step beat step 0 by
    m x the cell's noise scale (the power of the noisy sub-image gap, ``mean((D2 y - D1 y)^2)``) on the ranking cell
    and on every guard cell. With ``ends`` and ``blend: false`` the rule keeps the last step when every cell prefers
    it to step 0 by the margin, else step 0 (docs/selection.md, the third study).

    Args:
        cell (int | list[int]): >= 2 each. Default: [2, 4].
        offset (int): first row/column of the cells, in [0, min(cell)). Default: 1.
        blend (bool): also choose α. Default: True.
        blend_cell (int | None): the cell whose score chooses α (one of ``cell``); None: the first.
        candidates (str): ``all`` (every step) or ``ends`` (step 0 or the last step). Default: all.
        margin (float): >= 0, in units of each cell's noise scale. Default: 0.
    """

    def __init__(self, cell=(2, 4), offset=1, blend=True, blend_cell=None, candidates='all', margin=0.0):
        cells = [cell] if isinstance(cell, int) else list(cell)
        if not cells or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 2 for c in cells):
            raise ValueError(f'SubImageScore: cell must be an integer >= 2 or a list of them, got {cell!r}')
        if not (isinstance(offset, int) and 0 <= offset < min(cells)):
            raise ValueError(f'SubImageScore: offset must be an integer in [0, {min(cells)}), got {offset!r}')
        if blend_cell is not None and blend_cell not in cells:
            raise ValueError(f'SubImageScore: blend_cell {blend_cell!r} is not one of the cells {cells}')
        self.cells, self.offset, self.blend = cells, offset, bool(blend)
        self.blend_index = 0 if blend_cell is None else cells.index(blend_cell)
        self.candidates, self.margin = _check_candidates('SubImageScore', candidates, margin)
        self.net = None

    def bind(self, net):
        """The network the loop runs (called by the loop before the first step of every image)."""
        self.net = net

    def prepare(self, lq):
        pairs = _sub_image_pairs(lq, self.cells, self.offset, 'SubImageScore')
        return {'pairs': pairs, 'reference': None, 'margins': self.margin * torch.stack(_gap_powers(pairs))}

    def score(self, state, step, adapted_input, output, losses):
        terms = _sub_image_terms(self.net, adapted_input, state['pairs'], self.cells, self.offset, 'SubImageScore')
        ones = torch.ones_like(terms[0][0][:, 0])
        alpha = _best_alpha(*terms[self.blend_index]) if self.blend else ones
        scores = torch.stack([_blend_score(alpha, *t) for t in terms])  # cells,B
        if state['reference'] is None:  # step 0 unblended: the guard's reference
            state['reference'] = torch.stack([_blend_score(ones, *t) for t in terms])
        return _guarded(step, scores[0], alpha, scores[1:], state['reference'][0], state['reference'][1:],
                        state['margins'])


def _sub_image_pairs(lq, cells, offset, rule):
    """Per cell, the (D1, D2) sub-images of the noisy images (double), or a DataError for images too small."""
    pairs = []
    for cell in cells:
        d1, d2 = diagonal_pairs(lq, cell, offset)
        if d1.numel() == 0:
            raise DataError(f'adapt.select: an image of {lq.shape[-2]}x{lq.shape[-1]} pixels is too small for '
                            f'{rule} cell {cell} (it needs at least {cell + offset} rows and columns); '
                            'use smaller cells or larger images')
        pairs.append((d1.double(), d2.double()))
    return pairs


def _sub_image_terms(net, adapted_input, pairs, cells, offset, rule):
    """Per cell, ``(change, gap)`` (B,N each): a blend's sub-image score is ``mean((α change - gap)^2)``."""
    if net is None:
        raise RuntimeError(f'{rule}: no network bound (the loop calls bind(net) before the first step)')
    terms = []
    for cell, (d1, d2) in zip(cells, pairs):
        x1, x2 = diagonal_pairs(adapted_input.detach(), cell, offset)
        with torch.no_grad():
            p1, p2 = net(x1).clamp(0, 1).double(), net(x2).clamp(0, 1).double()
        change = torch.cat([(p1 - d1).flatten(1), (p2 - d2).flatten(1)], 1)
        terms.append((change, torch.cat([(d2 - d1).flatten(1), (d1 - d2).flatten(1)], 1)))
    return terms


def _guarded(step, score, alpha, guards, reference, guard_references, margins=None):
    """``(score, α)`` after the guards: a candidate that a guard cell scores worse than the plain step-0 output is
    never chosen (its score becomes inf), except at step 0, which then falls back to the unblended step 0 (score
    ``reference``), always allowed. ``guards`` / ``guard_references``: G,B (G may be 0). ``margins`` (1+G,B, optional):
    a handicap added to every later step's ranking score and guard scores, so that a step must beat step 0 by it."""
    if step > 0 and margins is not None:
        score, guards = score + margins[0], guards + margins[1:]
    fine = (guards <= guard_references).all(0)
    if step == 0:
        return torch.where(fine, score, reference), torch.where(fine, alpha, torch.ones_like(alpha))
    return torch.where(fine, score, torch.full_like(score, math.inf)), alpha


def _check_candidates(rule, candidates, margin):
    """Validate the ``candidates`` / ``margin`` arguments shared by the scoring rules."""
    if candidates not in ('all', 'ends'):
        raise ValueError(f'{rule}: candidates must be "all" (every step) or "ends" (step 0 or the last step), '
                         f'got {candidates!r}')
    if not (isinstance(margin, (int, float)) and not isinstance(margin, bool) and margin >= 0):
        raise ValueError(f'{rule}: margin must be a number >= 0, got {margin!r}')
    return candidates, float(margin)


def _gap_powers(pairs):
    """Per cell, the power of the noisy sub-image gap ``mean((D2 y - D1 y)^2)`` (B): the cell's noise scale."""
    return [(d2 - d1).square().flatten(1).mean(1) for d1, d2 in pairs]


def _blend_score(alpha, change, gap):
    return (alpha.unsqueeze(1) * change - gap).square().mean(1)


def diagonal_pairs(img, cell=2, offset=0):
    """The two sub-images of ``img`` (B,C,H,W) whose pixels average the anti-diagonal (D1) and the diagonal (D2)
    corners of each ``cell`` x ``cell`` cell, cells starting at (offset, offset); a ragged edge is left out.
    ``cell: 2, offset: 0`` is ZS-N2N's pair downsampler."""
    h, w = img.shape[-2:]
    rows, cols = (h - offset) // cell * cell, (w - offset) // cell * cell
    x = img[..., offset:offset + rows, offset:offset + cols]
    last = cell - 1
    d1 = 0.5 * (x[..., 0::cell, last::cell] + x[..., last::cell, 0::cell])
    d2 = 0.5 * (x[..., 0::cell, 0::cell] + x[..., last::cell, last::cell])
    return d1, d2


def _best_alpha(change, gap):
    """Per row, the α in [0, 1] minimising ``||α change - gap||^2`` (1 where ``change`` is zero)."""
    power = change.square().sum(1)
    alpha = torch.where(power > 0, (change * gap).sum(1) / power.clamp_min(1e-300), torch.ones_like(power))
    return alpha.clamp(0, 1)


@SELECT_REGISTRY.register()
class ResidualSURE(StepSelector):
    """Stein's unbiased risk estimate of each candidate's MSE, probed with the step-0 residual; lower is better.

    For noisy y = x + n and a candidate g(y) = α f(y) + (1 - α) y, ``mean((g - x)^2) = α² P + 2 α C + T`` with
    ``P = mean((f - y)^2)``, ``C = mean((f - y) n)`` and ``T = mean(n^2)``. For Gaussian noise of covariance Σ,
    Stein's lemma gives ``E C = (tr(J Σ) - tr Σ) / N`` (J the Jacobian of f at y), and ``tr(J Σ) = E z^T J z`` for a
    probe z of covariance Σ, computed as ``z^T (f(y + ε z) - f(y)) / ε`` (one no-grad forward per step). White-noise
    SURE draws z with independent pixels; camera noise is correlated over a few pixels (demosaicing, JPEG), so the
    probe here is the step-0 residual ``r = y - f_0(y)``, the noise as the pretrained network sees it, which keeps the
    noise's spatial and cross-channel correlation and its signal dependence; ``T`` is estimated by ``mean(r^2)``. The
    score is ``α² P + 2 α (d - T)``, d the probe (an estimate of the MSE minus T, the same constant for every
    candidate of an image); with ``blend`` α in [0, 1] minimises it in closed form (α = 0: the noisy input), without
    it α = 1. ``block`` flips the probe's sign at random on ``block`` x ``block`` blocks (the same sign over the
    channels; seeded with ``seed``, never the global generator): the expectation then keeps only the covariance
    inside blocks, a bias that shrinks as blocks grow (kept for comparison; ``block: 1`` is white-noise SURE).

    Its weak point is the residual: where the pretrained network leaves much of the noise in (a noise it was not
    trained for), ``mean(r^2)`` underestimates the noise and the score favours outputs that keep noise. ``guard``
    cells (as :class:`SubImageScore`'s) then forbid any candidate that a coarse sub-image score calls worse than the
    plain step-0 output. Cost: one no-grad forward of the full image per step, plus the guards'.

    Args:
        block (int | None): side of the blocks of one sign; None: the residual as it is. Default: None.
        eps (float): the probe's step, as a fraction of the residual. Default: 0.1.
        blend (bool): also choose α. Default: True.
        guard (list[int]): sub-image cells that guard (none by default).
        offset (int): first row/column of the guard cells. Default: 1.
        seed (int): the sign field's seed (with ``block``). Default: 0.
        candidates (str): ``all`` (every step) or ``ends`` (step 0 or the last step), as :class:`SubImageScore`'s.
            Default: all.
        margin (float): >= 0: every later step must beat step 0 by ``margin`` x the residual's power on the score
            and by ``margin`` x each guard cell's noise scale there. Default: 0.
    """

    def __init__(self, block=None, eps=0.1, blend=True, guard=(), offset=1, seed=0, candidates='all', margin=0.0):
        cells = [guard] if isinstance(guard, int) else list(guard or [])
        if not (block is None or isinstance(block, int) and not isinstance(block, bool) and block >= 1):
            raise ValueError(f'ResidualSURE: block must be null or an integer >= 1, got {block!r}')
        if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > 0):
            raise ValueError(f'ResidualSURE: eps must be a number > 0, got {eps!r}')
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 2 for c in cells):
            raise ValueError(f'ResidualSURE: guard must be a list of integers >= 2, got {guard!r}')
        if cells and not (isinstance(offset, int) and 0 <= offset < min(cells)):
            raise ValueError(f'ResidualSURE: offset must be an integer in [0, {min(cells)}), got {offset!r}')
        self.block, self.eps, self.blend = block, float(eps), bool(blend)
        self.guard, self.offset, self.seed = cells, offset, seed
        self.candidates, self.margin = _check_candidates('ResidualSURE', candidates, margin)
        self.net = None

    def bind(self, net):
        """The network the loop runs (called by the loop before the first step of every image)."""
        self.net = net

    def prepare(self, lq):
        pairs = _sub_image_pairs(lq, self.guard, self.offset, 'ResidualSURE guard') if self.guard else []
        return {'lq': lq.double(), 'probe': None, 'pairs': pairs, 'reference': None}

    def score(self, state, step, adapted_input, output, losses):
        if self.net is None:
            raise RuntimeError('ResidualSURE: no network bound (the loop calls bind(net) before the first step)')
        lq, out = state['lq'], output.double()
        if state['probe'] is None:  # step 0: the residual of the pretrained network
            probe = lq - out
            state['noise_power'] = probe.square().flatten(1).mean(1)
            if self.block is not None:
                probe = block_signs(probe.shape, self.block, self.seed).to(probe.device) * probe
            state['probe'] = probe
            # the handicap of every later step: the score's and each guard cell's noise scale, fixed per image
            state['margins'] = self.margin * torch.stack([state['noise_power']] + _gap_powers(state['pairs']))
        probe = state['probe']
        with torch.no_grad():
            moved = self.net(adapted_input.detach() + (self.eps * probe).to(adapted_input.dtype)).clamp(0, 1)
        divergence = (probe * (moved.double() - out)).flatten(1).mean(1) / self.eps
        cross = divergence - state['noise_power']  # estimates mean((f - y) n)
        power = (out - lq).square().flatten(1).mean(1)
        ones = torch.ones_like(power)
        alpha = (-cross / power.clamp_min(1e-300)).clamp(0, 1) if self.blend else ones
        alpha = torch.where(power > 0, alpha, ones)
        score = alpha.square() * power + 2 * alpha * cross
        margins = state['margins']
        if not self.guard:
            return (score + margins[0] if step > 0 else score), alpha
        terms = _sub_image_terms(self.net, adapted_input, state['pairs'], self.guard, self.offset, 'ResidualSURE')
        guards = torch.stack([_blend_score(alpha, *t) for t in terms])
        if state['reference'] is None:
            state['reference'] = (power + 2 * cross, torch.stack([_blend_score(ones, *t) for t in terms]))
        return _guarded(step, score, alpha, guards, *state['reference'], margins)


def block_signs(shape, block, seed):
    """Random ±1 (double) of ``shape`` (B,C,H,W), constant on ``block`` x ``block`` blocks and over channels, each
    image drawn from a generator seeded with ``seed`` (every image of a size gets the same field)."""
    b, _, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    rows, cols = -(-h // block), -(-w // block)
    field = torch.randint(0, 2, (1, 1, rows, cols), generator=gen).double() * 2 - 1
    field = field.repeat_interleave(block, 2).repeat_interleave(block, 3)[..., :h, :w]
    return field.expand(b, 1, h, w)


@SELECT_REGISTRY.register()
class PixelBankScore(StepSelector):
    """Held-out pixel-bank score ``mean((output - bank mean)^2)``; with ``blend`` also the best α (see module doc).

    Args:
        bank_size, window, patch, exclude: the pixel bank (:func:`~lan_basicsr.losses.pixel_bank_loss.
            build_pixel_bank`; the pixel itself is never in it). Defaults 8, 21, 7, 2.
        blend (bool): also choose α in ``α·output + (1 - α)·noisy``, α in [0, 1]. Default: True.
    """

    def __init__(self, bank_size=8, window=21, patch=7, exclude=2, blend=True):
        _check_bank_args(window, patch, bank_size, exclude)
        self.bank_opt = dict(bank_size=bank_size, window=window, patch=patch, exclude=exclude)
        self.blend = bool(blend)

    def prepare(self, lq):
        bank = build_pixel_bank(lq, include_self=False, **self.bank_opt)
        return {'lq': lq.double(), 'mean': bank_mean(lq, bank).double()}

    def score(self, state, step, adapted_input, output, losses):
        lq, target = state['lq'], state['mean']
        change = (output.double() - lq).flatten(1)  # the candidate is lq + alpha * change
        gap = (target - lq).flatten(1)
        alpha = _best_alpha(change, gap) if self.blend else torch.ones_like(change[:, 0])
        score = (alpha.unsqueeze(1) * change - gap).square().mean(1)
        return score, alpha


@SELECT_REGISTRY.register()
class WindowedVariance(StepSelector):
    """ES-WMV: the middle step of the ``window`` successive outputs with the smallest variance (no blend).

    Args:
        window (int): outputs per window (>= 2). Default: 3.
    """

    def __init__(self, window=3):
        if not (isinstance(window, int) and window >= 2):
            raise ValueError(f'WindowedVariance: window must be an integer >= 2, got {window!r}')
        self.window = window

    def prepare(self, lq):
        return {'recent': []}

    def _observe(self, run, step, adapted_input, output, losses):
        # The score of step s is known only once the window centred on s is complete: score the centre step then.
        if run['state'] is None:
            run['state'] = self.prepare(run['lq'])
        recent = run['state']['recent']
        recent.append((step, output.detach().clamp(0, 1)))
        if len(recent) > self.window:
            recent.pop(0)
        if step == 0:  # step 0 stands until a full window scores lower
            super()._observe(run, 0, adapted_input, recent[0][1], None)
            run['best']['score'].fill_(math.inf)
            return
        if len(recent) == self.window:
            stack = torch.stack([o.double() for _, o in recent])  # W,B,C,H,W
            variance = (stack - stack.mean(0)).square().flatten(2).mean(2).mean(0)  # B
            centre_step, centre = recent[self.window // 2]
            run['state']['variance'] = variance
            super()._observe(run, centre_step, adapted_input, centre, None)

    def score(self, state, step, adapted_input, output, losses):
        n = output.shape[0]
        variance = state.get('variance', torch.full((n, ), math.inf, device=output.device))
        return variance, torch.ones(n, device=output.device)
