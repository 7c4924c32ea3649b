"""The README's fenced code blocks, as the tests run them."""
import os.path as osp
import re

from helpers.checkout import REPO

README = osp.join(REPO, 'README.md')
#: Other documents whose code blocks the tests check as the README's.
DOCS = [osp.join(REPO, 'configs', part, 'README.md')
        for part in ('detection', 'segmentation')]
FENCE = re.compile(r'^```(\S*)\n(.*?)^```\s*$', re.M | re.S)
#: A Python block whose first line is ``# NAME.py...`` is a config file of
#: that name; other Python blocks are scripts.
CONFIG_NAME = re.compile(r'# (\w+\.py)\b')


def code_blocks(path=README):
    """(language, code, line number) of every fenced block in ``path``
    (README.md)."""
    with open(path) as f:
        text = f.read()
    return [(m.group(1), m.group(2), text.count('\n', 0, m.start()) + 1)
            for m in FENCE.finditer(text)]


def config_blocks():
    """{file name: code} of the README's config examples, in order."""
    found = {}
    for lang, code, _ in code_blocks():
        name = CONFIG_NAME.match(code) if lang == 'python' else None
        if name:
            assert name.group(1) not in found, f'two {name.group(1)} blocks'
            found[name.group(1)] = code
    return found


def write_configs(directory, changes=None):
    """Write the README's config examples into ``directory``; ``changes``
    maps a file name to a function of its code (to break one on purpose).
    Returns {file name: path}."""
    paths = {}
    for name, code in config_blocks().items():
        if changes and name in changes:
            code = changes[name](code)
        path = osp.join(str(directory), name)
        with open(path, 'w') as f:
            f.write(code)
        paths[name] = path
    return paths
