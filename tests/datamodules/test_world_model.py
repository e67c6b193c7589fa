import functools
import random
from collections import Counter

import numpy as np
import pytest
import torch

from iclr17.datamodules import WorldModelDataModule
from iclr17.datamodules.world_model import generate_world_story, world_vocabulary


def simulate(sentences):
    """An independent reading of the story text: track each agent's position and facing, check the rules."""
    moves = {"n": (0, 1), "s": (0, -1), "e": (1, 0), "w": (-1, 0)}
    position, facing = {}, {}
    for words in sentences:
        agent = words[0]
        if words[1:3] == ("is", "at"):
            x, y = (int(v) for v in words[3].strip("()").split(","))
            position[agent] = (x, y)
        elif words[1].startswith("faces-"):
            facing[agent] = words[1].removeprefix("faces-")
        else:
            assert agent in facing, f"{agent} moved before facing a direction"
            steps = int(words[1].removeprefix("moves-"))
            dx, dy = moves[facing[agent]]
            position[agent] = (position[agent][0] + dx * steps, position[agent][1] + dy * steps)
        assert all(1 <= c <= 10 for c in position[agent]), f"{agent} left the grid"
    return {a: f"({x},{y})" for a, (x, y) in position.items()}


@pytest.mark.parametrize("length", [2, 10, 40, 80])
def test_answers_match_an_independent_simulation(length):
    rng = random.Random(length)
    for _ in range(50):
        sentences, answers = generate_world_story(length, rng)
        assert len(sentences) == length
        assert [s[:3] for s in sentences[:2]] == [("agent1", "is", "at"), ("agent2", "is", "at")]
        assert simulate(sentences) == answers


def test_generator_is_deterministic_per_seed():
    a = generate_world_story(30, random.Random(5))
    assert a == generate_world_story(30, random.Random(5))
    assert a != generate_world_story(30, random.Random(6))


def test_too_short_story_is_an_error():
    with pytest.raises(ValueError, match="at least one sentence per agent"):
        generate_world_story(1, random.Random(0))


def test_datamodule_splits_lengths_and_vocabulary():
    dm = WorldModelDataModule(train_lengths=[5, 20], test_lengths=[40, 80], n_train=50, n_val=10, n_test=20)
    dm.setup()
    assert (len(dm.splits["train"]), len(dm.splits["val"]), len(dm.splits["test"])) == (100, 20, 40)
    assert set(dm.splits["train"].tasks.tolist()) == {5, 20} and set(dm.splits["test"].tasks.tolist()) == {40, 80}
    assert dm.vocab == world_vocabulary(2, 10, 5) and len(dm.vocab) == 2 + 3 + 2 + 100 + 4 + 5
    item = dm.splits["test"][0]
    assert len(item["story"]) == item["task"].item()
    again = WorldModelDataModule(train_lengths=[5, 20], test_lengths=[40, 80], n_train=50, n_val=10, n_test=20)
    again.setup()
    assert torch.equal(again.splits["test"].tokens, dm.splits["test"].tokens)
    batch = next(iter(dm.test_dataloader()))
    assert batch["story"].shape[1:] == (80, 4) and batch["query"].shape[1] == 3


def test_p_turn_zero_is_refused_instead_of_looping_forever():
    with pytest.raises(ValueError, match="p_turn"):
        generate_world_story(80, random.Random(0), p_turn=0.0)
    with pytest.raises(ValueError, match="p_turn"):
        WorldModelDataModule(p_turn=0.0)


