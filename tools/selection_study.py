# Usage: python tools/selection_study.py record -opt options/select_dncnn_synthetic.yml --out results/study/steps.csv \
#            --variants lan_zsn2n:adapt.type=LAN full_zsn2n:adapt.type=FullTrainable
#        python tools/selection_study.py analyse results/study/steps.csv [--rules ...]
"""The tuning study of the ground-truth-free step selection (``adapt.select``), in two parts.

``record``: each variant (``name:key=value,key=value``, ``--cfg-options`` of the option file) adapts every test image
once, as ``tools/test.py`` would, and every step is written with what any selection rule and its evaluation need:

- the step's PSNR and the exact quadratic MSE of every blend ``y + α (o - y)`` of the (clipped) output o with the
  noisy input y against the clean image x: ``mse(α) = mse_noisy + 2 α cross + α² power`` (GT: evaluation only);
- per cell c (:func:`lan_basicsr.models.selection.diagonal_pairs`, offset 1): the sums the sub-image score needs,
  ``cc = mean(change²)``, ``cg = mean(change · gap)``, ``gg = mean(gap²)``: score(α) = α² cc - 2 α cg + gg;
- the probes of :class:`~lan_basicsr.models.selection.ResidualSURE` (``eps`` 0.1): ``sure_T = mean(r²)`` (r the
  step-0 residual), ``sure_d`` (the residual as it is) and ``sure8_d`` (signs flipped on 8x8 blocks, seed 0):
  score(α) = α² power + 2 α (d - sure_T).
- per channel c, ``dc_noisy<c>`` = mean(y - x) (GT: evaluation only; a reference whose brightness differs from the
  noisy shot's) and ``dc_change<c>`` = mean(o - y): with them ``--reference aligned`` scores against the clean image
  shifted per channel to the noisy image's mean, x + mean(y - x), what a denoiser can know from y alone (files
  recorded before these fields were added score against x only).

``pick`` prints the ``--cfg-options`` of the rule a criterion declared in advance prefers (:func:`pick`); ``analyse``
evaluates rules offline on that file (every rule on the same adaptations): per variant and dataset, the
mean PSNR of step 0, the last step, the best step in hindsight and each rule's choice, and the number of images a rule
leaves more than 0.05 dB below step 0. The rules are the ones :class:`~lan_basicsr.models.selection.SubImageScore`
implements (``cell`` list, ``blend``), so what ``analyse`` reports is what ``adapt.select`` does.
"""
import argparse
import csv
import math
import os
import sys
from collections import OrderedDict
from os import path as osp

import yaml
from _entry import ROOT, run

CELLS = (2, 3, 4, 5, 8)
SURE_BLOCKS = {'sure': None, 'sure8': 8}  # recorded ResidualSURE probes: field prefix -> block
SURE_EPS = 0.1
_CELL_FIELDS = tuple(f'c{c}_{k}' for c in CELLS for k in ('cc', 'cg', 'gg'))
_SURE_FIELDS = ('sure_T', ) + tuple(f'{k}_d' for k in SURE_BLOCKS)
_DC_FIELDS = tuple(f'dc_{k}{c}' for k in ('noisy', 'change') for c in range(3))
_STEP_FIELDS = ('variant', 'dataset', 'image', 'step', 'psnr', 'mse_noisy', 'cross', 'power')
FIELDS = _STEP_FIELDS + _CELL_FIELDS + _SURE_FIELDS + _DC_FIELDS
DEFAULT_RULES = [
    '{cell: [2]}', '{cell: [2], blend: false}', '{cell: [4]}', '{cell: [4], blend: false}', '{cell: [2, 4]}',
    '{cell: [2, 4], blend: false}', '{cell: [2, 4], blend_cell: 4}', '{cell: [2, 8]}', '{cell: [2, 8], blend: false}',
    '{cell: [2, 8], blend_cell: 8}', '{cell: [2, 4, 8], blend: false}', '{cell: [2, 4, 8], blend_cell: 8}',
    '{cell: [3, 8], blend_cell: 8}'
]
SURE_RULES = [  # ResidualSURE (added with the camera-noise tuning sets, before they were recorded)
    '{sure: null}', '{sure: null, blend: false}', '{sure: null, guard: [4]}', '{sure: null, guard: [8]}',
    '{sure: null, blend: false, guard: [8]}', '{sure: 8}', '{sure: 8, guard: [8]}'
]
# The third study (declared 2026-12-08, before its tuning tiles were recorded): step 0 or the last step only, no blend;
# the last step is kept when every listed score prefers it to step 0 by at least ``margin`` x the score's noise scale
ENDS_SCORES = [['sure'], ['sure8'], ['c2'], ['c3'], ['c4'], ['c5'], ['c8'], ['sure', 'c8'], ['sure', 'c4'],
               ['c2', 'c8'], ['c4', 'c8'], ['c2', 'c4', 'c8'], ['sure', 'c4', 'c8']]
