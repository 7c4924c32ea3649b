"""Every fenced code block of every documentation page (README.md,
docs/*.md, configs/*/README.md) runs here: config examples are built and
trained for one step, Python scripts run, shell commands are checked
(scripts and configs exist, the tools' argument parsers accept the options,
``--cfg-options`` keys exist in the config), and citations parse."""
import argparse
import glob
import importlib.util
import os
import os.path as osp
import re
import shlex

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope
from PIL import Image

from helpers.readme import code_blocks, config_blocks, write_configs
from mmpoolformer.engine.check import pyramid_problems
from helpers.checkout import REPO, TOOLS
from mmpoolformer.analysis import build_model
from mmpoolformer.testing import mmpretrain_poolformer, official_state
from mmpoolformer.testing.heads import random_batch, sizes_at, train_step

BLOCKS = code_blocks()
#: ``text`` blocks are output, quoted (checked where the output is made).
LANGUAGES = ('python', 'bash', 'text', 'bibtex')


def by_language(lang):
    """[(code, 'page:line')] of the blocks in ``lang``."""
    return [(code, f'{page}:{line}') for page, lg, code, line in BLOCKS
            if lg == lang]


def test_every_page_has_blocks():
    pages = {page for page, *_ in BLOCKS}
    assert {'README.md', 'docs/usage.md', 'docs/tools.md',
            'configs/detection/README.md'} <= pages, pages


def test_every_block_has_a_language_the_tests_know():
    assert BLOCKS, 'no code blocks found in the pages'
    unknown = [(lang, f'{page}:{line}') for page, lang, _, line in BLOCKS
               if lang not in LANGUAGES]
    assert not unknown, f'blocks (language, page:line) not tested: ' \
        f'{unknown}; tag them one of {LANGUAGES}'


# -- config examples ---------------------------------------------------------

@pytest.fixture(scope='module')
def readme_configs(tmp_path_factory):
    """The README's configs written out, next to the ImageNet file
    (official layout) that the first one names."""
    root = tmp_path_factory.mktemp('readme_configs')
    torch.save(official_state(mmpretrain_poolformer('s12')),
               root / 'poolformer_s12.pth.tar')
    return root, write_configs(root)


def load_readme_config(path):
    """The config at ``path`` as a user's run loads it; a URL checkpoint
    (no network here) is replaced by random init, a local one must exist."""
    cfg = Config.fromfile(path)
    init = cfg.model.backbone.get('init_cfg')
    if init and init['checkpoint'].startswith('https://'):
        cfg.model.backbone.init_cfg = None
    elif init:
        assert osp.isfile(init['checkpoint']), init
    return cfg


@pytest.mark.parametrize('name', list(config_blocks()))
def test_config_example_trains_on_its_grid(name, readme_configs,
                                           monkeypatch):
    root, paths = readme_configs
    monkeypatch.chdir(root)  # relative checkpoint paths, as a user's
    cfg = load_readme_config(paths[name])
    assert any(h.type == 'PyramidCheckHook' for h in cfg.custom_hooks)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()  # loads the checkpoint, if any
    size = (96, 128)
    out = train_step(model, random_batch(cfg.default_scope, size))
    assert np.isfinite(out['loss'])
    missing = [n for n in out['no_grad'] if n.startswith('backbone.')]
    assert not missing, f'{name}: no gradient in {missing}'
    strides = [s[0] for s in model.bbox_head.prior_generator.strides]
    assert out['features'] == sizes_at(size, strides), out
    assert pyramid_problems(model, out['input'], out['backbone'],
                            out['features']) == []


def test_readme_retinanet_loads_the_checkpoint_it_names(readme_configs,
                                                        monkeypatch):
    """The first example's ``poolformer_s12.pth.tar`` (official layout)
    ends up in the backbone."""
    root, paths = readme_configs
    monkeypatch.chdir(root)
    cfg = load_readme_config(paths['my_retinanet.py'])
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    model.init_weights()
    state = torch.load(root / 'poolformer_s12.pth.tar')
    loaded = model.backbone.stages[0].blocks[0].norm1.weight
    assert torch.equal(loaded, state['network.0.0.norm1.weight'])


# -- Python scripts ----------------------------------------------------------

SCRIPTS = [(code, line) for code, line in by_language('python')
           if code not in config_blocks().values()]


