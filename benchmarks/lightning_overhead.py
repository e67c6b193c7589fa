"""One epoch of mnistfc on the real MNIST: the Classifier under Lightning's Trainer vs a plain PyTorch loop.

    ICLR17_DATA_DIR=/path/to/data python benchmarks/lightning_overhead.py [--repeats 3] [--limit-batches N]

Both sides train a fresh ``MNISTFC`` with Adam (lr 1e-3) on the same DataLoader (the datamodule's: global
batch 128, shuffled, 50,000 images), compute the same cross-entropy, and keep the epoch's mean loss. The
Trainer runs with no logger, no checkpointing, no progress bar and no validation, so the ratio measures the
framework's own cost: its loop, hooks and ``self.log``. The timed region of each side starts before the
optimizer is built and ends after the epoch; runs alternate, and medians are reported. Target: ratio <= 1.10.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from iclr17.datamodules import MNISTDataModule
from iclr17.modules import MNISTFC, Classifier


def plain_epoch(datamodule: MNISTDataModule, limit_batches: int | None) -> float:
    torch.manual_seed(0)
    start = time.perf_counter()
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
    return time.perf_counter() - start


def lightning_epoch(datamodule: MNISTDataModule, limit_batches: int | None) -> float:
    torch.manual_seed(0)
    start = time.perf_counter()
    model = Classifier(MNISTFC(), optimizer=lambda params: torch.optim.Adam(params, lr=1e-3))
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=limit_batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=datamodule)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit-batches", type=int, default=None, help="batches per epoch (default: all)")
    args = parser.parse_args()

    datamodule = MNISTDataModule(batch_size=128, normalization="unit")
    datamodule.setup("fit")
    plain_epoch(datamodule, 5)  # warm-up: allocator, kernels, thread pool
    lightning_epoch(datamodule, 5)

    plain, ours = [], []
    for _ in range(args.repeats):
        plain.append(plain_epoch(datamodule, args.limit_batches))
        ours.append(lightning_epoch(datamodule, args.limit_batches))
    batches = args.limit_batches or len(datamodule.train_dataloader())
    print(f"mnistfc, 1 epoch = {batches} batches of 128, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"plain PyTorch loop (peer): median {statistics.median(plain):.2f} s   runs {[round(t, 2) for t in plain]}")
    print(f"iclr17 Classifier+Trainer: median {statistics.median(ours):.2f} s   runs {[round(t, 2) for t in ours]}")
    print(f"ratio (ours / peer): {statistics.median(ours) / statistics.median(plain):.3f}   target <= 1.10")


if __name__ == "__main__":
    main()
