"""The option schema: keys from signatures, value rules, sources in messages, and no false alarm on shipped files."""
import glob
from os import path as osp

import pytest
import yaml
from conftest import tiny_dncnn

from lan_basicsr.utils import option_schema as schema
from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.options import OptionSources, load_config, load_yaml, parse_cli_value, validate_options

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _lan(paired_folder, **extra):
    opt = {
        'model_type': 'LANModel',
        'network_g': tiny_dncnn(),
        'datasets': {
            'test': {
                'name': 'toy',
                'type': 'PairedNoisyDataset',
                'dataroot_lq': f'{paired_folder}/lq',
                'dataroot_gt': f'{paired_folder}/gt'
            }
        },
        'adapt': {
            'type': 'LAN',
            'steps': 2
        },
    }
    opt.update(extra)
    return opt


def test_duplicate_key_names_both_lines(tmp_path):
    path = tmp_path / 'dup.yml'
    path.write_text('adapt:\n  type: LAN\n  steps: 5\n  loss: {type: ZSN2NLoss}\n  steps: 20\n')
    with pytest.raises(OptionError) as e:
        load_yaml(str(path))
    assert str(e.value) == (f'{path}:5: key "adapt.steps" is set twice (lines 3 and 5); YAML would silently keep the '
                            'second: keep one')
    path.write_text('a: &x {k: 1}\nb:\n  <<: *x\n  k: 2\nc: [{k: 1}, {k: 2}]\n')  # merge keys and lists are no repeats
    assert load_yaml(str(path)) == {'a': {'k': 1}, 'b': {'k': 2}, 'c': [{'k': 1}, {'k': 2}]}
    path.write_text('x:\n  - {k: 1, k: 2}\n')
    with pytest.raises(OptionError, match=r'dup\.yml:2: key "x\.0\.k" is set twice \(lines 2 and 2\)'):
        load_yaml(str(path))


def test_cli_values_are_verbatim():
    assert parse_cli_value('my run') == 'my run'
    assert parse_cli_value('/my photos/x') == '/my photos/x'
    assert parse_cli_value('"my run"') == 'my run' and parse_cli_value("'007'") == '007'
    assert parse_cli_value('007') == 7 and parse_cli_value('1e-4') == 1e-4 and parse_cli_value('inf') == float('inf')
    assert parse_cli_value('True') is True and parse_cli_value('none') is None and parse_cli_value('~') is None
    assert parse_cli_value('[0.9, 0.999]') == [0.9, 0.999]
    assert parse_cli_value('(1, 2)') == (1, 2)
    assert parse_cli_value('[a b, "1", 2]') == ['a b', '1', 2]
    assert parse_cli_value('{type: Adam, betas: [0.5, 0.9]}') == {'type': 'Adam', 'betas': [0.5, 0.9]}
    assert parse_cli_value('a,b') == 'a,b'  # no bare comma lists: a path may hold a comma
    with pytest.raises(OptionError, match=r'cannot read "\[1," as a list or mapping'):
        parse_cli_value('[1,')


def test_unknown_keys_everywhere_name_section_and_closest(paired_folder):
    nbb = {**tiny_dncnn(), 'nbb': 3}
    loss = {'type': 'ZSN2NLoss', 'weight': 1}
    metrics = {'psnr': {'type': 'calculate_psnr', 'y_channel': True}}
    cases = [
        (dict(adapt={'stpes': 2}), r'x\.yml: adapt\.stpes: unknown key in section "adapt" \(did you mean "steps"\?\)'),
        (dict(adpat={}), r'adpat: unknown key in the top level \(did you mean "adapt"\?\)'),
        (dict(network_g=nbb), r'network_g\.nbb: unknown key: DnCNN \(arch "DnCNN"\) takes no argument "nbb" \(did you '
         r'mean "nb"\?\); it takes: type, in_nc, out_nc, nc, nb, act_mode \(changing the type with --cfg-options '
         r'keeps the option file\'s other keys; to replace the whole block: "network_g=\{_delete_: true, type: '
         r'\.\.\.\}"\)'),
        (dict(adapt={'loss': loss}), r'adapt\.loss\.weight: .*\(did you mean "loss_weight"\?\)'),
        (dict(val={'metrics': metrics}), r'val\.metrics\.psnr\.y_channel: unknown key: calculate_psnr'),
        (dict(path={'strict_load': False}), r'path\.strict_load: unknown key in section "path"'),
        (dict(logger={'wandb': {
            'projct': 'x'
        }}), r'logger\.wandb\.projct: .*did you mean "project"'),
        (dict(adapt={'optim': {
            'type': 'Adam',
            'lr': 1e-3
        }}), r'adapt\.optim\.lr: set the learning rate with adapt\.lr'),
    ]
    for extra, pattern in cases:
        opt = _lan(paired_folder)
        for key, value in extra.items():
            opt[key] = {**opt[key], **value} if key == 'adapt' else value
        with pytest.raises(OptionError, match=pattern):
            validate_options(opt, 'x.yml', is_train=False)


