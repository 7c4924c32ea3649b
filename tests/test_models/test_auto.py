"""fused='auto': each stage times both paths on its first input of a size
class (:func:`fused.decide`), follows the measurement, keeps the choice,
and leaves gradients, parameters and the RNG stream as they were."""
import pytest
import torch

from mmpoolformer import PoolFormer
from mmpoolformer.models import fused as fast
from mmpoolformer.models.poolformer import PoolFormerBlock
from mmpoolformer.testing import randomise

SMALL = dict(depths=[1, 2, 1, 1], dims=[8, 16, 24, 32])


@pytest.fixture
def clock(monkeypatch):
    """A virtual clock for ``fused._clock``: each block the fast path runs
    advances it by ``cost[True]``, each op-by-op block by ``cost[False]``.
    ``reads`` counts the clock's reads (the measurements' timings), with
    an empty decision cache and no pin."""
    state = dict(now=0., cost={True: 1., False: 2.}, reads=0)
    fused_block, plain_block = fast.block_forward, PoolFormerBlock.forward

    def fused(*args, **kwargs):
        state['now'] += state['cost'][True]
        return fused_block(*args, **kwargs)

    def plain(self, x):
        state['now'] += state['cost'][False]
        return plain_block(self, x)

    def now():
        state['reads'] += 1
        return state['now']

    monkeypatch.setattr(fast, 'block_forward', fused)
    monkeypatch.setattr(PoolFormerBlock, 'forward', plain)
    monkeypatch.setattr(fast, '_clock', now)
    monkeypatch.setattr(fast, 'CHOICES', {})
    monkeypatch.delenv(fast.ENV, raising=False)
    return state


def step(model, size=(64, 96), batch=2, grad=True, x_grad=None):
    x = torch.randn(batch, 3, *size,
                    requires_grad=grad if x_grad is None else x_grad)
    with torch.set_grad_enabled(grad):
        outs = model(x)
    if grad:
        sum(o.sum() for o in outs).backward()
    return [s.ran_fast for s in model.stages]


@pytest.mark.parametrize('fused_cost, plain_cost, expected', [
    (1., 2., True),
    (2., 1., False),
    (1.02, 1., True),   # within the margin: the path with less memory
    (1.05, 1., False),
])
@pytest.mark.parametrize('grad', [True, False])
def test_choice_follows_measurement(clock, fused_cost, plain_cost, expected,
                                    grad):
    clock['cost'] = {True: fused_cost, False: plain_cost}
    model = PoolFormer(SMALL).train(grad)
    assert step(model, grad=grad) == [expected] * 4
    assert len(fast.CHOICES) == 4  # one per stage
    # each stage timed each path ROUNDS times: two reads per run, and the
    # start and end of the whole measurement
    assert clock['reads'] == 4 * (2 * 2 * fast.ROUNDS + 2)


def test_stages_choose_for_themselves(clock, monkeypatch):
    """The fast path made to win only on the largest map (stage 0)."""
    fused_block = fast.block_forward

    def fused(x, *args, **kwargs):
        clock['now'] += 1. if x.shape[1] == 8 else 3.
        return fused_block(x, *args, **kwargs)

    monkeypatch.setattr(fast, 'block_forward', fused)
    clock['cost'] = {True: 0., False: 2.}
    assert step(PoolFormer(SMALL).train()) == [True, False, False, False]


def test_choice_is_cached(clock):
    model = PoolFormer(SMALL).train()
    assert step(model) == [True] * 4
    reads = clock['reads']
    clock['cost'] = {True: 2., False: 1.}  # would now choose op by op
    assert step(model) == [True] * 4
    # a nearby size (mmdet's next aspect ratio) is the same size class
    assert step(model, size=(64, 100)) == [True] * 4
    # the cache is the process's: another model of the same shape uses it
    assert step(PoolFormer(SMALL).train()) == [True] * 4
    assert clock['reads'] == reads
    # another size class, batch or grad mode is measured anew
    assert step(model, size=(128, 192)) == [False] * 4
    assert step(model, batch=4) == [False] * 4
    assert step(model, grad=False) == [False] * 4
    assert len(fast.CHOICES) == 16


def test_size_classes():
    """Batch and pixels per sample, each to the nearest power of two."""
    def bucket(n, h, w):
        return fast.bucket(torch.empty(n, 1, h, w, device='meta'))

    # mmdet's landscape and portrait 1333x800 images (at stride 4) meet
    assert bucket(2, 200, 336) == bucket(2, 200, 304) == \
        bucket(2, 336, 200) == bucket(2, 200, 240) == (1, 16)
    assert bucket(2, 200, 200) == (1, 15)
    assert bucket(1, 8, 8) != bucket(2, 8, 8) != bucket(4, 8, 8)
    assert bucket(3, 8, 8) == bucket(4, 8, 8) == bucket(5, 8, 8)


@pytest.mark.parametrize('pin, expected', [('fast', True), ('plain', False)])
def test_pinned_by_the_environment(clock, monkeypatch, pin, expected):
    monkeypatch.setenv(fast.ENV, pin)
    clock['cost'] = {True: 2., False: 1.} if expected else \
        {True: 1., False: 2.}
    assert step(PoolFormer(SMALL).train()) == [expected] * 4
    assert clock['reads'] == 0 and not fast.CHOICES


def test_bad_pin_is_named(clock, monkeypatch):
    monkeypatch.setenv(fast.ENV, 'yes')
    with pytest.raises(ValueError, match=r"MMPOOLFORMER_AUTO.*'measure'.*"
                       r"'fast'.*'plain'.*'yes'"):
        step(PoolFormer(SMALL).train())


