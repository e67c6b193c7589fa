"""One epoch of mnistfc on the real MNIST: the Classifier under Lightning's Trainer vs a plain PyTorch loop.

    ICLR17_DATA_DIR=/path/to/data python benchmarks/lightning_overhead.py [--repeats 3] [--limit-batches N]
        [--ledger DIR]

Both sides train a fresh ``MNISTFC`` with Adam (lr 1e-3) on the same DataLoader (the datamodule's: global
batch 128, shuffled, 50,000 images), compute the same cross-entropy, and keep the epoch's mean loss. The
Trainer runs with no logger, no checkpointing, no progress bar and no validation, so the ratio measures the
framework's own cost: its loop, hooks and ``self.log``. The timed region of each side starts before the
optimizer is built and ends after the epoch; runs alternate, and medians are reported. Target: ratio <= 1.10.
``--ledger DIR`` also records the medians, the runs and the ratio as a row of
``DIR/benchmarks_lightning_overhead.jsonl`` (``iclr17.studies.benchmark_ledger``).
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F
from timing import alternate, print_medians

from iclr17.datamodules import MNISTDataModule
from iclr17.modules import MNISTFC, Classifier
from iclr17.studies.benchmark_ledger import record_peer_vs_ours
from iclr17.studies.trainers import quiet_trainer


def plain_epoch(datamodule: MNISTDataModule, limit_batches: int | None) -> None:
    torch.manual_seed(0)
    model = MNISTFC()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_sum, n_batches = torch.zeros(()), 0
    for batch_idx, (x, y) in enumerate(datamodule.train_dataloader()):
        if limit_batches is not None and batch_idx >= limit_batches:
            break
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
        n_batches += 1
    _ = (loss_sum / n_batches).item()


def lightning_epoch(datamodule: MNISTDataModule, limit_batches: int | None) -> None:
    torch.manual_seed(0)
    model = Classifier(MNISTFC(), optimizer=lambda params: torch.optim.Adam(params, lr=1e-3))
    quiet_trainer(max_epochs=1, limit_train_batches=limit_batches).fit(model, datamodule=datamodule)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit-batches", type=int, default=None, help="batches per epoch (default: all)")
    parser.add_argument("--ledger", default=None, help="record the result in this ledger folder (default: print only)")
    args = parser.parse_args()

    datamodule = MNISTDataModule(batch_size=128, normalization="unit")
    datamodule.setup("fit")
    sides = {"plain PyTorch loop (peer)": plain_epoch, "iclr17 Classifier+Trainer": lightning_epoch}
    alternate({label: partial(side, datamodule, 5) for label, side in sides.items()}, 1)  # warm-up
    times = alternate(
        {label: partial(side, datamodule, args.limit_batches) for label, side in sides.items()}, args.repeats
    )
    batches = args.limit_batches or len(datamodule.train_dataloader())
    print(f"mnistfc, 1 epoch = {batches} batches of 128, torch {torch.__version__}, {torch.get_num_threads()} threads")
    plain, ours = print_medians(times).values()
    print(f"ratio (ours / peer): {ours / plain:.3f}   target <= 1.10")
    if args.ledger:
        case = {"batches": batches, "repeats": args.repeats, "threads": torch.get_num_threads()}
        record_peer_vs_ours("lightning_overhead", case, times, args.ledger, script=__file__)


if __name__ == "__main__":
    main()
