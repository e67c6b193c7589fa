import random

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
