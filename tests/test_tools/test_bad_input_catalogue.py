"""Every case of the bad-input catalogue (tests/helpers/bad_input_catalogue.py), run through the real tools.

Each case asserts the exit status, the one-line ``error: ...`` message (regex) and, where it matters, what was (not)
written: the results folder absent after an option error, byte-identical after a refused rerun, the right folder
after a value with a space. The tools run in processes forked from a preloaded forkserver (see the helper's doc).
"""
import os
import sys
import tempfile
from os import path as osp

import pytest

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'helpers'))
import bad_input_catalogue as catalogue  # noqa: E402


@pytest.fixture(scope='module')
def env():
    with tempfile.TemporaryDirectory(prefix='bad_inputs_') as tmp:
        yield catalogue.Runner('fork'), catalogue.make_fixtures(osp.join(tmp, 'fixtures')), tmp


@pytest.mark.parametrize('case', catalogue.CASES, ids=[c.name for c in catalogue.CASES])
def test_case(case, env):
    runner, fixtures, tmp = env
    outcome = catalogue.run_case(case, runner, fixtures, tmp)
    assert outcome.outcome == 'clean', f'{outcome.outcome}: {outcome.detail}\n--- stderr ---\n{outcome.stderr[-3000:]}'


def test_catalogue_covers_every_class():
    kinds = {c.kind for c in catalogue.CASES}
    assert kinds >= {
        'option file', 'unknown key', 'value', 'cfg-options', 'path', 'checkpoint', 'data', 'results folder', 'rerun',
        'command line'
    }
    assert len([c for c in catalogue.CASES if c.expect is not None]) >= 60
    tools = {c.tool for c in catalogue.CASES}
    assert tools >= {
        'test.py', 'train.py', 'demo.py', 'report.py', 'prepare_polyu.py', 'prepare_nam.py', 'prepare_sidd.py',
        'denoise.py'
    }
    assert len({c.name for c in catalogue.CASES}) == len(catalogue.CASES)


def test_classification_detects_tracebacks_and_silent_results():
    """The classifier itself: a traceback, an exit 0 on bad input and a two-line error are not 'clean'."""
    c = catalogue.Case('x', 'value', 'test.py', None, expect=r'adapt\.lr')
    assert catalogue.classify(c, 1, '',
                              'Traceback (most recent call last):\n  File "x"\nValueError: y\n')[0] == 'traceback'
    assert catalogue.classify(c, 0, '', '')[0] == 'silent'
    assert catalogue.classify(c, 2, '', 'some log line\nerror: adapt.lr: bad\n')[0] == 'unclear'
    assert catalogue.classify(c, 2, '', 'error: adapt.steps: bad\n')[0] == 'unclear'
    assert catalogue.classify(c, 2, '', 'error: x.yml: adapt.lr: bad\n')[0] == 'clean'
    assert catalogue.classify(c, 1, '', 'error: x.yml: adapt.lr: bad\n')[0] == 'unclear'
    assert os.environ.get('LAN_BASICSR_ROOT') is None  # the cases set it in their own processes only