@pytest.mark.parametrize('code, line', SCRIPTS,
                         ids=[line for _, line in SCRIPTS])
def test_python_example_runs(code, line, tmp_path, monkeypatch):
    """The inference example, in a directory holding the files it names:
    ``configs`` (this checkout's), ``demo.jpg`` and checkpoints of the
    configs it loads. Without CUDA, ``cuda:0`` becomes ``cpu``. The
    deploy page's example runs where mmdeploy is installed (the deploy
    environment)."""
    if 'mmdeploy' in code:
        pytest.importorskip('mmdeploy')
    os.symlink(osp.join(REPO, 'configs'), tmp_path / 'configs')
    Image.fromarray(np.random.RandomState(0).randint(
        0, 255, (120, 160, 3), dtype=np.uint8)).save(tmp_path / 'demo.jpg')
    for config, ckpt in [
            ('configs/detection/mask_rcnn_poolformer_s12.py', 'epoch_12.pth'),
            ('configs/segmentation/fpn_poolformer_s12.py',
             'iter_40000.pth')]:
        if ckpt in code:
            model, _ = build_model(osp.join(REPO, config))
            torch.save({'state_dict': model.state_dict(), 'meta': {}},
                       tmp_path / ckpt)
    if not torch.cuda.is_available():
        assert "device='cuda:0'" in code or 'cuda' not in code
        code = code.replace("device='cuda:0'", "device='cpu'")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, line, 'exec'), namespace)
    # the files it says it writes
    written = {"out_file='seg.png'": 'seg.png',
               "out_dir='out/'": 'out/vis/demo.jpg'}
    for option, path in written.items():
        if option in code:
            assert (tmp_path / path).is_file(), path


FRAGMENTS = [(code, line) for code, line in SCRIPTS
             if code.startswith('optim_wrapper = ')]


@pytest.mark.parametrize('code, line', FRAGMENTS,
                         ids=[line for _, line in FRAGMENTS])
def test_optim_wrapper_example_builds(code, line):
    """The depth-decay fragment, put into the UperNet config it is written
    for, builds an optimizer whose backbone groups decay below the base
    rate while the heads keep it."""
    namespace = {}
    exec(compile(code, line, 'exec'), namespace)
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'segmentation', 'upernet_convformer_s18.py'))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, namespace['optim_wrapper'])
    lrs = sorted({g['lr'] for g in wrapper.optimizer.param_groups})
    assert len(lrs) > 2 and lrs[-1] == pytest.approx(1e-4), lrs


# -- shell commands ----------------------------------------------------------

class Parsed(Exception):
    """A tool's arguments were parsed; carries the namespace."""


def parse_tool_args(script, argv, monkeypatch, folder=TOOLS):
    """``tools/<script>``'s (or ``folder``'s) argparse namespace for
    ``argv``, from its own ``main``, stopped right after parsing; a rejected
    option fails."""
    spec = importlib.util.spec_from_file_location(
        f'readme_{script[:-3]}', osp.join(folder, script))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = argparse.ArgumentParser.parse_args

    def stop(self, args=None, namespace=None):
        raise Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', stop)
    try:
        module.main(argv)
    except Parsed as parsed:
        return parsed.args[0]
    except SystemExit as e:
        pytest.fail(f'{osp.relpath(folder, REPO)}/{script} rejects {argv}: '
                    f'exit {e.code}')
    finally:
        monkeypatch.setattr(argparse.ArgumentParser, 'parse_args', original)
    pytest.fail(f'tools/{script} never parsed its arguments')


def commands(code):
    """The block's commands as token lists: continuation lines joined,
    comments and leading VAR=value assignments dropped, and optional parts
    (``[--amp]``, ``[--shape 800 1344]``) taken as given."""
    for line in code.replace('\\\n', ' ').splitlines():
        tokens = [t.strip('[]') for t in shlex.split(line, comments=True)]
        tokens = [t for t in tokens if t]
        while tokens and '=' in tokens[0] and not tokens[0].startswith('-'):
            tokens.pop(0)
        if tokens:
            yield tokens