def test_values_checked_before_building(paired_folder):

    def fails(pattern, **extra):
        opt = _lan(paired_folder, **extra)
        with pytest.raises(OptionError, match=pattern):
            validate_options(opt, 'x.yml', is_train=False)

    fails(r'adapt\.lr: inf is not a finite number', adapt={'lr': float('inf')})
    fails(r'adapt\.lr: expected a number > 0 \(or null\), got \'abc\'', adapt={'lr': 'abc'})
    fails(
        r'adapt\.optim: torch\.optim\.Adam rejects these arguments \(ValueError: Invalid beta parameter at index 0',
        adapt={'optim': {
            'type': 'Adam',
            'betas': [2, 3]
        }})
    fails(
        r'adapt\.optim\.type: "Adamm" is not a torch\.optim optimiser \(did you mean "Adam"\?\)',
        adapt={'optim': {
            'type': 'Adamm'
        }})
    fails(r'adapt\.report_steps\[1\]: -5 is out of range; expected an integer >= 0', adapt={'report_steps': [0, -5]})
    fails(r'network_g: DnCNN rejects these options \(TypeError', network_g={**tiny_dncnn(), 'nc': 'wide'})
    fails(r'manual_seed: 4294967295 is out of range', manual_seed=2**32 - 1)
    fails(
        r'datasets\.test\.crop\.position: \'centre\' is not one of top_left, center \(did you mean "center"\?\)',
        datasets={'test': {
            **_lan(paired_folder)['datasets']['test'], 'crop': {
                'size': 8,
                'position': 'centre'
            }
        }})
    fails(r'some\.deep\.list\[1\]: nan is not a finite number', some={'deep': {'list': [1.0, float('nan')]}})
    # a key of another adapter may stay null (a base file lists layer: ~ for all); a value is refused
    validate_options(_lan(paired_folder, adapt={'type': 'LAN', 'layer': None, 'init_path': None}), 'x.yml')
    fails(
        r'adapt\.init_path: not used by adapt\.type LAN \(an argument of FirstLayer, FullTrainable, LastLayer, '
        r'OffsetAndWeights\)',
        adapt={
            'type': 'LAN',
            'init_path': 'x.pth'
        })


def test_messages_name_the_file_that_set_the_key(tmp_path, paired_folder):
    (tmp_path / 'base.yml').write_text('adapt:\n  type: LAN\n  stpes: 3\n')
    opt = _lan(paired_folder)
    opt.pop('adapt')
    (tmp_path / 'run.yml').write_text(yaml.safe_dump({'_base_': 'base.yml', **opt}))
    sources = OptionSources('run.yml')
    cfg = load_config(str(tmp_path / 'run.yml'), sources)
    with pytest.raises(OptionError, match=r'^.*base\.yml: adapt\.stpes: unknown key'):
        validate_options(cfg, sources, is_train=False)
    sources.record_cli({'adapt.stpes': 3})
    with pytest.raises(OptionError, match=r'^--cfg-options: adapt\.stpes: unknown key'):
        validate_options(cfg, sources, is_train=False)


def test_signature_keys_follow_kwargs_up_the_mro():

    class Base:

        def __init__(self, a, b=1):
            pass

    class Child(Base):

        def __init__(self, c=2, **kwargs):
            super().__init__(**kwargs)

    params, open_ = schema.accepted_arguments(Child)
    assert list(params) == ['a', 'b', 'c'] and not open_

    def metric(img, img2, crop_border, test_y_channel=False, **kwargs):
        pass

    params, open_ = schema.accepted_arguments(metric, skip=('img', 'img2'))
    assert list(params) == ['crop_border', 'test_y_channel'] and not open_


def test_a_new_class_or_section_hooks_in_without_editing_the_schema(paired_folder):
    """A new loss argument is known from its signature; a registered tool section is checked by its spec."""
    from basicsr.utils.registry import LOSS_REGISTRY
    from torch import nn

    @LOSS_REGISTRY.register()
    class _SchemaProbeLoss(nn.Module):

        def __init__(self, strength=1.0, loss_weight=1.0):
            super().__init__()

    try:
        validate_options(_lan(paired_folder, adapt={'loss': {'type': '_SchemaProbeLoss', 'strength': 2}}), 'x.yml')
        with pytest.raises(OptionError, match=r'adapt\.loss\.strenght: .*\(did you mean "strength"\?\)'):
            validate_options(_lan(paired_folder, adapt={'loss': {'type': '_SchemaProbeLoss', 'strenght': 2}}), 'x.yml')
        schema.register_section('probe_tool', schema.Section({'level': schema.Int(ge=0, le=3)}))
        validate_options(_lan(paired_folder, probe_tool={'level': 2}), 'x.yml')
        with pytest.raises(
                OptionError, match=r'probe_tool\.level: 7 is out of range; expected an integer >= 0 and '
                r'<= 3'):
            validate_options(_lan(paired_folder, probe_tool={'level': 7}), 'x.yml')
    finally:
        LOSS_REGISTRY._obj_map.pop('_SchemaProbeLoss')
        schema.TOOL_SECTIONS.pop('probe_tool', None)


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(ROOT, 'options', '*.yml'))), ids=osp.basename)
def test_every_shipped_option_file_passes_the_schema(path, monkeypatch):
    """No false alarm: the shipped files validate (data and weights are absent here, so paths are not checked)."""
    monkeypatch.setattr(schema.DirPath, 'check', lambda self, value, keys, ctx: None)
    monkeypatch.setattr(schema.CheckpointPath, 'check', lambda self, value, keys, ctx: None)
    sources = OptionSources(path)
    validate_options(load_config(path, sources), sources, is_train=osp.basename(path).startswith('train_'))
