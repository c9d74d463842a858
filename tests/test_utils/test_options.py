import pytest
from conftest import tiny_dncnn

from lan_basicsr.utils.errors import OptionError
from lan_basicsr.utils.options import load_config, load_yaml, merge_cfg_options, parse_options, validate_options


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_base_inheritance_and_delete(tmp_path):
    _write(tmp_path / 'base.yml', 'a: {x: 1, y: 2}\nb: [1, 2]\nlr: !!float 5e-4\n')
    _write(tmp_path / 'mid.yml', '_base_: base.yml\na: {y: 3}\nc: mid\n')
    child = _write(tmp_path / 'child.yml', '_base_: [mid.yml]\na: {_delete_: true, z: 9}\nc: child\n')
    cfg = load_config(child)
    assert cfg == {'a': {'z': 9}, 'b': [1, 2], 'lr': 5e-4, 'c': 'child'}
    assert load_config(str(tmp_path / 'mid.yml'))['a'] == {'x': 1, 'y': 3}


def test_circular_base(tmp_path):
    _write(tmp_path / 'a.yml', '_base_: b.yml\n')
    _write(tmp_path / 'b.yml', '_base_: a.yml\n')
    with pytest.raises(OptionError, match='circular'):
        load_config(str(tmp_path / 'a.yml'))


def test_yaml_is_loaded_safely(tmp_path):
    path = _write(tmp_path / 'evil.yml', 'x: !!python/object/apply:os.system ["echo hacked"]\n')
    with pytest.raises(OptionError, match=r'evil\.yml:1:\d+: invalid YAML'):
        load_yaml(path)


def test_bad_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path / 'bad.yml', 'a: 1\nb: [1, 2\nc: 3\n')
    with pytest.raises(OptionError, match=r'bad\.yml:\d+:\d+: invalid YAML'):
        load_yaml(path)
    with pytest.raises(OptionError, match='top level must be a mapping'):
        load_yaml(_write(tmp_path / 'list.yml', '- 1\n- 2\n'))


def test_cfg_options_override_nested_and_new_keys():
    opt = {'adapt': {'type': 'LAN', 'loss': {'type': 'ZSN2NLoss'}, 'steps': 20}}
    out = merge_cfg_options(opt, {'adapt.type': 'FullTrainable', 'adapt.loss.type': 'Nbr2NbrLoss', 'adapt.lr': 1e-5})
    assert out == {'adapt': {'type': 'FullTrainable', 'loss': {'type': 'Nbr2NbrLoss'}, 'steps': 20, 'lr': 1e-5}}
    assert opt['adapt']['type'] == 'LAN'  # the input is not modified


def _minimal(paired_folder, **extra):
    opt = {
        'model_type': 'DenoiseModel',
        'network_g': tiny_dncnn(),
        'datasets': {
            'test': {
                'type': 'PairedImageDataset',
                'dataroot_gt': f'{paired_folder}/gt',
                'dataroot_lq': f'{paired_folder}/lq'
            }
        },
    }
    opt.update(extra)
    return opt


def test_validate_unknown_types_list_registered_names(paired_folder):
    validate_options(_minimal(paired_folder), 'x.yml')
    bad = _minimal(paired_folder)
    bad['network_g']['type'] = 'NoSuchNet'
    with pytest.raises(
            OptionError, match=r'x\.yml: network_g\.type: unknown type "NoSuchNet"; registered arch '
            r'types: .*DnCNN'):
        validate_options(bad, 'x.yml')
    with pytest.raises(OptionError, match=r'model_type: unknown type "Nope".*DenoiseModel'):
        validate_options(_minimal(paired_folder, model_type='Nope'), 'x.yml')
    bad = _minimal(paired_folder)
    bad['datasets']['test']['type'] = 'Missing'
    with pytest.raises(OptionError, match=r'datasets\.test\.type: unknown type "Missing".*PairedImageDataset'):
        validate_options(bad, 'x.yml')
    with pytest.raises(OptionError, match=r'meta\.inner_loss\.type: unknown type "ZSN2N".*ZSN2NLoss'):
        validate_options(
            _minimal(paired_folder, model_type='MetaDenoiseModel', meta={'inner_loss': {
                'type': 'ZSN2N'
            }}), 'x.yml')
    with pytest.raises(
            OptionError, match=r'adapt\.loss\.type: unknown type "Nbr"; registered loss types: .*Nbr2NbrLoss'):
        validate_options(
            _minimal(paired_folder, model_type='LANModel', adapt={
                'type': 'LAN',
                'loss': {
                    'type': 'Nbr'
                }
            }), 'x.yml')
    with pytest.raises(OptionError, match=r'val\.metrics\.psnr\.type: unknown type "calc"'):
        validate_options(_minimal(paired_folder, val={'metrics': {'psnr': {'type': 'calc'}}}), 'x.yml')


def test_validate_missing_paths(paired_folder, tmp_path):
    bad = _minimal(paired_folder)
    bad['datasets']['test']['dataroot_lq'] = str(tmp_path / 'nowhere')
    with pytest.raises(OptionError, match=r'datasets\.test\.dataroot_lq: path ".*nowhere" does not exist'):
        validate_options(bad, 'x.yml')
    with pytest.raises(OptionError, match=r'path\.pretrain_network_g: checkpoint ".*net\.pth" not found'):
        validate_options(_minimal(paired_folder, path={'pretrain_network_g': str(tmp_path / 'net.pth')}), 'x.yml')


def test_parse_options_defaults(paired_folder, tmp_path):
    import yaml
    path = tmp_path / 'my_experiment.yml'
    path.write_text(yaml.safe_dump(_minimal(paired_folder, num_gpu=0)))
    opt, _ = parse_options(
        str(tmp_path / 'root'), is_train=False, argv=['-opt', str(path), '--cfg-options', 'manual_seed=7'])
    assert opt['name'] == 'my_experiment'
    assert opt['manual_seed'] == 7 and opt['dist'] is False and opt['rank'] == 0 and opt['num_gpu'] == 0
    assert opt['path']['results_root'] == str(tmp_path / 'root' / 'results' / 'my_experiment')
    assert opt['datasets']['test']['phase'] == 'test' and opt['datasets']['test']['name'] == 'test'
