"""The runs behind a results table: one ``tools/test.py`` run per method (and per loss), started as subprocesses,
optionally under torchrun, reused when they finished with the same settings, then one report of all of them.
``tools/run_table.py`` and ``tools/demo.py`` are thin wrappers.

An option file lists its rows in a ``table:`` section (``demo.methods``, the demo's list, works too)::

    table:
      title: ...                               # the report page's title
      steps: [0, 5, 10, 20]                    # Table 1's columns (default: the runs' report steps)
      losses:                                  # optional: a column group per loss, a run per method and loss
        - {key: zsn2n, label: ZS-N2N, cfg_options: {adapt.loss.type: ZSN2NLoss}}
        - {key: nbr2nbr, label: Nbr2Nbr, cfg_options: {adapt.loss.type: Nbr2NbrLoss}}
      methods:                                 # a list of {key, ...}, or a mapping key -> entry (merges under _base_)
        pretrained: {label: Pretrained, cfg_options: {adapt.steps: 0}, per_loss: false}
        lan: {label: LAN, cfg_options: {adapt.type: LAN}}
        camera: {label: ..., model: dncnn_camera}  # an embedded model: its checkpoint and network_g keys first
        meta: ~                                # a null entry removes an inherited method

Run ``<name>_<method>[_<loss>]`` is ``tools/test.py -opt OPT --cfg-options name=<run> <the loss's options> <the
method's options> <the user's --cfg-options>`` (later keys win; an entry's options are its model's, then its
cfg_options) and writes ``results/<run>/``. When it exits cleanly, ``results/<run>/table_run.json`` records its
arguments and a digest of the option file (its ``_base_`` files merged; ``table``/``demo`` left out); a later call
with the same record skips the run without starting it. Anything else starts it, and LANModel resumes from the images
already adapted, or refuses a folder made with other settings.
"""
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from os import path as osp
from typing import NamedTuple, Optional

from basicsr.utils import get_root_logger

from lan_basicsr.utils.errors import OptionError

__all__ = [
    'TableRun', 'RECORD_FILE', 'table_section', 'entry_options', 'table_runs', 'cli_value', 'test_args', 'run_command',
    'options_digest', 'run_tables', 'write_report'
]

RECORD_FILE = 'table_run.json'


class TableRun(NamedTuple):
    """One run of a table: its results folder name, method and loss keys, row label and ``--cfg-options``."""
    name: str
    method: str
    loss: Optional[str]
    label: str
    cfg_options: dict


def cli_value(value):
    """A YAML value as tools/test.py's ``--cfg-options`` reads it back (a string that would read as something else
    is quoted; lists as ``[a,b]``; None as ``None``)."""
    from lan_basicsr.utils.options import parse_cli_value
    if isinstance(value, (list, tuple)):
        return '[' + ','.join(cli_value(v) for v in value) + ']'
    if value is None:
        return 'None'
    text = str(value)
    if isinstance(value, str) and parse_cli_value(text) != value:
        return f'"{text}"'
    return text


def _entries(value, where):
    """``[(key, entry)]`` of a list of ``{key, ...}`` or of a mapping ``key -> entry`` (null entries dropped)."""
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items() if v is not None]
        for k, v in items:
            if not isinstance(v, dict):
                raise OptionError(f'{where}.{k}: expected a mapping {{label, cfg_options}}, got {v!r}')
        return items
    if isinstance(value, list):
        out = []
        for i, v in enumerate(value):
            if not (isinstance(v, dict) and isinstance(v.get('key'), str)):
                raise OptionError(f'{where}[{i}]: expected {{key: str, label: str, cfg_options: {{...}}}}, got {v!r}')
            out.append((v['key'], v))
        return out
    raise OptionError(f'{where}: expected a list of {{key, label, cfg_options}} entries or a mapping, got {value!r}')


