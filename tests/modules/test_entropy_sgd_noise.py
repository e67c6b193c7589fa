"""EntropySGD's Langevin noise: i.i.d. N(0, 1) per element and per step (Algorithm 1, arXiv:1611.01838), drawn by
NOISE_STREAMS generators in parallel slices; the values depend on the seed only, and resume is bit-identical."""

import copy
import os
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from iclr17 import EntropySGD
from iclr17.modules.entropy_sgd import optim
from iclr17.modules.entropy_sgd.optim import NOISE_STREAMS, PARALLEL_NOISE_MIN

SIZES = [(300, 500), (120_001,)]  # two tensors, 270,001 draws per step: above PARALLEL_NOISE_MIN, uneven slices


@contextmanager
def threads(n: int):
    """The noise is drawn on ``torch.get_num_threads()`` threads; the tensor arithmetic stays on one (two OpenMP
    threads on a busy 2-core machine make each small op 100 times slower)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch, "get_num_threads", lambda: n)
        yield


def noise_draws(steps: int, seed: int = 0, sizes=SIZES) -> list[torch.Tensor]:
    """The noise of ``steps`` outer steps of one Langevin step each, read off the running average: with a zero
    gradient, gamma = 0, std 2 sqrt(eta') = 1 (``noise="v1"``, eta' = 1/4) and alpha = 1, mu = x + xi with x = 0
    (lr = 0 keeps it there), so mu is the draw xi itself, exactly."""
    params = [nn.Parameter(torch.zeros(size)) for size in sizes]
    opt = EntropySGD(params, lr=0.0, L=1, gamma0=0.0, eta_prime=0.25, noise="v1", alpha=1.0, momentum=0.0, seed=seed)

    def closure():
        loss = sum((p * 0).sum() for p in params)
        loss.backward()
        return loss

    draws = []
    for _ in range(steps):
        opt.step(closure)
        draws.append(torch.cat([opt.state[p]["mu"].reshape(-1) for p in params]).clone())
    return draws


def test_the_noise_is_iid_standard_normal_across_slices_and_steps():
    with threads(2):
        first, second = noise_draws(steps=2)
    both = torch.cat([first, second]).double().numpy()
    n = len(both)
    assert stats.kstest(both, "norm").pvalue > 0.01
    assert abs(both.mean()) < 4 / np.sqrt(n)
    assert abs(both.var() - 1) < 4 * np.sqrt(2 / n)
    bounds = [len(first) * k // NOISE_STREAMS for k in range(NOISE_STREAMS + 1)]
    slices = [first[a:b].double().numpy() for a, b in zip(bounds, bounds[1:], strict=False)]
    m = min(len(s) for s in slices)
    for k, piece in enumerate(slices):  # each stream on its own, and against its neighbour and the next step
        assert stats.kstest(piece, "norm").pvalue > 0.001
        for other in (slices[(k + 1) % NOISE_STREAMS], second.double().numpy()[bounds[k] : bounds[k] + m]):
            assert abs(np.corrcoef(piece[:m], other[:m])[0, 1]) < 4 / np.sqrt(m)
    lag_one = np.corrcoef(both[:-1], both[1:])[0, 1]
    assert abs(lag_one) < 4 / np.sqrt(n)


def test_the_noise_does_not_depend_on_the_thread_count_and_follows_the_seed():
    assert sum(torch.Size(s).numel() for s in SIZES) >= PARALLEL_NOISE_MIN  # the threaded path runs
    with threads(1):
        serial = noise_draws(steps=2)
    with threads(2):
        parallel = noise_draws(steps=2)
        other_seed = noise_draws(steps=1, seed=1)
    assert (os.getpid(), 1) in optim._THREAD_POOLS  # the second of the 2 threads drew through the pool
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))
    assert not torch.equal(serial[0], other_seed[0])
    assert not torch.equal(serial[0], serial[1])


def _quadratic_run(opt_state=None, steps=3, x=None):
    x = nn.Parameter(torch.linspace(-1, 1, 263_000) if x is None else x.clone())
    target = torch.cos(torch.arange(263_000.0))
    opt = EntropySGD([x], lr=0.5, L=2, eps=1e-2, seed=5)
    if opt_state is not None:
        opt.load_state_dict(copy.deepcopy(opt_state))  # loading shares the state's tensors, and steps change them

    def closure():
        loss = 0.5 * (x - target).pow(2).sum()
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return x.detach(), opt


def test_resume_with_parallel_streams_is_bit_identical():
    with threads(2):
        x_half, opt = _quadratic_run(steps=3)
        saved = opt.state_dict()
        assert saved["noise_generators"]["cpu"].shape[0] == NOISE_STREAMS
        x_full, _ = _quadratic_run(steps=6)
        x_resumed, _ = _quadratic_run(saved, steps=3, x=x_half)
    assert torch.equal(x_full, x_resumed)


def test_a_checkpoint_with_one_generator_resumes_deterministically_and_a_wrong_stream_count_is_refused():
    """A checkpoint written before the streams holds one generator state per device: the streams are seeded from
    it, so resuming it twice gives the same run."""
    legacy = {"noise_generators": {"cpu": torch.Generator().manual_seed(3).get_state()}}
    _, opt = _quadratic_run(steps=1)
    state = opt.state_dict() | legacy
    first, _ = _quadratic_run(state, steps=2)
    again, _ = _quadratic_run(state, steps=2)
    assert torch.equal(first, again)
    wrong = opt.state_dict()
    wrong["noise_generators"] = {"cpu": wrong["noise_generators"]["cpu"][:3]}
    with pytest.raises(ValueError, match=f"holds 3 generator states; expected {NOISE_STREAMS}"):
        _quadratic_run(wrong, steps=1)