@pytest.mark.parametrize('with_cp', [False, True])
def test_measurement_leaves_grads_params_and_rng(monkeypatch, with_cp):
    """A first forward (which measures) and a second (which does not) draw
    the same drop-path numbers, give the same outputs, and leave ``.grad``
    and the parameters alone."""
    monkeypatch.setattr(fast, 'CHOICES', {})
    monkeypatch.delenv(fast.ENV, raising=False)
    torch.manual_seed(0)
    model = randomise(PoolFormer(SMALL, drop_path_rate=0.5,
                                 with_cp=with_cp)).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {}
    for name, p in model.named_parameters():
        p.grad = torch.randn_like(p)
        grads[name] = p.grad.clone()
    x = torch.randn(2, 3, 64, 96, requires_grad=True)
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        outs = model(x)
        runs.append((outs, torch.get_rng_state()))
        assert len(fast.CHOICES) == 4
    (first, rng1), (second, rng2) = runs
    assert torch.equal(rng1, rng2)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, grads[name]), name
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert x.grad is None


def test_frozen_stages_key_their_grads(clock):
    """A frozen stage's backward computes no parameter gradients, and one
    after a frozen stem none for its input: each is timed and keyed apart
    (stage 0's key)."""
    def stage0(**kwargs):
        fast.CHOICES.clear()
        step(PoolFormer(SMALL, **kwargs).train(), x_grad=False)
        return [k[5] for k in fast.CHOICES if k[0] == 'block 8-32 pool 3']

    assert stage0() == ['grad params+input']
    assert stage0(frozen_stages=0) == ['grad params']
    assert stage0(frozen_stages=1) == ['grad none']
    fast.CHOICES.clear()
    step(PoolFormer(SMALL, frozen_stages=1).train(), x_grad=True)
    assert [k[5] for k in fast.CHOICES][0] == 'grad input'


def test_one_trained_parameter(clock):
    """A block with a single trainable parameter after a frozen stem."""
    model = PoolFormer(SMALL, frozen_stages=0).train()
    for p in list(model.stages[0].blocks[0].parameters())[1:]:
        p.requires_grad_(False)
    step(model, x_grad=False)
    assert [k[5] for k in fast.CHOICES][0] == 'grad params'


@pytest.mark.parametrize('grad', [True, False])
def test_deterministic_mode_takes_the_rule(clock, monkeypatch, grad):
    """mmengine's ``randomness=dict(deterministic=True)`` (its
    ``set_random_seed``) turns on torch's deterministic algorithms: 'auto'
    then runs :data:`fused.DETERMINISTIC` without measuring, and says so
    once per device type: the fast path on the CPU, op by op elsewhere.
    (conftest restores the mode after the test.)"""
    from mmengine.runner.utils import set_random_seed
    said = []
    monkeypatch.setattr(fast, 'print_log',
                        lambda msg, **kwargs: said.append(msg))
    monkeypatch.setattr(fast, '_told_deterministic', set())
    clock['cost'] = {True: 2., False: 1.}  # a measurement: op by op
    set_random_seed(0, deterministic=True)
    assert torch.are_deterministic_algorithms_enabled()
    assert fast.DETERMINISTIC == dict(cpu=True)
    model = PoolFormer(SMALL).train(grad)
    assert step(model, grad=grad) == [True] * 4
    assert step(model, size=(128, 192), grad=grad) == [True] * 4
    assert clock['reads'] == 0 and not fast.CHOICES
    assert len(said) == 1 and 'deterministic algorithms are on' in said[0]
    # elsewhere (no measurement earned the fast path there): op by op
    assert fast.decide(('key', ), None, torch.device('meta')) is False
    assert len(said) == 2 and 'on meta it runs op by op' in said[1]
    # a pin still wins
    monkeypatch.setenv(fast.ENV, 'plain')
    assert step(model, grad=grad) == [False] * 4
    # and without the mode, 'auto' measures again
    monkeypatch.delenv(fast.ENV)
    torch.use_deterministic_algorithms(False)
    assert step(model, grad=grad) == [False] * 4
    assert clock['reads'] > 0 and len(said) == 2 + 4


@pytest.mark.parametrize('grad', [True, False])
def test_returned_stage_is_charged_its_conversion(monkeypatch, grad):
    """The backbone converts a returned stage's channels-last output to
    NCHW once per forward (and its gradient back once per backward): each
    timed block of that stage converts its share, 1/len(blocks) of the
    channels, each way; a stage the backbone does not return, and an NCHW
    output, nothing."""
    copies = []
    contiguous = torch.Tensor.contiguous

    def counted(self, *args, **kwargs):
        out = contiguous(self, *args, **kwargs)
        if out.data_ptr() != self.data_ptr():
            copies.append(tuple(out.shape))
        return out

    model = PoolFormer(dict(depths=[1, 3, 1, 1], dims=[8, 16, 24, 32]),
                       out_indices=(1, 2, 3)).train(grad)
    x = torch.randn(2, 16, 8, 8, requires_grad=grad)
    monkeypatch.setattr(torch.Tensor, 'contiguous', counted)
    with torch.set_grad_enabled(grad):
        fast.time_stage(model.stages[1], x, True)
        # the fast path's own input conversion, then the share: 6 of 16
        assert copies == [(2, 16, 8, 8)] + [(2, 6, 8, 8)] * (1 + grad)
        copies.clear()
        fast.time_stage(model.stages[1], x, False)  # NCHW in and out
        fast.time_stage(model.stages[0], torch.randn(2, 8, 16, 16), True)
    assert copies == [(2, 8, 16, 16)]  # stage 0's input only
