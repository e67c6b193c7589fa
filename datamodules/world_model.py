"""The synthetic world-model task of the EntNet paper (section 5.1, Table 1), generated and seeded.

Agents on a grid; each story places every agent, then ``T - n_agents`` events, each a turn or a move of
one agent; then one question per agent asks where it is. The paper's appendix with the generator was not
available to us (``shared/papers/entnet.md`` section 8), so every uncertain detail is an argument and the
defaults are our documented assumptions:

- the grid is ``grid x grid`` with coordinates 1..grid; locations are single tokens like ``(2,8)``;
- sentences read ``agent1 is at (2,8)``, ``agent1 faces-n``, ``agent1 moves-3``; questions
  ``where is agent1``; the answer is the agent's final location;
- an event picks an agent uniformly; an agent's first event after its placement is a facing; afterwards an
  event is a turn with probability ``p_turn`` (direction uniform over n, s, e, w) or a move of 1..``max_step``
  squares (uniform) in the facing direction; a move that would leave the grid is drawn again;
- n is +y, s is -y, e is +x, w is -x.
"""

from __future__ import annotations

import random
from typing import Literal

from .babi_format import BabiExample
from .stories import PAD, UNK, EncodedStories, StoryDataModule, encode

DIRECTIONS = {"n": (0, 1), "s": (0, -1), "e": (1, 0), "w": (-1, 0)}


def location_token(x: int, y: int) -> str:
    return f"({x},{y})"


def generate_world_story(
    length: int, rng: random.Random, n_agents: int = 2, grid: int = 10, max_step: int = 5, p_turn: float = 0.5
) -> tuple[list[tuple[str, ...]], dict[str, str]]:
    """One story of ``length`` sentences and each agent's final location token.

    Raises:
        ValueError: if ``length`` is shorter than the ``n_agents`` placements, or ``p_turn`` is 0 (an agent
            facing a wall could then never act again).
    """
    if not 0 < p_turn <= 1:
        raise ValueError(f"p_turn must be in (0, 1], got {p_turn}")
    if length < n_agents:
        raise ValueError(f"a story needs at least one sentence per agent: length {length} < n_agents {n_agents}")
    agents = [f"agent{i + 1}" for i in range(n_agents)]
    position = {a: (rng.randint(1, grid), rng.randint(1, grid)) for a in agents}
    facing: dict[str, str | None] = dict.fromkeys(agents)
    sentences = [(a, "is", "at", location_token(*position[a])) for a in agents]
    while len(sentences) < length:
        agent = rng.choice(agents)
        if facing[agent] is None or rng.random() < p_turn:
            facing[agent] = rng.choice(sorted(DIRECTIONS))
            sentences.append((agent, f"faces-{facing[agent]}"))
            continue
        steps = rng.randint(1, max_step)
        dx, dy = DIRECTIONS[facing[agent]]
        x, y = position[agent][0] + dx * steps, position[agent][1] + dy * steps
        if not (1 <= x <= grid and 1 <= y <= grid):
            continue  # illegal move: draw the event again
        position[agent] = (x, y)
        sentences.append((agent, f"moves-{steps}"))
    return sentences, {a: location_token(*position[a]) for a in agents}


def world_vocabulary(n_agents: int, grid: int, max_step: int) -> list[str]:
    """Every word the generator can write, so test stories of any length have no unknown words."""
    words = {"is", "at", "where"}
    words.update(f"agent{i + 1}" for i in range(n_agents))
    words.update(location_token(x, y) for x in range(1, grid + 1) for y in range(1, grid + 1))
    words.update(f"faces-{d}" for d in DIRECTIONS)
    words.update(f"moves-{k}" for k in range(1, max_step + 1))
    return [PAD, UNK, *sorted(words)]