def entry_options(entry):
    """The ``--cfg-options`` dict of one method or loss entry: its embedded ``model`` (``lan_basicsr.embedded``: the
    checkpoint and every ``network_g`` key), then its ``cfg_options`` (later keys win)."""
    options = {}
    if entry.get('model'):
        from lan_basicsr.embedded import embedded_model
        path, network_g = embedded_model(entry['model'])
        options['path.pretrain_network_g'] = path
        options.update({f'network_g.{k}': v for k, v in network_g.items()})
    options.update(entry.get('cfg_options') or {})
    return options


def table_section(opt):
    """``(section, where)``: the option file's ``table`` section, else ``demo`` (the demo's ``methods`` list)."""
    for where in ('table', 'demo'):
        if isinstance(opt.get(where), dict) and opt[where].get('methods'):
            return opt[where], where
    raise OptionError('the option file has no table.methods (or demo.methods): nothing to run')


def table_runs(opt, name, methods=None, losses=None):
    """The :class:`TableRun` list of an option dict, in row order (loss by loss within a method).

    ``methods`` / ``losses``: keep only these keys (unknown keys are an OptionError listing the known ones).
    """
    section, where = table_section(opt)
    method_entries = _entries(section['methods'], f'{where}.methods')
    loss_entries = _entries(section['losses'], f'{where}.losses') if section.get('losses') else []
    for what, entries, only in (('methods', method_entries, methods), ('losses', loss_entries, losses)):
        keys = [k for k, _ in entries]
        if len(set(keys)) != len(keys):
            raise OptionError(f'{where}.{what}: a key is listed twice ({", ".join(keys)})')
        for k, e in entries:
            if not isinstance(e.get('cfg_options') or {}, dict):
                raise OptionError(f'{where}.{what}.{k}.cfg_options: expected a mapping, got {e["cfg_options"]!r}')
        unknown = sorted(set(only or ()) - set(keys))
        if unknown:
            raise OptionError(f'--{what}: unknown key(s) {", ".join(unknown)}; {where}.{what} has '
                              f'{", ".join(keys) or "none"}')
    runs = []
    for key, entry in method_entries:
        if methods and key not in methods:
            continue
        label = entry.get('label', key)
        own = entry_options(entry)
        if not loss_entries or entry.get('per_loss', True) is False:
            runs.append(TableRun(f'{name}_{key}', key, None, label, own))
            continue
        for loss_key, loss in loss_entries:
            if not losses or loss_key in losses:
                runs.append(TableRun(f'{name}_{key}_{loss_key}', key, loss_key, label, {**entry_options(loss), **own}))
    if not runs:
        raise OptionError(f'{where}: no run left after --methods / --losses')
    return runs


def test_args(opt_rel, run, user_options=None):
    """``tools/test.py`` and its arguments for ``run`` (what decides its numbers; the launcher does not)."""
    overrides = [f'name={run.name}'] + [f'{k}={cli_value(v)}' for k, v in run.cfg_options.items()]
    overrides += [f'{k}={cli_value(v)}' for k, v in (user_options or {}).items() if k != 'name']
    return ['tools/test.py', '-opt', opt_rel, '--cfg-options'] + overrides


test_args.__test__ = False  # a helper, not a pytest test


def run_command(opt_rel, run, user_options=None, nproc_per_node=1, torchrun_args=()):
    """The argument list that runs ``run`` from the repository root: ``python tools/test.py ...``, or under torchrun
    (``--standalone`` unless ``torchrun_args`` give the rendezvous) with ``--launcher pytorch`` when sharded."""
    args = test_args(opt_rel, run, user_options)
    if nproc_per_node <= 1 and not torchrun_args:
        return [sys.executable] + args
    torchrun = ['-m', 'torch.distributed.run', f'--nproc_per_node={nproc_per_node}']
    torchrun += list(torchrun_args) if torchrun_args else ['--standalone']
    return [sys.executable] + torchrun + args + ['--launcher', 'pytorch']


