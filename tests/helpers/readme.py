"""The documentation pages' fenced code blocks, as the tests run them: the
README, every page under docs/ and the configs' READMEs."""
import glob
import os.path as osp
import re
import textwrap

from helpers.checkout import REPO

README = osp.join(REPO, 'README.md')
#: The page that quotes PyramidCheckHook's message.
USAGE = osp.join(REPO, 'docs', 'usage.md')
# A fence may be indented (a block inside a list item); it closes at the
# same indentation.
FENCE = re.compile(r'^( *)```(\S*)\n(.*?)^\1```\s*$', re.M | re.S)
#: A Python block whose first line is ``# NAME.py...`` is a config file of
#: that name; other Python blocks are scripts.
CONFIG_NAME = re.compile(r'# (\w+\.py)\b')


def pages():
    """Every documentation page, as paths relative to the repository."""
    found = ['README.md']
    for pattern in ('docs/*.md', 'configs/*/README.md'):
        found += sorted(osp.relpath(p, REPO)
                        for p in glob.glob(osp.join(REPO, pattern)))
    return found


def fenced(text):
    """(language, code, line number) of every fenced block in ``text``."""
    return [(m.group(2), textwrap.dedent(m.group(3)),
             text.count('\n', 0, m.start()) + 1)
            for m in FENCE.finditer(text)]


def code_blocks():
    """(page, language, code, line number) of every fenced block on every
    page."""
    blocks = []
    for page in pages():
        with open(osp.join(REPO, page), encoding='utf-8') as f:
            blocks += [(page, *b) for b in fenced(f.read())]
    return blocks


def config_blocks():
    """{file name: code} of the pages' config examples, in order. A name
    may appear on two pages only with the same code."""
    found = {}
    for page, lang, code, line in code_blocks():
        name = CONFIG_NAME.match(code) if lang == 'python' else None
        if name:
            known = found.setdefault(name.group(1), code)
            assert known == code, \
                f'{page}:{line}: {name.group(1)} differs from its first block'
    return found


def write_configs(directory, changes=None):
    """Write the pages' config examples into ``directory``; ``changes``
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
