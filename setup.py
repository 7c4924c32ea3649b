from setuptools import find_packages, setup

setup(
    name='mmpoolformer',
    version='0.1.0',
    description='PoolFormer backbone for mmdet 3, mmseg 1 and mmpretrain 1',
    packages=find_packages(include=['mmpoolformer', 'mmpoolformer.*']),
    python_requires='>=3.8',
    install_requires=[
        'torch>=2.0',
        'mmengine>=0.10.0,<1.0',
        'mmcv>=2.0.0,<2.2.0',
    ],
    extras_require={
        'det': ['mmdet>=3.0.0,<3.4.0'],
        'seg': ['mmsegmentation>=1.0.0,<1.3.0', 'ftfy', 'regex'],
        'cls': ['mmpretrain>=1.0.0,<1.3.0'],
    },
)