# Shell scripts: (tool they run, their arguments as the tool gets them).
SHELL = {
    'tools/dist_train.sh': ('train.py', lambda a: [a[0], '--launcher',
                                                   'pytorch'] + a[2:]),
    'tools/dist_test.sh': ('test.py', lambda a: a[:2] + ['--launcher',
                                                         'pytorch'] + a[3:]),
    'tools/slurm_train.sh': ('train.py', lambda a: [
        a[2], f'--work-dir={a[3]}', '--launcher=slurm'] + a[4:]),
    'tools/slurm_test.sh': ('test.py', lambda a: a[2:4] + [
        '--launcher=slurm'] + a[4:]),
}
# Shell scripts that run no Python tool: how many arguments they take.
STANDALONE = {'benchmarks/gpu_bundle.sh': 1}
# Scripts of the benchmark harness (the checkout's, not the package's).
BENCHMARKS = ('benchmarks/backbones.py', )
# Scripts of other projects the README names (not installed by pip): only
# the configs they are given are checked.
EXTERNAL = ('mmsegmentation/demo/image_demo.py', )


def check_namespace(ns):
    config = getattr(ns, 'config', None)
    if config is None:
        return
    path = osp.join(REPO, config)
    assert osp.isfile(path), f'no config {config}'
    options = getattr(ns, 'cfg_options', None) or {}
    if options:
        cfg = Config.fromfile(path)
        for key in options:
            node = cfg
            for part in key.split('.'):
                assert part in node, f'{config} has no {key}'
                node = node[part]


# Other programs' commands (setting up an environment): only their
# subcommand is checked.
OTHER = {'pip': ('install', 'uninstall', 'download', 'wheel', 'show'),
         'git': ('clone', 'checkout', 'pull'), 'source': None, 'cd': None}


MIM = ('train', 'test', 'run', 'search')
# mim's own package commands, as for pip: only the subcommand is checked.
MIM_OTHER = ('install', )


def check_mim(tokens):
    """``mim SUBCOMMAND mmpoolformer ...``: the tool run exists in tools/,
    and a config given is one of the README's examples or one of ours."""
    if tokens[1] in MIM_OTHER:
        return
    assert tokens[1] in MIM and tokens[2] == 'mmpoolformer', tokens
    args = tokens[3:]
    if tokens[1] == 'run':
        tool = osp.join(TOOLS, args[0] + '.py')
        assert osp.isfile(tool), f'no tool {args[0]}'
        args = args[1:]
    if args and args[0].endswith('.py'):
        ours = {osp.basename(p) for p in glob.glob(
            osp.join(REPO, 'configs', '**', '*.py'), recursive=True)}
        assert args[0] in ours or args[0] in config_blocks(), \
            f'no config {args[0]}'


def check_command(tokens, monkeypatch):
    if tokens[0] in ('python3', '.venv/bin/python') or \
            tokens[0].endswith('/bin/python'):
        tokens = ['python'] + tokens[1:]
    if tokens[:3] == ['python', '-m', 'pip']:
        tokens = tokens[2:]
    if tokens[0] == 'mim':
        check_mim(tokens)
        return
    if tokens[:3] == ['python', '-m', 'pytest']:
        args = tokens[3:]
        # not the values of -m (a marker), -k and -p
        paths = [t for i, t in enumerate(args) if not t.startswith('-')
                 and not (i and args[i - 1] in ('-m', '-k', '-p'))]
        for path in paths:
            assert osp.exists(osp.join(REPO, path.split('::')[0])), \
                f'no test path {path}'
        return
    if tokens[0] in OTHER:
        allowed = OTHER[tokens[0]]
        assert allowed is None or tokens[1] in allowed, tokens
        return
    if tokens[0] == 'make':
        with open(osp.join(REPO, 'Makefile')) as f:
            targets = [ln.split(':')[0] for ln in f
                       if ln[:1].isalpha() and ':' in ln]
        for target in tokens[1:]:
            assert target in targets, f'no make target {target}'
        return
    if tokens[0] == 'python' and tokens[1] in EXTERNAL:
        for t in tokens[2:]:
            if t.startswith('configs/'):
                assert osp.isfile(osp.join(REPO, t)), t
        return
    if tokens[0] == 'python' and tokens[1] in BENCHMARKS:
        parse_tool_args(osp.basename(tokens[1]), tokens[2:], monkeypatch,
                        osp.join(REPO, 'benchmarks'))
        return
    if tokens[0] == 'python':
        script = tokens[1]
        assert script.startswith('tools/') and \
            osp.isfile(osp.join(REPO, script)), f'no script {script}'
        check_namespace(parse_tool_args(script[6:], tokens[2:],
                                        monkeypatch))
        return
    if tokens[0] in STANDALONE:
        path = osp.join(REPO, tokens[0])
        assert os.access(path, os.X_OK), f'{tokens[0]} is not executable'
        assert len(tokens) <= 1 + STANDALONE[tokens[0]], tokens
        return
    assert tokens[0] in SHELL, f'unknown command {tokens}'
    path = osp.join(REPO, tokens[0])
    assert os.access(path, os.X_OK), f'{tokens[0]} is not executable'
    tool, argv = SHELL[tokens[0]]
    args = tokens[1:]
    gpus = {'tools/dist_train.sh': 1, 'tools/dist_test.sh': 2}.get(tokens[0])
    if gpus is not None:
        assert args[gpus].isdigit(), f'{tokens}: GPUs must be a number'
    check_namespace(parse_tool_args(tool, argv(args), monkeypatch))


