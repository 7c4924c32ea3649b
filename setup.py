import re

from setuptools import find_packages, setup

with open('mmpoolformer/version.py') as f:
    version = re.search(r"__version__ = '([^']+)'", f.read()).group(1)

setup(
    name='mmpoolformer',
    version=version,
    description='PoolFormer backbone for mmdet 3, mmseg 1 and mmpretrain 1',
    packages=find_packages(include=['mmpoolformer', 'mmpoolformer.*']),
    python_requires='>=3.8',
    install_requires=[
        # 2.6: add_safe_globals takes the (function, 'module.name') pairs
        # compat.py allows (pytorch#142153, after 2.5), and torch.load is
        # weights-only by default, for the libraries' calls that do not say
        # (we pass weights_only=True explicitly). Tested with 2.13.
        'torch>=2.6',
        'mmengine>=0.10.0,<1.0',
        'mmcv>=2.0.0,<2.2.0',
    ],
    extras_require={
        'det': ['mmdet>=3.0.0,<3.4.0'],
        'seg': ['mmsegmentation>=1.0.0,<1.3.0', 'ftfy', 'regex'],
        'cls': ['mmpretrain>=1.0.0,<1.3.0'],
    },
)
