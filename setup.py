#!/usr/bin/env python
from os import path as osp

from setuptools import find_packages, setup


def read_requirements(filename='requirements.txt'):
    here = osp.dirname(osp.abspath(__file__))
    with open(osp.join(here, filename)) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith('#')]


def read_readme():
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'README.md')
    return open(path, encoding='utf-8').read() if osp.isfile(path) else ''


def get_version():
    scope = {}
    with open(osp.join(osp.dirname(osp.abspath(__file__)), 'lan_basicsr', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


# Verified with 0.4.2 (architecture list and descriptor API); the permissive main package only, never the
# non-commercial spandrel_extra_arches.
SPANDREL = 'spandrel>=0.4.2,<0.5; python_version >= "3.10"'

setup(
    name='lan_basicsr',
    version=get_version(),
    description='Test-time noise adaptation (LAN, CVPR 2024) as a BasicSR plugin',
    long_description=read_readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('options', 'tools', 'tests', 'benchmarks', 'experiments', 'results')),
    include_package_data=True,
    python_requires='>=3.8',
    install_requires=read_requirements(),
    extras_require={
        # Checkpoints of other architectures (network_g type SpandrelNet); spandrel needs Python >= 3.10.
        'spandrel': [SPANDREL],
        'dev': ['pytest', 'flake8', 'isort', 'yapf', SPANDREL],
        'bm3d': ['bm3d'],  # benchmarks/bm3d_real_pairs.py (the authors' package; free for non-commercial use)
    },
    entry_points={'console_scripts': ['lan-denoise=lan_basicsr.denoise:cli']},
    license='Apache-2.0',
    zip_safe=False)
