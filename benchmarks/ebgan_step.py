"""EBGAN-PT training steps on MNIST: the ``EBGAN`` LightningModule under Lightning's Trainer vs a plain PyTorch loop.

    ICLR17_DATA_DIR=/path/to/data python benchmarks/ebgan_step.py [--repeats 5] [--batches 100] [--ledger DIR]

Both sides build the paper's best EBGAN-PT MNIST nets (``MNISTGenerator(5, 800)``, ``MNISTDiscriminator(2, 1024)``,
same seed, so identical weights), Adam lr 1e-3, and train on the same batches (the datamodule's loader: global
batch 64, MNIST in [-1, 1]) for ``--batches`` batches. Each batch is one D step (fake = G(z) without gradient,
l2 energy, per-sample hinge, m = 10) and one G step (energy of G(z) + 0.1 PT, same z). The plain loop freezes
D during the G step as ``toggled_optimizer`` does (the popular ports do not, and so also compute D's weight
gradients in the G step, work a toggled module skips; the D step needs no freezing, as G runs under no_grad). The
Trainer runs with no logger, checkpointing, progress bar or validation, so the ratio measures the framework and
the module's own cost (toggled optimizers, manual_backward, logging on logging steps). Runs alternate; medians
are reported. Target: ratio <= 1.10. ``--ledger DIR`` also records the medians, the runs and the ratio as a row of
``DIR/benchmarks_ebgan_step.jsonl`` (``iclr17.studies.benchmark_ledger``).
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from timing import alternate, print_medians

from iclr17.datamodules import MNISTDataModule
from iclr17.functional.ebgan import discriminator_loss, generator_loss, reconstruction_energy
from iclr17.modules import EBGAN, MNISTDiscriminator, MNISTGenerator
from iclr17.studies.benchmark_ledger import record_peer_vs_ours
from iclr17.studies.trainers import quiet_trainer


def _nets() -> tuple[MNISTGenerator, MNISTDiscriminator]:
    torch.manual_seed(0)
    return MNISTGenerator(z_dim=100, n_layers=5, size=800), MNISTDiscriminator(n_layers=2, size=1024)


def plain_loop(datamodule: MNISTDataModule, batches: int) -> None:
    generator, discriminator = _nets()
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    noise = torch.Generator().manual_seed(0)
    for batch_idx, (x, _) in enumerate(datamodule.train_dataloader()):
        if batch_idx >= batches:
            break
        z = torch.randn(x.shape[0], 100, generator=noise)
        with torch.no_grad():
            fake = generator(z)
        real_energy = reconstruction_energy(x, discriminator(x)[0])
        fake_energy = reconstruction_energy(fake, discriminator(fake)[0])
        loss_d = discriminator_loss(real_energy, fake_energy, 10.0)
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        discriminator.requires_grad_(False)  # as toggled_optimizer does: no weight gradients for D in the G step
        fake = generator(z)
        recon, code = discriminator(fake)
        loss_g = generator_loss(reconstruction_energy(fake, recon), code, 0.1)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        discriminator.requires_grad_(True)


def lightning_loop(datamodule: MNISTDataModule, batches: int) -> None:
    generator, discriminator = _nets()
    model = EBGAN(generator, discriminator, pt_weight=0.1)
    quiet_trainer(max_epochs=1, limit_train_batches=batches).fit(model, datamodule=datamodule)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--ledger", default=None, help="record the result in this ledger folder (default: print only)")
    args = parser.parse_args()

    datamodule = MNISTDataModule(batch_size=64, normalization="tanh")
    datamodule.setup("fit")
    sides = {"plain PyTorch loop (peer)": plain_loop, "iclr17 EBGAN + Trainer": lightning_loop}
    alternate({label: partial(side, datamodule, 5) for label, side in sides.items()}, 1)  # warm-up
    times = alternate({label: partial(side, datamodule, args.batches) for label, side in sides.items()}, args.repeats)
    print(
        f"EBGAN-PT MNIST (G 5x800, D 2x1024), {args.batches} batches of 64, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    plain, ours = print_medians(times).values()
    print(f"ratio (ours / peer): {ours / plain:.3f}   target <= 1.10")
    if args.ledger:
        case = {"batches": args.batches, "repeats": args.repeats, "threads": torch.get_num_threads()}
        record_peer_vs_ours("ebgan_step", case, times, args.ledger, script=__file__)


if __name__ == "__main__":
    main()
