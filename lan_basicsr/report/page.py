"""``index.html``: one self-contained page (inline CSS and script, relative links to the report's own files only; no
network access) with the tables, the figures and zoomable noisy | pretrained | adapted | GT pictures."""
import math
from html import escape
from os import path as osp
from urllib.parse import quote

from .figures import read_rgb
from .results import checkpoint_path
from .tables import PSNR_DIGITS, SSIM_DIGITS

__all__ = ['write_page', 'noise_verdict']

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0 auto; max-width: 1500px;
       padding: 0 24px 48px; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 24px 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; }
h3 { margin-bottom: 6px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.92em; }
th, td { border: 1px solid #d0d0d0; padding: 4px 10px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; white-space: normal; } td.l, th.l { text-align: left; }
td b { color: #0a5d00; } td.wrap { white-space: normal; word-break: break-all; max-width: 420px; }
.note { color: #555; font-size: 0.92em; }
figure { margin: 12px 0 24px; } figure img.plot { max-width: min(100%, 980px); border: 1px solid #eee; }
figure img.wide { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
.zoomrow { display: flex; flex-wrap: wrap; gap: 10px; margin: 6px 0 4px; }
.panel { display: flex; flex-direction: column; }
.view { width: var(--w); height: var(--h); overflow: hidden; position: relative; border: 1px solid #bbb;
        cursor: grab; background: #222; touch-action: none; }
.view img { position: absolute; left: 0; top: 0; width: var(--w); height: var(--h); transform-origin: 0 0;
            image-rendering: pixelated; user-select: none; -webkit-user-drag: none; }
.cap { font-size: 0.82em; max-width: var(--w); margin-top: 3px; }
.cap .s { color: #555; }
.tools button { margin-right: 4px; }
nav a { margin-right: 14px; }
code { background: #f4f4f4; padding: 0 3px; }
"""

SCRIPT = """
(function () {
  function setup(row) {
    var imgs = row.querySelectorAll('.view img');
    var views = row.querySelectorAll('.view');
    var box = views[0];
    var W = box.clientWidth, H = box.clientHeight;
    var st = {s: 1, x: 0, y: 0};
    function clamp() {
      st.x = Math.min(0, Math.max(W - W * st.s, st.x));
      st.y = Math.min(0, Math.max(H - H * st.s, st.y));
    }
    function apply() {
      clamp();
      imgs.forEach(function (im) {
        im.style.transform = 'translate(' + st.x + 'px,' + st.y + 'px) scale(' + st.s + ')';
      });
      var z = row.parentNode.querySelector('.zoomlevel');
      if (z) { z.textContent = st.s.toFixed(1) + '\\u00d7'; }
    }
    function zoomAt(factor, cx, cy) {
      var s = Math.min(32, Math.max(1, st.s * factor));
      st.x = cx - (cx - st.x) * s / st.s;
      st.y = cy - (cy - st.y) * s / st.s;
      st.s = s;
      apply();
    }
    row.zoomTo = function (s) { st.s = 1; st.x = 0; st.y = 0; zoomAt(s, W / 2, H / 2); };
    views.forEach(function (v) {
      v.addEventListener('wheel', function (e) {
        e.preventDefault();
        var r = v.getBoundingClientRect();
        zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - r.left, e.clientY - r.top);
      }, {passive: false});
      var drag = null;
      v.addEventListener('pointerdown', function (e) {
        drag = {x: e.clientX, y: e.clientY, sx: st.x, sy: st.y};
        v.setPointerCapture(e.pointerId);
      });
      v.addEventListener('pointermove', function (e) {
        if (!drag) { return; }
        st.x = drag.sx + e.clientX - drag.x;
        st.y = drag.sy + e.clientY - drag.y;
        apply();
      });
      v.addEventListener('pointerup', function () { drag = null; });
      v.addEventListener('dblclick', function () { row.zoomTo(1); });
    });
    row.zoomTo(parseFloat(row.getAttribute('data-zoom')) || 1);
  }
  window.addEventListener('load', function () {
    document.querySelectorAll('.zoomrow').forEach(setup);
    document.querySelectorAll('button[data-z]').forEach(function (b) {
      b.addEventListener('click', function () {
        var row = b.closest('.picture').querySelector('.zoomrow');
        row.zoomTo(parseFloat(b.getAttribute('data-z')));
      });
    });
  });
})();
"""


def _nan(value):
    return value is None or (isinstance(value, float) and math.isnan(value))


def _num(value, digits):
    return '–' if _nan(value) else f'{value:.{digits}f}'


class _Page:

    def __init__(self, path):
        self.root = osp.dirname(osp.abspath(path))
        self.parts = []

    def link(self, path):
        """A relative URL to one of the report's files."""
        rel = osp.relpath(osp.abspath(path), self.root).replace(osp.sep, '/')
        return quote(rel)

    def add(self, html):
        self.parts.append(html)


def _table1_html(page, table):
    for ds in table.datasets:
        images = max(c['images'] for c in table.cells if c['dataset'] == ds)
        noisy = table.noisy.get(ds)
        noisy = (f'; noisy input {noisy[0]:.{PSNR_DIGITS}f} dB / {noisy[1]:.{SSIM_DIGITS}f}' if noisy else '')
        many = len(table.networks(ds)) > 1
        cols = table.columns()
        page.add(f'<h3>{escape(ds)}</h3><p class="note">{images} images{escape(noisy)}. PSNR (dB) / SSIM after k '
                 'adaptation steps (mean over the images); best of each column in bold.</p>')
        head = ''.join(f'<th>{escape(table.column_title(lo, st))}</th>' for lo, st in cols)
        page.add('<table><tr>' + ('<th class="l">network</th>' if many else '') +
                 f'<th class="l">method</th>{head}</tr>')
        for network, method in table.rows[ds]:
            cells = []
            for loss, step in cols:
                c = table.get(ds, network, method, loss, step)
                if c is None:
                    cells.append('<td></td>')
                    continue
                psnr, ssim = _num(c['psnr'], PSNR_DIGITS), _num(c['ssim'], SSIM_DIGITS)
                psnr = f'<b>{psnr}</b>' if c['best_psnr'] else psnr
                ssim = f'<b>{ssim}</b>' if c['best_ssim'] else ssim
                cells.append(f'<td>{psnr} / {ssim}</td>')
            lead = (f'<td class="l">{escape(network)}</td>' if many else '') + f'<td class="l">{escape(method)}</td>'
            page.add(f'<tr>{lead}{"".join(cells)}</tr>')
        page.add('</table>')


def _gains_html(page, gains):
    page.add('<table><tr><th class="l">dataset</th><th class="l">method</th><th class="l">loss</th><th>images</th>'
             '<th>helps</th><th>hurts</th><th>mean gain (dB)</th><th>min</th><th>max</th>'
             '<th>below noisy input, step 0</th><th>below noisy input, last step</th></tr>')
    for r in gains:
        below0 = '' if r['below_noisy_step0'] is None else r['below_noisy_step0']
        below = '' if r['below_noisy_last'] is None else r['below_noisy_last']
        page.add(f'<tr><td class="l">{escape(r["dataset"])}</td><td class="l">{escape(r["method"])}</td>'
                 f'<td class="l">{escape(r["loss"])}</td><td>{r["images"]}</td><td>{r["helps"]}</td>'
                 f'<td>{r["hurts"]}</td><td>{r["mean_gain"]:+.3f}</td><td>{r["min_gain"]:+.3f}</td>'
                 f'<td>{r["max_gain"]:+.3f}</td><td>{below0}</td><td>{below}</td></tr>')
    page.add('</table>')


def _figure(page, files, caption, wide=False):
    png, svg = files
    kind = 'plot wide' if wide else 'plot'
    page.add(f'<figure><a href="{page.link(png)}"><img class="{kind}" src="{page.link(png)}" alt="{escape(caption)}">'
             f'</a><figcaption>{escape(caption)} (<a href="{page.link(svg)}">SVG</a>)</figcaption></figure>')


def noise_verdict(stats):
    """One sentence: does the noise after adaptation move toward the training noise (1-Wasserstein distance)?"""
    if _nan(stats.get('w1_before')):
        return (f'No training noise declared (report.train_noise), so no comparison; std before '
                f'{stats["std_before"]:.2f}, after {stats["std_after"]:.2f} (0-255 units).')
    before, after = stats['w1_before'], stats['w1_after']
    change = (after - before) / before * 100 if before else 0.
    way = 'closer to' if after < before else 'farther from' if after > before else 'as far from'
    return (f'After adaptation the noise is {way} the training noise: 1-Wasserstein distance {before:.3f} → '
            f'{after:.3f} ({change:+.1f}%, 0-255 units); std {stats["std_before"]:.2f} → {stats["std_after"]:.2f} '
            f'(training noise {stats["std_train"]:.2f}); the offset |tanh φ| is at most '
            f'{stats["max_abs_offset"]:.2f}.')


def _pictures_html(page, pictures):
    for entry in pictures:
        h, w = read_rgb(entry['panels'][0][1]).shape[:2]
        # one row on a ~1400 px window: up to 256 px per panel, narrower when there are many panels
        width = max(120, min(256, (1300 - 10 * (len(entry['panels']) - 1)) // len(entry['panels'])))
        height = round(width * h / w)
        page.add(f'<div class="picture"><h3>{escape(entry["dataset"])} / {escape(entry["image"])}</h3>'
                 f'<div class="tools note">zoom <span class="zoomlevel"></span>: scroll on a picture, drag to pan, '
                 'double-click to reset (all panels follow) '
                 '<button data-z="1">1×</button><button data-z="2">2×</button><button data-z="4">4×</button>'
                 '<button data-z="8">8×</button></div>'
                 f'<div class="zoomrow" data-zoom="2" style="--w:{width}px;--h:{height}px">')
        for name, path, scores in entry['panels']:
            score = '' if scores is None else (f' <span class="s">{_num(scores[0], PSNR_DIGITS)} dB / '
                                               f'{_num(scores[1], SSIM_DIGITS)}</span>')
            page.add(f'<div class="panel"><div class="view"><img src="{page.link(path)}" alt="{escape(name)}" '
                     f'draggable="false"></div><div class="cap"><a href="{page.link(path)}">{escape(name)}</a>'
                     f'{score}</div></div>')
        page.add('</div></div>')


def write_page(path, title, runs, labels, table, gains, figures, noise, pictures):
    """Write ``index.html`` at ``path``; every ``src``/``href`` is a relative link to a file under its folder."""
    page = _Page(path)
    page.add('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
             f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
             f'<style>{CSS}</style></head><body>')
    page.add(f'<h1>{escape(title)}</h1>')
    sections = [('table1', 'Table 1'), ('fig5', 'PSNR against step'), ('pictures', 'Pictures'), ('gains', 'Per image')]
    if noise:
        sections.append(('noise', 'Noise (Fig. 4 / 6)'))
    sections.append(('runs', 'Runs'))
    page.add('<nav>' + ''.join(f'<a href="#{k}">{escape(v)}</a>' for k, v in sections) + '</nav>')

    page.add('<h2 id="table1">Table 1</h2><p class="note">From each run\'s <code>per_step.csv</code>; also as '
             f'<a href="{page.link(osp.join(page.root, "table1.md"))}">Markdown</a>, '
             f'<a href="{page.link(osp.join(page.root, "table1.csv"))}">CSV</a> and '
             f'<a href="{page.link(osp.join(page.root, "table1_long.csv"))}">one line per cell</a>.</p>')
    _table1_html(page, table)

    page.add('<h2 id="fig5">PSNR and SSIM against the adaptation step (Fig. 5)</h2>')
    for entry in figures:
        if 'fig5' in entry:
            _figure(
                page, entry['fig5'], f'{entry["dataset"]}: mean PSNR / SSIM against step, one line per method; '
                'band: ± one standard deviation over the images; bottom: gain over step 0')

    page.add('<h2 id="pictures">Pictures</h2><p class="note">Noisy input | pretrained (step 0) | each adapted run '
             '(last step) | ground truth, with each picture\'s PSNR / SSIM. Shown at 2× around the centre.</p>')
    if pictures:
        _pictures_html(page, pictures)
    else:
        page.add('<p class="note">No saved pictures: run with <code>adapt.save_compare=True</code> (noisy, step-0 and '
                 'GT images) and <code>val.save_img: true</code>.</p>')

    page.add('<h2 id="gains">Per image: gain of the last step over step 0</h2>')
    if gains:
        _gains_html(page, gains)
        page.add(f'<p class="note">Per image values: <a href="{page.link(osp.join(page.root, "gains.csv"))}">'
                 'gains.csv</a>. "Below noisy input": the output scores lower PSNR than the noisy input itself '
                 '(from <code>inputs.csv</code>; blank where the run has none).</p>')
    for entry in figures:
        if 'gains' in entry:
            _figure(page, entry['gains'], f'{entry["dataset"]}: PSNR gain per image, sorted', wide=True)

    if noise:
        page.add('<h2 id="noise">Noise before and after adaptation (Fig. 4 / Fig. 6)</h2><p class="note">Noise '
                 'residuals: y − x̂ with the step-0 output (before), y + tanh φ − x̂ with the final output (after), '
                 'beside samples of the noise the network was trained on (<code>report.train_noise</code>) drawn on '
                 f'the clean image. Per image statistics: <a href="{page.link(osp.join(page.root, "noise_stats.csv"))}'
                 '">noise_stats.csv</a>.</p>')
        for entry in noise:
            run = entry['run']
            spec = entry['train_noise']
            spec = ', '.join(f'{k}={v}' for k, v in spec.items()) if spec else 'not declared'
            page.add(f'<h3>{escape(labels[run.folder])} on {escape(entry["dataset"])}</h3><p>Training noise: '
                     f'{escape(spec)}. {escape(noise_verdict(entry["stats"]))}</p>')
            _figure(
                page,
                entry['fig6'],
                f'{entry["dataset"]}: noise histograms pooled over {entry["images"]} images',
                wide=True)
            for image, files, stats in entry['fig4']:
                _figure(page, files, f'{image}: {noise_verdict(stats)}', wide=True)

    page.add('<h2 id="runs">Runs</h2><table><tr><th class="l">label</th><th class="l">results folder</th>'
             '<th class="l">adapt.type</th><th class="l">loss</th><th>steps</th><th class="l">lr</th>'
             '<th class="l">network</th><th class="l">checkpoint</th></tr>')
    for run in runs:
        adapt = run.settings.get('adapt') or {}
        page.add(f'<tr><td class="l">{escape(labels[run.folder])}</td><td class="l wrap">{escape(run.folder)}</td>'
                 f'<td class="l">{escape(str(adapt.get("type")))}</td><td class="l">{escape(run.loss)}</td>'
                 f'<td>{run.steps}</td><td class="l">{escape(str(adapt.get("lr")))}</td>'
                 f'<td class="l">{escape(run.network)}</td>'
                 f'<td class="l wrap">{escape(str(checkpoint_path(run.settings)))}</td></tr>')
    page.add('</table><p class="note">Made by <code>tools/report.py</code> from the results folders only; nothing '
             'was recomputed.</p>')
    page.add(f'<script>{SCRIPT}</script></body></html>\n')
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(page.parts))
    return path