def generate_examples(
    n_stories: int, lengths: list[int], seed: int, n_agents: int, grid: int, max_step: int, p_turn: float
) -> list[tuple[int, BabiExample]]:
    """``n_stories`` stories, their lengths drawn uniformly from ``lengths``, one question per agent each;
    returns ``(story length, example)`` pairs."""
    rng = random.Random(seed)
    examples = []
    for index in range(n_stories):
        length = rng.choice(lengths)
        sentences, answers = generate_world_story(length, rng, n_agents, grid, max_step, p_turn)
        for agent, answer in answers.items():
            examples.append((length, BabiExample(tuple(sentences), ("where", "is", agent), answer, (), index)))
    return examples


class WorldModelDataModule(StoryDataModule):
    """Seeded world-model stories for EntNet (paper Table 1), batched like bAbI.

    Each example's ``task`` id is its story length T, so EntNet reports the error per length
    (``test/error_task40`` is the error at T=40). The paper trains and tests at T=10, 20 and 40, and for
    generalisation trains on T <= 20 and tests on T = 20..80.

    Args:
        train_lengths: story lengths of the training and validation stories (drawn uniformly).
        test_lengths: story lengths of the test stories (drawn uniformly).
        n_train: training stories (each gives ``n_agents`` questions).
        n_val: validation stories.
        n_test: test stories.
        n_agents: agents per story (paper: 2).
        grid: grid side (paper: 10).
        max_step: longest move (our assumption: 5).
        p_turn: probability that an event is a turn (our assumption: 0.5).
        seed: seeds the three splits (each its own stream).
        batch_size: global batch size.
        epoch_sampling: ``permutation`` (default) or ``official`` (see StoryDataModule).
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        train_lengths: list[int] | None = None,
        test_lengths: list[int] | None = None,
        n_train: int = 10_000,
        n_val: int = 1_000,
        n_test: int = 1_000,
        n_agents: int = 2,
        grid: int = 10,
        max_step: int = 5,
        p_turn: float = 0.5,
        seed: int = 0,
        batch_size: int = 32,
        epoch_sampling: Literal["official", "permutation"] = "permutation",
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, epoch_sampling=epoch_sampling, num_workers=num_workers)
        train_lengths, test_lengths = train_lengths or [10], test_lengths or [10]
        if min(*train_lengths, *test_lengths) < n_agents:
            raise ValueError(f"every story length must be at least n_agents={n_agents}")
        if not 0 < p_turn <= 1 or min(grid, max_step, n_agents, n_train, n_val, n_test) < 1:
            raise ValueError("need 0 < p_turn <= 1 (an agent facing a wall must be able to turn) and positive sizes")
        self.save_hyperparameters()
        self.hparams.train_lengths, self.hparams.test_lengths = train_lengths, test_lengths

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        import pyarrow as pa  # noqa: PLC0415  (imported on use: `import iclr17` stays light)

        hp = self.hparams
        self.vocab = world_vocabulary(hp.n_agents, hp.grid, hp.max_step)
        index = {w: i for i, w in enumerate(self.vocab)}
        max_length = max(*hp.train_lengths, *hp.test_lengths)
        self.sentence_length, self.query_length = 4, 3
        plan = {
            "train": (hp.n_train, hp.train_lengths, hp.seed * 3),
            "val": (hp.n_val, hp.train_lengths, hp.seed * 3 + 1),
            "test": (hp.n_test, hp.test_lengths, hp.seed * 3 + 2),
        }
        for split, (n, lengths, seed) in plan.items():
            pairs = generate_examples(n, lengths, seed, hp.n_agents, hp.grid, hp.max_step, hp.p_turn)
            columns = {"story": [], "query": [], "answer": [], "task": []}
            for length, example in pairs:
                encoded, _ = encode([example], index, max_length, self.sentence_length, self.query_length, length)
                for key in columns:
                    columns[key].extend(encoded[key])
            self.splits[split] = EncodedStories(pa.Table.from_pydict(columns), self.sentence_length)
        self.unknown_words = {"train": 0, "val": 0, "test": 0}
