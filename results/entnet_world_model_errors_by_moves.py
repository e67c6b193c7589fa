"""Test error of a world-model checkpoint split by how many times the asked-about agent moved.

    python results/entnet_world_model_errors_by_moves.py <checkpoint> [--length 10] [--max-step 5]

Regenerates the test stories from the datamodule's seed stream (seed 0: the test split uses seed 2) to
know each agent's moves, and checks that the overall error equals the one `iclr17 test` reported.
"""

import argparse
import collections
import random

import torch

from iclr17.datamodules import WorldModelDataModule
from iclr17.datamodules.world_model import generate_world_story
from iclr17.modules import EntNet

parser = argparse.ArgumentParser()
parser.add_argument("checkpoint")
parser.add_argument("--length", type=int, default=10)
parser.add_argument("--max-step", type=int, default=5, help="the run's data.init_args.max_step")
args = parser.parse_args()

model = EntNet.load_from_checkpoint(args.checkpoint, map_location="cpu").eval()
dm = WorldModelDataModule(
    train_lengths=[args.length], test_lengths=[args.length], n_train=32, n_val=32, max_step=args.max_step
)
dm.setup()
rng = random.Random(2)  # WorldModelDataModule: test seed = 3 * seed + 2, then one length draw per story
moves = []
for _ in range(dm.hparams.n_test):
    sentences, answers = generate_world_story(rng.choice([args.length]), rng, max_step=args.max_step)
    moves += [sum(s[0] == agent and s[1].startswith("moves") for s in sentences) for agent in answers]
wrong = []
with torch.no_grad():
    for batch in dm.test_dataloader():
        wrong += (model(batch["story"], batch["query"])[0].argmax(-1) != batch["answer"]).tolist()
print(f"overall error {sum(wrong) / len(wrong):.4f} on {len(wrong)} questions")
by_moves = collections.defaultdict(list)
for n, w in zip(moves, wrong, strict=True):
    by_moves[n].append(w)
for n in sorted(by_moves):
    print(f"agent moved {n} times: {len(by_moves[n])} questions, error {sum(by_moves[n]) / len(by_moves[n]):.3f}")