def options_digest(opt):
    """sha256 of an option dict without its ``table`` / ``demo`` sections (labels do not change the numbers)."""
    body = {k: v for k, v in opt.items() if k not in ('table', 'demo')}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _finished(folder, args, digest):
    """The record of a run that finished with these arguments and option digest, else None."""
    path = osp.join(folder, RECORD_FILE)
    if not osp.isfile(path) or not osp.isfile(osp.join(folder, 'summary.csv')):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if record.get('args') == args and record.get('options_sha256') == digest else None


def finished_runs(runs, opt_rel, results, digest, user_options=None):
    """The runs whose results folder holds a record of finishing with these arguments and option digest."""
    return [r for r in runs if _finished(osp.join(results, r.name), test_args(opt_rel, r, user_options), digest)]


def run_tables(runs,
               opt_rel,
               repo,
               results,
               digest,
               user_options=None,
               nproc_per_node=1,
               torchrun_args=(),
               capture=True,
               log=None):
    """Run (or reuse) every run in order; return ``[{run, seconds, reused}]``.

    Runs start in ``repo`` (where the option files' relative paths point) and write ``results/<run>/``.
    ``capture``: keep each run's output and show its last lines only if it fails (else it streams to the console).
    A run's one-line error (exit status 2) becomes an OptionError naming the run; another failure stops everything
    (SystemExit with its status). ``seconds``: the wall time of the call that finished the run.
    """
    log = log or get_root_logger().info
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    done = []
    for i, run in enumerate(runs, 1):
        args = test_args(opt_rel, run, user_options)
        cmd = run_command(opt_rel, run, user_options, nproc_per_node, torchrun_args)
        shown = ' '.join(shlex.quote(c) for c in ['python'] + cmd[1:])
        folder = osp.join(results, run.name)
        record = _finished(folder, args, digest)
        if record is not None:
            log(f'[{i}/{len(runs)}] {run.label} ({run.name}): finished earlier in {record.get("seconds", 0):.0f} s, '
                'reused')
            done.append({'run': run, 'seconds': float(record.get('seconds', 0.0)), 'reused': True})
            continue
        log(f'[{i}/{len(runs)}] {run.label} ({run.name}): {shown}')
        start = time.time()
        out = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) if capture else {}
        proc = subprocess.run(cmd, cwd=repo, env=env, **out)
        seconds = time.time() - start
        if proc.returncode != 0:
            stderr = (proc.stderr or '') if capture else ''
            errors = [ln for ln in stderr.splitlines() if ln.startswith('error: ')]
            if proc.returncode == 2 and (errors or not capture):
                detail = errors[-1][7:] if errors else 'see its error above'
                raise OptionError(f'run {run.name} ({shown}): {detail}')
            if capture:
                log('\n'.join(stderr.strip().splitlines()[-15:]))
            raise SystemExit(proc.returncode)
        os.makedirs(folder, exist_ok=True)
        with open(osp.join(folder, RECORD_FILE), 'w', encoding='utf-8') as f:
            json.dump({'args': args, 'options_sha256': digest, 'seconds': round(seconds, 1)}, f, indent=2)
        log(f'      done in {seconds:.0f} s -> {osp.relpath(folder)}/')
        done.append({'run': run, 'seconds': seconds, 'reused': False})
    return done


def write_report(name, runs, results, steps=None, title=None):
    """The report of the runs' folders (``lan_basicsr.report``: Table 1, figures, index.html) under
    ``results/<name>_report/``, rows labelled as the runs are; the table is also ``results/<name>_table.md``.
    Returns ``(table markdown, {file: path})``."""
    from lan_basicsr.report import build_report
    folders = [osp.join(results, r.name) for r in runs]
    labels = {r.name: r.label for r in runs}
    paths = build_report(folders, osp.join(results, f'{name}_report'), labels=labels, steps=steps, title=title)
    with open(paths['table1.md'], encoding='utf-8') as f:
        table = f.read()
    with open(osp.join(results, f'{name}_table.md'), 'w', encoding='utf-8') as f:
        f.write(table)
    return table, paths