@functools.cache
def exact_event_mix(n_events: int, grid: int, max_step: int, p_turn: float) -> list[dict[str, float]]:
    """Expected share of each kind of event among a story's first n events after the placements, for
    n = 1..``n_events`` (item n - 1), by exact enumeration of the redraw rule (no sampling): two agents, each
    in a state (x, y, facing or none).

    From joint state (s1, s2), the generator draws an agent (1/2), then a facing (forced when it has none,
    else with probability p_turn; direction 1/4) or a move of k squares (1/max_step); a move off the grid is
    redrawn from scratch, so the event written has the legal events' weights divided by their total
    ``Z(s1, s2)``. ``Z`` is the mean of the two agents' legal weights, so the next joint law is
    ``M^T q + q M`` with ``q = p / (2 Z)`` and ``M`` one agent's matrix of legal-event weights.
    """
    dirs = [(1, 0), (0, 1), (0, -1), (-1, 0)]  # e, n, s, w
    states = [(x, y, f) for x in range(1, grid + 1) for y in range(1, grid + 1) for f in range(5)]  # f=0: none
    index = {s: i for i, s in enumerate(states)}
    forced = np.array([float(f == 0) for *_, f in states])
    chosen = (1 - forced) * p_turn
    moves = np.zeros((len(states), max_step))
    weights = np.zeros((len(states), len(states)))
    for i, (x, y, f) in enumerate(states):
        for d in range(1, 5):
            weights[i, index[(x, y, d)]] += (forced[i] + chosen[i]) / 4
        for k in range(1, max_step + 1) if f else ():
            nx, ny = x + dirs[f - 1][0] * k, y + dirs[f - 1][1] * k
            if 1 <= nx <= grid and 1 <= ny <= grid:
                moves[i, k - 1] = (1 - p_turn) / max_step
                weights[i, index[(nx, ny, f)]] += moves[i, k - 1]
    legal = forced + chosen + moves.sum(1)
    start = forced / grid**2
    p = np.outer(start, start)
    columns = np.column_stack([forced, chosen, moves])
    names = ["forced facing", "turn", *(f"moves-{k}" for k in range(1, max_step + 1))]
    totals, shares = np.zeros(len(names)), []
    for n in range(1, n_events + 1):
        q = p / (legal[:, None] + legal[None, :])
        totals += q.sum(1) @ columns + q.sum(0) @ columns
        p = weights.T @ q + q @ weights
        shares.append(dict(zip(names, totals / n, strict=True)))
    return shares


def generated_event_mix(length: int, n_stories: int, **kwargs) -> dict[str, float]:
    rng = random.Random(0)
    counts: Counter[str] = Counter()
    for _ in range(n_stories):
        sentences, _ = generate_world_story(length, rng, **kwargs)
        faced: set[str] = set()
        for agent, action in sentences[2:]:
            kind = action if action.startswith("moves-") else ("turn" if agent in faced else "forced facing")
            counts[kind] += 1
            faced.add(agent)
    total = sum(counts.values())
    return {kind: n / total for kind, n in counts.items()}


@pytest.mark.parametrize(("length", "grid", "max_step", "p_turn"), [(20, 10, 5, 0.5), (12, 6, 3, 0.3)])
def test_event_mix_matches_exact_enumeration_of_the_redraw_rule(length, grid, max_step, p_turn):
    exact = exact_event_mix(length - 2, grid, max_step, p_turn)[-1]
    sampled = generated_event_mix(length, 3000, grid=grid, max_step=max_step, p_turn=p_turn)
    n = 3000 * (length - 2)
    for kind, share in exact.items():
        assert sampled.get(kind, 0.0) == pytest.approx(share, abs=4 * (share * (1 - share) / n) ** 0.5 + 1e-9), kind


def test_docstring_event_mix_is_the_exact_one():
    """The shares datamodules/world_model.py states for the defaults (grid 10, max_step 5, p_turn 0.5)."""
    for length, all_turns, later_turns in [(10, 0.73, 0.64), (20, 0.69, 0.65), (80, 0.67, 0.66)]:
        mix = exact_event_mix(78, 10, 5, 0.5)[length - 3]
        moves = [mix[f"moves-{k}"] for k in range(1, 6)]
        assert mix["forced facing"] + mix["turn"] == pytest.approx(all_turns, abs=0.005)
        assert mix["turn"] / (1 - mix["forced facing"]) == pytest.approx(later_turns, abs=0.005)
        assert [m / sum(moves) for m in moves] == pytest.approx([0.29, 0.235, 0.19, 0.155, 0.125], abs=0.007)
