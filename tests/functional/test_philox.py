"""The counter-based Gaussian draws of iclr17.functional.philox, against Random123's published known answers, a
from-scratch Philox in Python integers, Box-Muller in float64 numpy, and the normal law (scipy)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from iclr17.functional import compiled
from iclr17.functional.philox import philox4x32_10, philox_normal, philox_normal_torch

# Random123 tests/kat_vectors, "philox4x32 10" lines: counter (4 words), key (2 words), result (4 words)
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]
MASK = 2**32 - 1


def reference_philox(counter: tuple[int, ...], key: tuple[int, int]) -> tuple[int, ...]:
    """Philox4x32-10 in Python integers, from the SC'11 paper's round: (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2),
    hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)), then the key bumped by the Weyl constants."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & MASK, (p0 >> 32) ^ c3 ^ k1, p0 & MASK
        k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
    return c0, c1, c2, c3


def reference_normals(numel: int, seed: int, draw: int) -> np.ndarray:
    """The draw in float64 from the reference words: r = sqrt(-2 log u), u = (w0 >> 8 + 1/2) / 2^24,
    theta = 2 pi (w1 >> 6) / 2^26 (the 26 bits the angle uses)."""
    values = []
    for block in range((numel + 3) // 4):
        w = reference_philox((block & MASK, block >> 32, draw & MASK, draw >> 32), (seed & MASK, seed >> 32))
        for a, b in ((w[0], w[1]), (w[2], w[3])):
            r = math.sqrt(-2 * math.log(((a >> 8) + 0.5) / 2**24))
            theta = 2 * math.pi * (b >> 6) / 2**26
            values += [r * math.cos(theta), r * math.sin(theta)]
    return np.array(values[:numel])


@pytest.mark.parametrize(("counter", "key", "result"), KNOWN_ANSWERS)
def test_philox_matches_the_published_known_answers(counter, key, result):
    assert reference_philox(counter, key) == result
    assert philox4x32_10(torch.tensor([counter]), key)[0].tolist() == list(result)


def test_philox_words_match_the_integer_reference_on_random_counters_and_keys():
    rng = np.random.default_rng(0)
    counters = rng.integers(0, 2**32, size=(200, 4), dtype=np.int64)
    key = tuple(int(k) for k in rng.integers(0, 2**32, size=2))
    words = philox4x32_10(torch.from_numpy(counters), key).tolist()
    assert words == [list(reference_philox(tuple(int(c) for c in row), key)) for row in counters]


@pytest.mark.parametrize("implementation", ["torch", "cpp"])
@pytest.mark.parametrize(("numel", "seed", "draw"), [(4001, 7, 0), (1, 2**64 - 1, 2**64 - 1), (6, 2**40 + 3, 2**33)])
def test_values_match_float64_box_muller_of_the_reference_words(implementation, numel, seed, draw):
    ours = philox_normal(numel, seed, draw, implementation).double().numpy()
    expected = reference_normals(numel, seed, draw)
    np.testing.assert_allclose(ours, expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize(("numel", "seed", "draw"), [(0, 1, 1), (3, 0, 0), (1_000_003, 12345, 7), (65_537, 2**63, 5)])
def test_the_kernel_and_its_torch_twin_give_the_same_bits_on_any_thread_count(numel, seed, draw):
    twin = philox_normal_torch(numel, seed, draw)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 7):
            torch.set_num_threads(threads)
            assert torch.equal(philox_normal(numel, seed, draw, "cpp"), twin)
    finally:
        torch.set_num_threads(before)


def test_the_kernel_shares_torchs_openmp_runtime():
    philox_normal(8, 0, 0, "cpp")
    maps = Path("/proc/self/maps")
    if not maps.is_file():
        pytest.skip("no /proc/self/maps on this system")
    libraries = {line.split()[-1] for line in maps.read_text().splitlines() if "libgomp" in line}
    assert len(libraries) <= 1, f"two OpenMP runtimes loaded: {sorted(libraries)}"


def test_a_prefix_of_a_draw_is_the_shorter_draw_and_draws_and_seeds_differ():
    long = philox_normal(1_001, 3, 4)
    assert torch.equal(philox_normal(17, 3, 4), long[:17])
    assert not torch.equal(philox_normal(1_001, 3, 5), long)
    assert not torch.equal(philox_normal(1_001, 4, 4), long)


def test_the_draws_are_standard_normal_and_independent():
    values = torch.cat([philox_normal(500_000, 11, d) for d in range(4)]).double().numpy()
    n = len(values)
    assert stats.kstest(values, "norm").pvalue > 1e-3
    assert abs(values.mean()) < 4 / math.sqrt(n)
    assert abs(values.var() - 1) < 4 * math.sqrt(2 / n)
    kurtosis_sd = math.sqrt(24 / n)
    assert abs(stats.kurtosis(values)) < 4 * kurtosis_sd
    beyond = np.mean(np.abs(values) > 3)  # the tails: P(|Z| > 3) = 0.0027
    assert abs(beyond - 0.0027) < 4 * math.sqrt(0.0027 / n)
    assert np.abs(values).max() < math.sqrt(-2 * math.log(0.5 / 2**24)) + 1e-4  # the documented bound, 5.9
    for lag in (1, 2, 3, 4, 5):
        assert abs(np.corrcoef(values[:-lag], values[lag:])[0, 1]) < 4 / math.sqrt(n)
    first, second = values[: n // 4], values[n // 4 : n // 2]  # draw 0 against draw 1
    assert abs(np.corrcoef(first, second)[0, 1]) < 4 / math.sqrt(n // 4)


def test_a_draw_fills_a_given_buffer_in_place():
    for implementation in ("cpp", "torch"):
        buffer = torch.full((1_001,), float("nan"))
        assert philox_normal(1_001, 3, 4, implementation, out=buffer) is buffer
        assert torch.equal(buffer, philox_normal_torch(1_001, 3, 4))
    for bad in (torch.empty(1_000), torch.empty(1_001, dtype=torch.float64), torch.empty(2_002)[::2]):
        with pytest.raises(ValueError, match="out must be a contiguous float32 CPU tensor of 1001 elements"):
            philox_normal(1_001, 3, 4, out=bad)


def test_bad_arguments_are_refused_by_name():
    with pytest.raises(ValueError, match="implementation must be one of auto, cpp, torch, got 'cuda'"):
        philox_normal(4, 0, 0, "cuda")
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\^64\), got -1"):
        philox_normal(4, -1, 0)
    with pytest.raises(ValueError, match=r"draw must be in \[0, 2\^64\), got 18446744073709551616"):
        philox_normal(4, 0, 2**64)
    with pytest.raises(ValueError, match="numel must be >= 0, got -2"):
        philox_normal(-2, 0, 0)


def test_auto_falls_back_to_the_torch_twin_with_one_warning_where_the_build_fails(monkeypatch):
    failure = OSError("no C++ compiler")
    monkeypatch.setattr(compiled, "build_extension", lambda *args: failure)
    compiled.warn_fallback.cache_clear()
    with pytest.warns(UserWarning, match="the Philox draw runs torch.s .*no C.. compiler"):
        values = philox_normal(9, 1, 2)
    assert torch.equal(values, philox_normal_torch(9, 1, 2))
    with pytest.raises(RuntimeError, match="could not be built from .*philox_normal.cpp: no C.. compiler"):
        philox_normal(9, 1, 2, "cpp")
    compiled.warn_fallback.cache_clear()
