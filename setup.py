"""mmpoolformer's distribution.

Like mmdet, mmseg and mmpretrain, the package carries the repository's
``configs/``, ``tools/`` and ``model-index.yml`` in ``mmpoolformer/.mim/``,
where mmengine's ``_base_ = 'mmpoolformer::...'`` and openmim's ``mim train /
test / run / search`` look for them. They are made at build time, never kept
in git: a wheel and an sdist get copies; an editable install gets symlinks to
the checkout, so edits to a config take effect without reinstalling.
(mmdet decides between the two from ``sys.argv``; pip's PEP 517/660 builds
do not pass ``develop``, so here the build commands themselves decide.)
"""
import os
import os.path as osp
import re
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop
from setuptools.command.sdist import sdist

HERE = osp.dirname(osp.abspath(__file__))
MIM = osp.join('mmpoolformer', '.mim')
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')
# Tools that work on the checkout itself, not on an installed package.
CHECKOUT_ONLY = ('setup_env.sh', 'model_index.py')


def mim_source(item):
    """Where ``item`` comes from: the checkout's top level, or the copy in
    ``mmpoolformer/.mim`` when building from an sdist."""
    for path in (osp.join(HERE, item), osp.join(HERE, MIM, item)):
        if osp.exists(path) and not osp.islink(path):
            return path
    raise FileNotFoundError(f'{item}: neither {HERE}/{item} nor '
                            f'{HERE}/{MIM}/{item} exists')


def _remove(path):
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def copy_mim(dst):
    """Copy configs, tools and the model index into the folder ``dst``."""
    skip = shutil.ignore_patterns('__pycache__', '*.pyc', *CHECKOUT_ONLY)
    os.makedirs(dst, exist_ok=True)
    for item in MIM_ITEMS:
        src, out = mim_source(item), osp.join(dst, item)
        _remove(out)
        if osp.isdir(src):
            shutil.copytree(src, out, ignore=skip)
        else:
            shutil.copyfile(src, out)


def link_mim():
    """Point ``mmpoolformer/.mim/*`` at the checkout (editable installs)."""
    mim = osp.join(HERE, MIM)
    os.makedirs(mim, exist_ok=True)
    for item in MIM_ITEMS:
        out = osp.join(mim, item)
        _remove(out)
        os.symlink(osp.relpath(osp.join(HERE, item), mim), out)


class BuildPy(build_py):
    """Wheels get a copy; PEP 660 editable installs (which run build_py in
    editable mode) get symlinks."""

    def run(self):
        super().run()
        if self.editable_mode:
            link_mim()
        else:
            copy_mim(osp.join(self.build_lib, MIM))


class Develop(develop):
    """``setup.py develop`` (legacy editable installs): symlinks."""

    def run(self):
        link_mim()
        super().run()


class Sdist(sdist):
    """The sdist carries the copies, so a wheel built from it has them."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        copy_mim(osp.join(base_dir, MIM))


with open(osp.join(HERE, 'mmpoolformer', 'version.py')) as f:
    version = re.search(r"__version__ = '([^']+)'", f.read()).group(1)
with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
    readme = f.read()

setup(
    name='mmpoolformer',
    version=version,
    description='PoolFormer and the MetaFormer baselines (PoolFormerV2, '
    'ConvFormer, CAFormer, IdentityFormer, RandFormer) as backbones for '
    'mmdetection 3, mmsegmentation 1 and mmpretrain 1',
    long_description=readme,
    long_description_content_type='text/markdown',
    keywords='computer vision, backbone, PoolFormer, MetaFormer, '
    'object detection, semantic segmentation, OpenMMLab',
    project_urls={
        'PoolFormer paper': 'https://arxiv.org/abs/2111.11418',
        'MetaFormer baselines paper': 'https://arxiv.org/abs/2210.13452',
    },
    classifiers=[
        'Development Status :: 4 - Beta',
        'Intended Audience :: Science/Research',
        'Operating System :: OS Independent',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.8',
        'Programming Language :: Python :: 3.9',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    packages=find_packages(include=['mmpoolformer', 'mmpoolformer.*']),
    cmdclass=dict(build_py=BuildPy, develop=Develop, sdist=Sdist),
    # OpenMMLab's get-started guide creates Python 3.8 environments; the
    # sources are checked for 3.8 (tests/test_python38.py) and tested on
    # 3.11.
    python_requires='>=3.8',
    install_requires=[
        # 2.0 to the newest: tested with 2.0.1 and 2.13 (the newest that
        # mmcv 2.1.0's ops compile for). mmcv 2.1.0's own wheels are built
        # for torch 2.0 and 2.1. Checkpoints are read by
        # mmpoolformer.safeload, not torch's weights-only loader, so every
        # torch in the range is equally safe.
        'torch>=2.0',
        'mmengine>=0.10.0,<1.0',
        'mmcv>=2.0.0,<2.2.0',
        'numpy',
    ],
    extras_require={
        'det': ['mmdet>=3.0.0,<3.4.0'],
        'seg': ['mmsegmentation>=1.0.0,<1.3.0', 'ftfy', 'regex'],
        'cls': ['mmpretrain>=1.0.0,<1.3.0'],
        # No 'mim' extra: openmim's dependency opendatalab brings openxlab,
        # which pins setuptools 60.2 (and older requests, rich, packaging)
        # and pip would install those over the environment's.
        # tools/export_onnx.py
        'onnx': ['onnx', 'onnxruntime', 'onnxscript'],
        # the MetaFormer baselines' ImageNet weights are timm's
        # model.safetensors files (read without it: .pth files)
        'safetensors': ['safetensors'],
    },
    zip_safe=False,
)
