"""The plateau rule of arXiv:1511.06444 (stop "when the average of successive differences in cost values goes below a
prescribed value") against hand-computed values and a plain Python loop over cost sequences."""

import math
import random

import pytest
import torch

from iclr17.functional.halting import mean_successive_decrease, push_cost, update_first_hits


def plateau_first_hit(costs: list[float], window: int, threshold: float) -> int:
    """The first index t at which the mean of the ``window`` differences ``costs[i - 1] - costs[i]``,
    i = t - window + 1 .. t, is below ``threshold``; -1 if never."""
    for t in range(window, len(costs)):
        total = 0.0
        for i in range(t - window + 1, t + 1):
            total += costs[i - 1] - costs[i]
        if total / window < threshold:
            return t
    return -1


def streamed_first_hits(costs: torch.Tensor, window: int, thresholds: torch.Tensor) -> torch.Tensor:
    """``(K, E)`` first hits of K cost sequences ``(K, T)`` observed one step at a time, as the ensembles do."""
    recent = torch.full((costs.shape[0], window + 1), math.nan, dtype=torch.float64)
    first = torch.full((costs.shape[0], len(thresholds)), -1)
    for step in range(costs.shape[1]):
        recent = push_cost(recent, costs[:, step])
        first = update_first_hits(first, mean_successive_decrease(recent), thresholds, step)
    return first


# dyadic costs: every difference is exact; window 3 means (by hand): t=3 1.5, t=4 1.0, t=5 0.5833, t=6 0.1667
# (the cost rose at t=6), t=7 0.125, t=8 0.0833, t=9 0.1667
HAND_COSTS = [8.0, 6.0, 4.5, 3.5, 3.0, 2.75, 3.0, 2.625, 2.5, 2.5]


def test_hand_made_sequence_halts_where_computed_by_hand():
    thresholds = [1.0, 0.5, 0.1, 0.05]  # 1.0 is met exactly at t=4: the rule is strict, so t=5
    expected = [5, 6, 8, -1]
    assert [plateau_first_hit(HAND_COSTS, 3, th) for th in thresholds] == expected
    first = streamed_first_hits(torch.tensor([HAND_COSTS], dtype=torch.float64), 3, torch.tensor(thresholds).double())
    assert first.tolist() == [expected]


def test_window_values_and_the_first_observations():
    recent = torch.full((4,), math.nan, dtype=torch.float64)
    values = []
    for cost in HAND_COSTS:
        recent = push_cost(recent, torch.tensor(cost))
        values.append(mean_successive_decrease(recent).item())
    assert all(math.isnan(v) for v in values[:3])  # fewer than window + 1 costs: the rule cannot hold
    assert values[3:] == pytest.approx([1.5, 1.0, 1.75 / 3, 0.5 / 3, 0.375 / 3, 0.25 / 3, 0.5 / 3], rel=1e-15)
    assert recent.tolist() == HAND_COSTS[-4:]
    window_one = push_cost(torch.tensor([3.0, 2.0]), torch.tensor(2.5))
    assert window_one.tolist() == [2.0, 2.5] and mean_successive_decrease(window_one).item() == -0.5  # a rise


@pytest.mark.parametrize("window", [1, 2, 7])
def test_random_sequences_halt_where_a_plain_loop_does(window):
    rng = random.Random(window)
    k, steps = 6, 80
    costs = [[0.0] * steps for _ in range(k)]
    for run in range(k):  # noisy, decaying costs, each run at its own rate
        rate, level = rng.uniform(0.02, 0.1), rng.uniform(1.0, 3.0)
        costs[run] = [level * math.exp(-rate * t) + rng.gauss(0.0, 0.002) for t in range(steps)]
    thresholds = [0.02, 0.005, 0.001, -0.05]
    first = streamed_first_hits(torch.tensor(costs, dtype=torch.float64), window, torch.tensor(thresholds).double())
    expected = [[plateau_first_hit(c, window, th) for th in thresholds] for c in costs]
    assert first.tolist() == expected
    assert len({row[1] for row in expected}) > 1 and all(row[-1] == -1 for row in expected)  # runs differ; censored
