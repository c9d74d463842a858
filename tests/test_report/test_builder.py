"""build_report and tools/report.py on tiny runs made here: every file the page links exists, nothing is remote."""
import re
import subprocess
import sys
from html.parser import HTMLParser
from os import path as osp

import pytest
from conftest import ROOT, import_tool

from lan_basicsr.report import build_report, table1
from lan_basicsr.utils.errors import OptionError


class _Links(HTMLParser):

    def __init__(self):
        super().__init__()
        self.links, self.panels = [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ('src', 'href'):
            if attrs.get(key):
                self.links.append(attrs[key])
        if tag == 'div' and attrs.get('class') == 'panel':
            self.panels += 1


@pytest.fixture(scope='module')
def report(report_runs, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('report'))
    folders = [report_runs['pre'], report_runs['lan'], report_runs['full']]
    return folders, out, build_report(folders, out, images=1, labels={'toy_pre': 'pretrained net'})


def test_page_links_only_existing_local_files(report):
    folders, out, paths = report
    with open(paths['index.html'], encoding='utf-8') as f:
        html = f.read()
    parser = _Links()
    parser.feed(html)
    files = [link for link in parser.links if not link.startswith('#')]
    assert len(files) >= 20
    for link in files:
        assert not re.match(r'^[a-z]+:|^//|^/', link), link  # relative: no scheme, host or absolute path
        assert osp.isfile(osp.join(out, link)), link
    assert not re.search(r'https?://', html)
    assert parser.panels == 5  # noisy | pretrained | LAN | Full-trainable | GT, for the one image asked for
    t = table1(folders, labels={'toy_pre': 'pretrained net'})
    assert f'{t.cell("toy", "LAN", 3, "ZS-N2N")["psnr"]:.2f}' in html
    with open(paths['table1.md'], encoding='utf-8') as f:
        assert f.read() == t.markdown()
    for name in ('fig5_toy', 'gains_toy', 'fig6_toy_lan_toy', 'fig4_toy_lan_toy_img000'):
        for ext in ('png', 'svg'):
            assert osp.getsize(osp.join(out, f'{name}.{ext}')) > 1000
    assert 'After adaptation the noise is' in html  # the Fig. 6 verdict, whichever way it went


def test_cli_writes_the_report_and_fails_in_one_line(report_runs, tmp_path, capsys):
    tool = import_tool('report')
    out = tmp_path / 'out'
    tool.main([report_runs['lan'], report_runs['full'], '-o', str(out), '--images', '0', '--steps', '0', '3'])
    assert '| method | k = 0 | ZS-N2N k = 3 |' in capsys.readouterr().out and (out / 'index.html').is_file()
    with pytest.raises(OptionError, match='NAME=LABEL'):
        tool.main([report_runs['lan'], '-o', str(out), '--label', 'oops'])
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'report.py'),
         str(tmp_path), '-o', str(out)],
        capture_output=True,
        text=True,
        timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count('\n') == 0 and 'no per_step.csv' in proc.stderr


def test_a_selecting_run_shows_its_selected_image_as_such(report_runs, tmp_path):
    """With adapt.select, visualization/ holds the rule's choice: the picture is labelled and scored as that choice
    (selected.csv), never as the last step, and the noise figures skip the run."""
    from lan_basicsr.models.step_store import read_selected_csv
    from lan_basicsr.report.results import Run
    from lan_basicsr.test import test_pipeline
    root = osp.dirname(osp.dirname(report_runs['lan']))
    opt = osp.join(root, 'toy.yml')  # conftest.make_report_runs's option file
    test_pipeline(
        root,
        argv=['-opt', opt, '--cfg-options', 'name=toy_lan_sel', 'adapt.type=LAN', 'adapt.select.type=SubImageScore'])
    folder = osp.join(root, 'results', 'toy_lan_sel')
    run = Run(folder)
    image = run.images('toy')[0]
    assert run.selects and run.image_path('adapted', 'toy', image) is None
    assert run.image_path('selected', 'toy', image) == osp.join(folder, 'visualization', 'toy', f'{image}.png')
    assert Run(report_runs['lan']).image_path('selected', 'toy', image) is None
    choice = read_selected_csv(osp.join(folder, 'selected.csv'))[('toy', image)]
    paths = build_report([report_runs['pre'], folder], str(tmp_path / 'out'), images=1)
    with open(paths['index.html'], encoding='utf-8') as f:
        html = f.read()
    assert f'selected by the rule (step {choice["step"]}, α {choice["alpha"]:.2f})' in html
    assert f'{choice["psnr"]:.2f}' in html and ', step 3' not in html