BASH = by_language('bash')


@pytest.mark.parametrize('code, line', BASH,
                         ids=[line for _, line in BASH])
def test_shell_example_is_well_formed(code, line, monkeypatch):
    found = list(commands(code))
    assert found, f'{line}: no command'
    for tokens in found:
        check_command(tokens, monkeypatch)


def test_shell_check_catches_mistakes(monkeypatch):
    """The command check is not a rubber stamp."""
    bad = [
        'python tools/train.py configs/detection/retinanet_poolformer_s12.py'
        ' --ampp',
        'python tools/train.py configs/detection/retinanet_poolformer_s99.py',
        'tools/dist_train.sh configs/detection/retinanet_poolformer_s12.py 8'
        ' --cfg-options model.backbone.init_cfg.ckpt=x',
        'python tools/get_flops.py configs/detection/retinanet_poolformer_'
        's12.py --part neck',
        'make demos',
        'pip instal mmpoolformer',
        'mim run mmpoolformer get_flop my_detector.py',
        'mim train mmdet my_detector.py',
        'mim train mmpoolformer no_such_config.py',
        'benchmarks/gpu_bundle.sh .whl extra',
        'tools/gpu_bundle.sh .whl',
        'python benchmarks/backbones.py --devise cuda',
        'python benchmarks/no_such_script.py',
        'python tools/benchmark.py --matrix cpu --out x',
        'mim instal mmcv==2.1.0',
        'python -m pytest tests/test_no_such_dir -q',
        'python -m pytst tests',
    ]
    for command in bad:
        tokens = next(commands(command))
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            check_command(tokens, monkeypatch)


# -- citations ---------------------------------------------------------------

BIBTEX = by_language('bibtex')
ENTRY = re.compile(r'@(\w+)\{(\w+),\n((?:  \w+=\{.*\},?\n)+)\}\s*')


def bibtex_entries(code):
    """{key: {field: value}} of a bibtex block; every line must belong to
    an entry of ``  field={value},`` lines with balanced braces."""
    entries, pos = {}, 0
    while pos < len(code):
        m = ENTRY.match(code, pos)
        assert m, f'not a bibtex entry: {code[pos:pos + 80]!r}'
        fields, lines = {}, m.group(3).splitlines()
        for i, ln in enumerate(lines):
            # a comma after every field but the last
            assert ln.endswith(',') == (i < len(lines) - 1), ln
            name, value = ln.strip().rstrip(',').split('=', 1)
            assert value.count('{') == value.count('}'), ln
            fields[name] = value[1:-1]
        entries[m.group(2)] = fields
        pos = m.end()
    return entries


@pytest.mark.parametrize('code, line', BIBTEX,
                         ids=[line for _, line in BIBTEX])
def test_citation_parses(code, line):
    entries = bibtex_entries(code)
    assert entries, line
    for key, fields in entries.items():
        assert {'title', 'author', 'year'} <= set(fields), (line, key)


def test_citation_check_catches_mistakes():
    good = BIBTEX[0][0]
    for bad in [good.replace('},\n', '}\n', 1),
                good.replace('title={', 'title={{', 1),
                good.replace('@', '', 1)]:
        with pytest.raises(AssertionError):
            bibtex_entries(bad)
