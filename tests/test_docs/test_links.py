"""Every relative link on every documentation page resolves: the file (or
folder) exists and, for ``page.md#anchor``, the page has a heading with
that anchor, as GitHub makes them. The configs' results tables are the
model index's."""
import os.path as osp
import re

import pytest

from helpers.readme import FENCE, pages
from helpers.results import results_table
from helpers.checkout import REPO

LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)')
HEADING = re.compile(r'^#{1,6} +(.+?) *#*$', re.M)
CODE_SPAN = re.compile(r'`[^`\n]*`')


def prose(text):
    """``text`` without its fenced blocks (their lines kept, blank)."""
    return FENCE.sub(lambda m: '\n' * m.group(0).count('\n'), text)


def anchors(text):
    """The anchors GitHub gives the headings of a Markdown page: lower
    case, punctuation dropped, spaces to hyphens, repeats numbered."""
    found, seen = set(), {}
    for title in HEADING.findall(prose(text)):
        title = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', title)  # links
        slug = re.sub(r'[^\w\- ]', '', title.lower()).replace(' ', '-')
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f'{slug}-{n}')
    return found


def links(text):
    """The relative link targets in ``text``'s prose (code is not read)."""
    text = CODE_SPAN.sub('', prose(text))
    return [t for t in LINK.findall(text)
            if not re.match(r'[a-z][a-z0-9+.-]*:', t)]


def broken(page, text, read=None):
    """The links of ``page`` (a path relative to the repository) that do
    not resolve, with why."""
    read = read or (lambda path: open(path, encoding='utf-8').read())
    problems = []
    for target in links(text):
        path, _, anchor = target.partition('#')
        full = osp.normpath(osp.join(REPO, osp.dirname(page), path)) \
            if path else osp.join(REPO, page)
        if not osp.exists(full):
            problems.append(f'{target}: no {osp.relpath(full, REPO)}')
        elif anchor:
            if not full.endswith('.md'):
                problems.append(f'{target}: anchor into a non-Markdown file')
            elif anchor not in anchors(text if not path else read(full)):
                problems.append(f'{target}: no heading #{anchor} in '
                                f'{osp.relpath(full, REPO)}')
    return problems


@pytest.mark.parametrize('page', pages())
def test_every_link_resolves(page):
    with open(osp.join(REPO, page), encoding='utf-8') as f:
        text = f.read()
    assert broken(page, text) == []


def test_link_check_catches_mistakes():
    page = 'docs/usage.md'
    text = '\n'.join([
        '# A page', '## Its part', '',
        '[ok](#its-part) [ok](weights.md#layouts) [ok](../configs/demo)',
        '[ok](https://example.org/x.md#nothing) `[code](nowhere.md)`',
        '[bad](no_such_page.md) [bad](#no-such-part)',
        '[bad](weights.md#no-such-part) [bad](../README.md#two-commandz)',
        '[bad](../configs/detection/metafile.yml#models)',
        '```text', '[bad in code, not read](nowhere.md)', '```'])
    problems = broken(page, text)
    assert len(problems) == 5, problems
    assert all(p.startswith(('no_such', '#no-such', 'weights.md#no',
                             '../README', '../configs/detection'))
               for p in problems), problems


def test_anchors_follow_github():
    text = '# Get started\n## Install into an existing env (torch 2.0)\n' \
        "## The backbone's arguments\n## Speed\n## Speed\n```text\n# no\n```"
    assert anchors(text) == {
        'get-started', 'install-into-an-existing-env-torch-20',
        'the-backbones-arguments', 'speed', 'speed-1'}


TABLES = [('detection', 'RetinaNet'), ('detection', 'Mask R-CNN'),
          ('segmentation', 'Semantic FPN'), ('segmentation', 'UperNet')]


@pytest.mark.parametrize('task, collection', TABLES)
def test_results_table_is_the_model_index(task, collection):
    """configs/<task>/README.md shows the collection's table as the model
    index has it (rewrite the page's table after tools/model_index.py)."""
    with open(osp.join(REPO, 'configs', task, 'README.md')) as f:
        page = f.read()
    table = results_table(task, collection)
    assert table in page, f'configs/{task}/README.md: expected\n{table}'