ENDS_RULES = [f'{{ends: [{", ".join(s)}], margin: {m}}}' for s in ENDS_SCORES for m in (0, 0.02, 0.05)]
FIXED_RULES = ['{step: 5}', '{step: 10}', '{step: 15}']  # fewer steps for every image (third study)
STUDY_RULES = {
    1: DEFAULT_RULES,
    2: DEFAULT_RULES + SURE_RULES,
    3: DEFAULT_RULES + SURE_RULES + ENDS_RULES + FIXED_RULES
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    rec = sub.add_parser('record', help='adapt and write every step')
    rec.add_argument('-opt', '--opt', required=True, help='option file (LANModel)')
    rec.add_argument('--variants', nargs='+', required=True, metavar='NAME:K=V,K=V', help='adaptation variants')
    rec.add_argument('--out', required=True, help='CSV to write (appended; finished variants are skipped)')
    rec.add_argument('--datasets', nargs='+', metavar='NAME', help='only these test datasets')
    rec.add_argument('--limit', type=int, help='only the first N images of each dataset (smoke runs)')
    rec.add_argument('--cfg-options', nargs='+', default=[], metavar='K=V', help='for every variant (before its own)')
    ana = sub.add_parser('analyse', help='evaluate rules on a recorded CSV')
    ana.add_argument('csv', nargs='+', help='files written by record')
    ana.add_argument(
        '--rules',
        nargs='+',
        metavar='YAML',
        help='{cell: [..], blend: ..}, {sure: null | block, blend: .., guard: [..]} or {ends: [..], margin: ..}; '
        'default: the --study\'s candidates')
    ana.add_argument('--out', help='also write the table (markdown) here')
    pick = sub.add_parser('pick', help='print the --cfg-options of the rule the declared criterion picks')
    pick.add_argument('csv', nargs='+', help='files written by record')
    pick.add_argument('--rules', nargs='+', metavar='YAML', help='the candidates; default: the --study\'s')
    pick.add_argument('--tolerance', type=float, default=0.05, help='dB below step 0 that counts as worse')
    pick.add_argument('--share', type=float, default=0.05, help='largest share of images allowed below step 0')
    for p in (ana, pick):
        p.add_argument(
            '--study',
            type=int,
            choices=sorted(STUDY_RULES),
            default=2,
            help='whose candidates --rules defaults to (1: sub-image rules, 2: and ResidualSURE, 3: and step 0 or the '
            'last step only)')
    tab = sub.add_parser('table', help='the comparison table of one rule on one recorded set (PSNR only)')
    tab.add_argument('csv', help='a file written by record (one network, one set of images)')
    tab.add_argument('--rule', required=True, metavar='YAML', help='the rule, as in --rules')
    tab.add_argument('--lan', default='lan_zsn2n', help='the variant the goals compare with as "LAN"')
    tab.add_argument('--labels', nargs='+', default=[], metavar='VARIANT=LABEL', help='row labels')
    tab.add_argument(
        '--ours',
        nargs='+',
        default=['across'],
        metavar='ROW',
        help='rows whose goals are printed: across (the rule across variants), a variant (its last step) or '
        'VARIANT:selected (its choice by the rule)')
    tab.add_argument('--out', help='also write the table (markdown) here')
    for p in (ana, tab):
        p.add_argument(
            '--reference',
            choices=['clean', 'aligned'],
            default='clean',
            help='score against the clean image (default) or against it shifted per channel to the noisy image\'s '
            'mean (a diagnostic: a reference brighter or darker than the noisy shot; needs the dc_ columns)')
    return parser.parse_args(argv)


class StepRecorder:
    """Observer of the loop that keeps, per step, the numbers of :data:`FIELDS` (GT only for the evaluation ones)."""

    def __init__(self, gt):
        self.gt = gt.double()
        self.rows = []
        self.net = None

    def bind(self, net):
        self.net = net

    def start(self, lq):
        import torch

        from lan_basicsr.models.selection import diagonal_pairs
        self.lq = lq.double()
        self.pairs = {c: [d.double() for d in diagonal_pairs(lq, c, 1)] for c in CELLS}
        self.mse_noisy = float(torch.mean((self.lq - self.gt)**2))
        self.dc_noisy = (self.lq - self.gt).mean((0, 2, 3)).tolist()
        self.rows = []
        self.probes = None

    def __call__(self, step, adapted_input, output, losses=None):
        import torch

        from lan_basicsr.models.selection import diagonal_pairs
        o = output.detach().clamp(0, 1).double()
        change = o - self.lq
        row = {
            'step': step,
            'mse_noisy': self.mse_noisy,
            'cross': float(torch.mean(change * (self.lq - self.gt))),
            'power': float(torch.mean(change**2)),
        }
        row['psnr'] = 10 * math.log10(1 / max(row['mse_noisy'] + 2 * row['cross'] + row['power'], 1e-20))
        for c, (noisy, moved) in enumerate(zip(self.dc_noisy, change.mean((0, 2, 3)).tolist())):
            row[f'dc_noisy{c}'], row[f'dc_change{c}'] = noisy, moved
        for c, (d1, d2) in self.pairs.items():
            x1, x2 = diagonal_pairs(adapted_input.detach(), c, 1)
            with torch.no_grad():
                p1, p2 = self.net(x1).clamp(0, 1).double(), self.net(x2).clamp(0, 1).double()
            ch = torch.cat([(p1 - d1).flatten(), (p2 - d2).flatten()])
            gap = torch.cat([(d2 - d1).flatten(), (d1 - d2).flatten()])
            row[f'c{c}_cc'] = float(torch.mean(ch**2))
            row[f'c{c}_cg'] = float(torch.mean(ch * gap))
            row[f'c{c}_gg'] = float(torch.mean(gap**2))
        if self.probes is None:  # step 0: ResidualSURE's probes, as the rule makes them
            from lan_basicsr.models.selection import block_signs
            residual = self.lq - o
            self.sure_t = float(torch.mean(residual**2))
            self.probes = {
                k: residual if b is None else block_signs(residual.shape, b, 0).to(residual) * residual
                for k, b in SURE_BLOCKS.items()
            }
        row['sure_T'] = self.sure_t
        for k, z in self.probes.items():
            with torch.no_grad():
                moved = self.net(adapted_input.detach() + (SURE_EPS * z).to(adapted_input.dtype)).clamp(0, 1)
            row[f'{k}_d'] = float(torch.mean(z * (moved.double() - o)) / SURE_EPS)
        self.rows.append(row)

    def finish(self, replayed=()):
        return None


def record(args):
    from basicsr.data import build_dataset
    from basicsr.models import build_model
    from torch.utils.data import default_collate
    from tqdm import tqdm

    from lan_basicsr.utils.errors import DataError
    from lan_basicsr.utils.options import parse_options
    done = set()
    if osp.isfile(args.out):
        with open(args.out, newline='') as f:
            reader = csv.DictReader(f)
            done = {row['variant'] for row in reader}
            if tuple(reader.fieldnames or ()) != FIELDS:
                raise DataError(f'{args.out}: recorded by another version of this tool (other columns); '
                                'record into a new --out')
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    for variant in args.variants:
        name, _, cfg = variant.partition(':')
        if name in done:
            continue
        # the recorder is the loop's only observer: a rule in the option file would be finished unobserved
        cfg_list = args.cfg_options + [c for c in cfg.split(',') if c] + ['adapt.select=last']
        opt, _ = parse_options(
            ROOT, is_train=False, argv=['-opt', args.opt, '--cfg-options', f'name=study_{name}', *cfg_list])
        model = build_model(opt)
        rows = []
        for _, ds_opt in sorted(opt['datasets'].items()):
            if args.datasets and ds_opt['name'] not in args.datasets:
                continue
            dataset = build_dataset(ds_opt)
            count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
            for index in tqdm(range(count), desc=f'{name} {ds_opt["name"]}'):
                data = default_collate([dataset[index]])
                image = data['name'][0] if 'name' in data else osp.splitext(osp.basename(data['lq_path'][0]))[0]
                recorder = StepRecorder(data['gt'].to(model.device))
                model.observer = recorder
                result = model.adapt_one(data, index, image)
                steps = recorder.rows
                steps += [dict(steps[-1], step=s) for s in range(len(steps), len(result.psnr))]  # stopped early
                for r in steps:
                    rows.append([name, ds_opt['name'], image] + [repr(r[k]) for k in FIELDS[3:]])
        new = not osp.isfile(args.out)
        with open(args.out, 'a', newline='') as f:  # one variant at a time: a rerun continues with the next
            writer = csv.writer(f)
            if new:
                writer.writerow(FIELDS)
            writer.writerows(rows)
        del model


def _psnr(mse):
    return 10 * math.log10(1 / max(mse, 1e-20))


def _blend_psnr(r, a=1.0, aligned=False):
    """PSNR of the blend ``y + a (o - y)`` of recorded row ``r`` against the clean image, or with ``aligned`` against
    the clean image shifted per channel to the noisy image's mean (``x + δ``, δ_c = mean_c(y - x)):
    ``mse - mean_c(δ_c²) - 2 a mean_c(δ_c m_c)`` with m_c = mean_c(o - y)."""
    mse = r['mse_noisy'] + 2 * a * r['cross'] + a * a * r['power']
    if aligned:
        if 'dc_noisy0' not in r:
            from lan_basicsr.utils.errors import DataError
            raise DataError('--reference aligned: this file was recorded without the dc_ columns; record it again')
        deltas = [(r[f'dc_noisy{c}'], r[f'dc_change{c}']) for c in range(3)]
        mse -= sum(d * d + 2 * a * d * m for d, m in deltas) / 3
    return _psnr(mse)


def _sub_score(r, c, a):
    return a * a * r[f'c{c}_cc'] - 2 * a * r[f'c{c}_cg'] + r[f'c{c}_gg']


def choose(steps, cells, blend, blend_cell=None):
    """The (step, α, score) :class:`SubImageScore` picks from recorded rows (same logic, on the recorded sums)."""
    blend_cell = cells[0] if blend_cell is None else blend_cell

    def alpha_of(r, c):
        cc, cg = r[f'c{c}_cc'], r[f'c{c}_cg']
        return min(1.0, max(0.0, cg / cc)) if cc > 0 else 1.0

    ref = [_sub_score(steps[0], c, 1.0) for c in cells]
    best = (_sub_score(steps[0], cells[0], 1.0), 0, 1.0)
    for r in steps:
        a = alpha_of(r, blend_cell) if blend else 1.0
        if not all(_sub_score(r, c, a) <= ref_c for c, ref_c in zip(cells[1:], ref[1:])):
            continue
        s = _sub_score(r, cells[0], a)
        if s < best[0]:
            best = (s, r['step'], a)
    return best[1], best[2], best[0]


def choose_sure(steps, probe='sure', blend=True, guard=()):
    """The (step, α, score) :class:`ResidualSURE` picks from recorded rows (``probe``: a key of :data:`SURE_BLOCKS`)."""

    def terms(r):
        cross, power = r[f'{probe}_d'] - r['sure_T'], r['power']
        a = min(1.0, max(0.0, -cross / power)) if blend and power > 0 else 1.0
        return a, a * a * power + 2 * a * cross

    ref = [_sub_score(steps[0], c, 1.0) for c in guard]
    best = (steps[0]['power'] + 2 * (steps[0][f'{probe}_d'] - steps[0]['sure_T']), 0, 1.0)  # step 0, α = 1
    for r in steps:
        a, s = terms(r)
        if not all(_sub_score(r, c, a) <= ref_c for c, ref_c in zip(guard, ref)):
            continue
        if s < best[0]:
            best = (s, r['step'], a)
    return best[1], best[2], best[0]


def _ends_value(r, name):
    """An unblended score of recorded row ``r`` and its noise scale (``sure``/``sure8``: the residual's power; ``cN``:
    the sub-image gap's power, what the noisy sub-image scores)."""
    if name.startswith('sure'):
        return r['power'] + 2 * (r[f'{name}_d'] - r['sure_T']), r['sure_T']
    c = int(name[1:])
    return _sub_score(r, c, 1.0), r[f'c{c}_gg']


def choose_ends(steps, scores, margin=0.0):
    """(step, 1, score) as ``{type: SubImageScore | ResidualSURE, blend: false, candidates: ends, margin: m}`` picks:
    the last step if the first score of ``scores`` (names: ``sure``, ``sure8``, ``c2`` ... ``c8``) is lower there than
    at step 0 by more than ``margin`` x its noise scale and every other (a guard) by at least as much, else step 0.
    A later step's score includes the margin, as the rule reports it."""
    first, last = steps[0], steps[-1]
    handicapped = [_ends_value(last, s)[0] + margin * _ends_value(first, s)[1] for s in scores]
    reference = [_ends_value(first, s)[0] for s in scores]
    keep = handicapped[0] < reference[0] and all(h <= r for h, r in zip(handicapped[1:], reference[1:]))
    return (last['step'], 1.0, handicapped[0]) if keep else (first['step'], 1.0, reference[0])


def _rule_choice(steps, rule):
    """(step, α, score) of ``rule`` (a dict of the study's rule syntax) on one image's recorded rows."""
    if 'step' in rule:  # a fixed step (the run stopped there)
        chosen = steps[min(int(rule['step']), len(steps) - 1)]
        return chosen['step'], 1.0, math.nan
    if 'ends' in rule:
        return choose_ends(steps, [str(s) for s in rule['ends']], float(rule.get('margin', 0)))
    if 'sure' in rule:
        probe = 'sure' if rule['sure'] is None else f'sure{rule["sure"]}'
        return choose_sure(steps, probe, rule.get('blend', True), rule.get('guard', ()))
    return choose(steps, list(rule['cell']), rule.get('blend', True), rule.get('blend_cell'))


def _load(paths):
    """``{(variant, dataset): {image: [row per step]}}``; with several files the variant is ``<file stem>/<variant>``
    (two files may hold the same variant and dataset names, e.g. one tuning set run with two networks)."""
    from lan_basicsr.utils.errors import DataError
    stems = [osp.splitext(osp.basename(p))[0] for p in paths]
    for stem, path in zip(stems, paths):
        if stems.count(stem) > 1:
            raise DataError(f'two recorded files are named {osp.basename(path)}; give them different names')
    data = OrderedDict()
    for stem, path in zip(stems, paths):
        prefix = '' if len(paths) == 1 else stem + '/'
        with open(path, newline='') as f:
            for row in csv.DictReader(f):
                r = {k: (v if k in ('variant', 'dataset', 'image') else float(v)) for k, v in row.items()}
                r['step'] = int(r['step'])
                key = (prefix + r['variant'], r['dataset'])
                data.setdefault(key, OrderedDict()).setdefault(r['image'], []).append(r)
    return data


def _picked(images, rule, aligned=False):
    """PSNR of each image's choice under ``rule`` (the blend's exact MSE; :func:`_blend_psnr`)."""
    import numpy as np
    out = []
    for s in images.values():
        step, a, _ = _rule_choice(s, rule)
        out.append(_blend_psnr(s[step], a, aligned))
    return np.array(out)


def _label(rule):
    if 'step' in rule:
        return f'step {rule["step"]}'
    if 'ends' in rule:
        return 'ends ' + '&'.join(map(str, rule['ends'])) + f' m{rule.get("margin", 0)}'
    if 'sure' in rule:
        return ('sure' + ('' if rule['sure'] is None else f'/b{rule["sure"]}') +
                ('' if rule.get('blend', True) else ' nb') +
                (' g' + '/'.join(map(str, rule['guard'])) if rule.get('guard') else ''))
    return ('/'.join(map(str, rule['cell'])) + ('' if rule.get('blend', True) else ' nb') +
            (f' a{rule["blend_cell"]}' if rule.get('blend_cell') else ''))


def analyse(args):
    import numpy as np
    data = _load(args.csv)
    rules = [yaml.safe_load(r) for r in args.rules or STUDY_RULES[args.study]]
    head = ['variant', 'dataset', 'n', 'noisy', 'step0', 'last', 'oracle'] + [_label(r) for r in rules]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    totals = {i: [] for i in range(len(rules))}
    aligned = args.reference == 'aligned'
    for (variant, dataset), images in data.items():
        noisy = np.mean([_blend_psnr(s[0], 0.0, aligned) for s in images.values()])
        step0 = np.array([_blend_psnr(s[0], 1.0, aligned) for s in images.values()])
        last = np.mean([_blend_psnr(s[-1], 1.0, aligned) for s in images.values()])
        oracle = np.mean([max(_blend_psnr(r, 1.0, aligned) for r in s) for s in images.values()])
        cells = []
        for i, rule in enumerate(rules):
            picked = _picked(images, rule, aligned)
            totals[i].append(picked - step0)
            cells.append(f'{picked.mean():.2f} ({int(np.sum(picked < step0 - 0.05))})')
        lines.append(f'| {variant} | {dataset} | {len(images)} | {noisy:.2f} | {step0.mean():.2f} | {last:.2f} | '
                     f'{oracle:.2f} | ' + ' | '.join(cells) + ' |')
    gains = ['mean gain over step 0, all'] + [f'{np.mean(np.concatenate(totals[i])):+.3f}' for i in range(len(rules))]
    lines.append('| ' + ' | '.join(gains[:1] + [''] * 6 + gains[1:]) + ' |')
    text = '\n'.join(lines)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')


def pick(args):
    """The declared criterion (synthetic data only): among the rules whose mean is not below step 0 on any
    (variant, noise) and that leave at most ``share`` of all images more than ``tolerance`` dB below step 0, the one
    with the largest mean gain over step 0; if none qualifies, the one with the fewest such images (of those, the
    largest mean gain; then the first listed)."""
    import numpy as np
    data = _load(args.csv)
    rules = [yaml.safe_load(r) for r in args.rules or STUDY_RULES[args.study]]
    scored = []
    for rule in rules:
        drops, means = [], []
        for images in data.values():
            step0 = np.array([s[0]['psnr'] for s in images.values()])
            d = _picked(images, rule) - step0
            drops.append(d)
            means.append(d.mean())
        d = np.concatenate(drops)
        ok = min(means) >= 0 and np.mean(d < -args.tolerance) <= args.share
        scored.append((ok, float(d.mean()), -int(np.sum(d < -args.tolerance)), rule))
    qualified = [x for x in scored if x[0]]
    best = max(qualified, key=lambda x: x[1]) if qualified else max(scored, key=lambda x: x[2:0:-1])
    rule = best[3]
    for ok, gain, worse, r in scored:
        print(
            f'{_label(r):>14}: qualifies {ok}, mean gain {gain:+.3f} dB, images > tolerance below step 0: {-worse}',
            file=sys.stderr)
    print(' '.join(rule_cfg_options(rule)))


def rule_cfg_options(rule):
    """The ``--cfg-options`` that make ``adapt.select`` the study's ``rule``."""
    if 'step' in rule:
        return [f'adapt.steps={rule["step"]}', 'adapt.select=last']
    if 'ends' in rule:
        names = [str(s) for s in rule['ends']]
        cells = [n[1:] for n in names if n.startswith('c')]
        tail = [
            'adapt.select.blend=False', 'adapt.select.candidates=ends', f'adapt.select.margin={rule.get("margin", 0)}'
        ]
        if names[0].startswith('sure'):
            head = ['adapt.select.type=ResidualSURE'] + (['adapt.select.block=8'] if names[0] == 'sure8' else [])
            return head + (['adapt.select.guard=[' + ','.join(cells) + ']'] if cells else []) + tail
        return ['adapt.select.type=SubImageScore', 'adapt.select.cell=[' + ','.join(cells) + ']'] + tail
    if 'sure' in rule:
        cfg = ['adapt.select.type=ResidualSURE', f'adapt.select.blend={rule.get("blend", True)}']
        if rule['sure'] is not None:
            cfg.append(f'adapt.select.block={rule["sure"]}')
        if rule.get('guard'):
            cfg.append('adapt.select.guard=[' + ','.join(map(str, rule['guard'])) + ']')
        return cfg
    cfg = [
        'adapt.select.type=SubImageScore', 'adapt.select.cell=[' + ','.join(map(str, rule['cell'])) + ']',
        f'adapt.select.blend={rule.get("blend", True)}'
    ]
    if rule.get('blend_cell'):
        cfg.append(f'adapt.select.blend_cell={rule["blend_cell"]}')
    return cfg


def study_tables(data, rule, labels=None, aligned=False):
    """The rows of :mod:`lan_basicsr.report.selection_table` (PSNR only) from recorded rows, per dataset: the noisy
    input, step 0, each variant at its last step, the best of those in hindsight, each variant's choice by ``rule``
    and the choice across variants by the rule's score. Every variant must hold the same images and step 0.
    ``aligned``: PSNR against the clean image shifted to the noisy image's mean per channel (:func:`_blend_psnr`)."""
    from lan_basicsr.report.selection_table import SelectionRow
    from lan_basicsr.utils.errors import DataError
    labels = labels or {}
    tables = OrderedDict()
    for dataset in dict.fromkeys(ds for _, ds in data):
        variants = [(v, images) for (v, ds), images in data.items() if ds == dataset]
        names = list(variants[0][1])
        for v, images in variants:
            if list(images) != names:
                raise DataError(f'{dataset}: variant {v} holds other images than {variants[0][0]}; record them alike')
            if any(abs(images[i][0]['psnr'] - variants[0][1][i][0]['psnr']) > 1e-4 for i in names):
                raise DataError(f'{dataset}: variant {v} starts from another step 0 than {variants[0][0]}')
        nan = [math.nan] * len(names)
        first = variants[0][1]
        rows = [
            SelectionRow('Noisy input', 'noisy', [_blend_psnr(first[i][0], 0.0, aligned) for i in names], nan),
            SelectionRow('Step 0 (pretrained)', 'step0', [_blend_psnr(first[i][0], 1.0, aligned) for i in names], nan)
        ]
        singles, picks = [], []
        for v, images in variants:
            label = labels.get(v, v)
            singles.append(
                SelectionRow(f'{label}, k = {images[names[0]][-1]["step"]}', 'last',
                             [_blend_psnr(images[i][-1], 1.0, aligned) for i in names], nan, [v] * len(names)))
            chosen = [_rule_choice(images[i], rule) for i in names]
            psnr = []
            for i, (step, a, _) in zip(names, chosen):
                psnr.append(_blend_psnr(images[i][step], a, aligned))
            picks.append((SelectionRow(f'{label}, selected', 'selected', psnr, nan, [v] * len(names)), chosen))
        rows += singles
        best = max(singles, key=lambda row: row.psnr.mean())
        rows.append(SelectionRow(f'best single in hindsight ({best.label})', 'best', best.psnr, nan))
        rows += [row for row, _ in picks]
        across = [min(range(len(picks)), key=lambda k: picks[k][1][j][2]) for j in range(len(names))]
        rows.append(
            SelectionRow(f'rule across {len(picks)} methods', 'across',
                         [picks[k][0].psnr[j] for j, k in enumerate(across)], nan, [variants[k][0] for k in across]))
        tables[dataset] = (names, rows, 'all variants')
    return tables


def _variant_label(tables, variant, kind='last'):
    """The label of ``variant``'s row of this ``kind`` (``last``: its last step; ``selected``), None if it has none."""
    return next((row.label for _, rows, _ in tables.values()
                 for row in rows if row.kind == kind and row.runs and row.runs[0] == variant), None)


def _row_label(tables, ours):
    """The row label (or kind) of a ``--ours`` choice: ``across``, a variant (its last step) or ``VARIANT:selected``."""
    from lan_basicsr.utils.errors import OptionError
    if ours == 'across':
        return ours
    variant, _, kind = ours.partition(':')
    label = _variant_label(tables, variant, kind or 'last')
    if label is not None:
        return label
    known = sorted({row.runs[0] for _, rows, _ in tables.values() for row in rows if row.kind == 'last'})
    raise OptionError(f'--ours {ours}: expected across, a recorded variant ({", ".join(known)}) or VARIANT:selected')


def table(args):
    import warnings

    from lan_basicsr.report.selection_table import goals, selection_markdown
    data = _load([args.csv])
    labels = dict(x.split('=', 1) for x in args.labels)
    tables = study_tables(data, yaml.safe_load(args.rule), labels, args.reference == 'aligned')
    lan = _variant_label(tables, args.lan)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)  # the study records no SSIM: its column stays empty
        reference = ', against the clean image aligned to the noisy mean' if args.reference == 'aligned' else ''
        text = selection_markdown(
            tables, title=f'{osp.basename(args.csv)}, rule {_label(yaml.safe_load(args.rule))}{reference}')
    lines = [
        text, '| dataset | row | mean vs step 0 | share > 0.05 dB below step 0 | vs best single | vs LAN |',
        '|---|---|---|---|---|---|'
    ]
    for ours in args.ours:
        label = _row_label(tables, ours)
        for dataset, g in goals(tables, label, lan=lan).items():
            vs_lan = '' if g['vs_lan'] is None else f'{g["vs_lan"]:+.2f}'
            lines.append(f'| {dataset} | {ours} | {g["mean_vs_step0"]:+.2f} | {g["share_below_tol"]:.0%} | '
                         f'{g["vs_best_single"]:+.2f} | {vs_lan} |')
    text = '\n'.join(lines)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')


def main(argv=None):
    args = parse_args(argv)
    {'record': record, 'analyse': analyse, 'pick': pick, 'table': table}[args.command](args)


if __name__ == '__main__':
    run(main)
