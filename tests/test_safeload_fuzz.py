"""Mutated checkpoints (both of torch's formats) are refused with
RefusedCheckpoint or load whole: no crash, no hang, no other exception.
``FUZZ_MUTANTS=5000`` runs more (or ``python tests/helpers/fuzz.py
5000``)."""
import collections
import os

import pytest
from helpers import fuzz


@pytest.fixture(scope='module')
def seeds():
    return fuzz.seeds()


def test_mutants_in_process(seeds):
    """A few dozen, read here: every outcome is a refusal or a load."""
    outcomes = collections.Counter(
        fuzz.read(data) for _, data in fuzz.mutants(seeds, 60, seed=1))
    assert outcomes['refused'] > 0


@pytest.mark.slow
def test_mutants_in_children(seeds):
    """A few hundred (a fixed seed), in child processes, which a crash or
    a hang would end; plus one mutant that aborts its child, to see the
    harness name it and read the rest in a new child."""
    count = int(os.environ.get('FUZZ_MUTANTS', 300))
    items = fuzz.mutants(seeds, count, seed=0)
    items.insert(count // 2, ('abort', fuzz.CRASH))
    counts, findings = fuzz.run(items)
    assert list(findings) == ['abort'] and 'crash' in findings['abort']
    assert counts['refused'] + counts['loaded'] == count
    assert counts['refused'] > count // 2 and counts['loaded'] > 0
