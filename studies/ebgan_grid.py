"""The MNIST architecture grid of EBGAN's Table 1 (arXiv:1609.03126 section 4.1): EBGAN vs GAN runs, I' per
run, and the Fig. 2 histograms.

    ICLR17_DATA_DIR=/path/to/data python -m iclr17.studies.ebgan_grid --out results/ebgan/grid \\
        [--n-layer-g 2 3 4 5] [--n-layer-d 2 3 4 5] [--size-g 400 800 1600 3200] [--size-d 128 256 512 1024] \\
        [--dropout-d 0 1] [--pt-weight 0] [--gan-optim adam sgd] [--gan-lr 0.01 0.001 0.0001] \\
        [--subset N] [--epochs 1] [--limit-batches N] [--score-samples 10000]

Every axis defaults to the paper's values, so the defaults run the full 512 EBGAN + 6144 GAN runs; pass fewer
values per axis, and/or ``--subset N`` (a seeded random sample of N points per model), for a reduced grid.
EBGAN runs use Adam lr 1e-3 and m = 10 on the l2 energy; GAN runs take (optimD, optimG, lr) from the GAN axes
(each optimizer independently). Each run is seeded with its index in the full, ordered grid (recorded), trains
for ``--epochs`` epochs (or ``--limit-batches`` batches) on MNIST in [-1, 1] with batch 64, and is scored by I'
on ``--score-samples`` generated digits with the shipped classifier (G in eval mode). ``<out>/runs.csv`` gets one
row per finished run (a rerun skips rows already there), ``<out>/samples/<run>.png`` a 10x10 grid per run, and
``<out>/histograms.png`` the paper's Fig. 2: I' histograms of EBGAN vs GAN over (a) all runs, (b) nLayerG,
nLayerD <= 4, (c) <= 3.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pytorch_lightning as pl
import torch
from torchvision.utils import save_image

from iclr17.datamodules import MNISTDataModule
from iclr17.modules.ebgan.metrics import MNISTScore
from iclr17.modules.ebgan.module import EBGAN
from iclr17.modules.ebgan.nets import MNISTDiscriminator, MNISTGenerator
from iclr17.studies.trainers import quiet_trainer

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


@dataclass(frozen=True)
class GridPoint:
    """One run of Table 1: the architecture, the optimizers and (EBGAN) lambda_PT."""

    model: str
    n_layer_g: int
    n_layer_d: int
    size_g: int
    size_d: int
    dropout_d: bool
    optim_d: str
    optim_g: str
    lr: float
    pt_weight: float = 0.0

    @property
    def name(self) -> str:
        return "_".join(str(v) for v in asdict(self).values())


def table1_grid(
    model: str,
    n_layer_g: list[int] = (2, 3, 4, 5),
    n_layer_d: list[int] = (2, 3, 4, 5),
    size_g: list[int] = (400, 800, 1600, 3200),
    size_d: list[int] = (128, 256, 512, 1024),
    dropout_d: list[bool] = (True, False),
    gan_optim: list[str] = ("adam", "sgd"),
    gan_lr: list[float] = (0.01, 0.001, 0.0001),
    pt_weight: list[float] = (0.0,),
) -> list[GridPoint]:
    """The ordered grid for ``ebgan`` (512 points with the defaults) or ``gan`` (6144)."""
    arch = list(itertools.product(n_layer_g, n_layer_d, size_g, size_d, dropout_d))
    if model == "ebgan":
        return [GridPoint("ebgan", *a, "adam", "adam", 1e-3, pt) for a in arch for pt in pt_weight]
    if model == "gan":
        optim = itertools.product(gan_optim, gan_optim, gan_lr)
        return [GridPoint("gan", *a, od, og, lr) for a, (od, og, lr) in itertools.product(arch, list(optim))]
    raise ValueError(f"model must be ebgan or gan, got {model!r}")


def build_module(point: GridPoint) -> EBGAN:
    head = "autoencoder" if point.model == "ebgan" else "binary"
    generator = MNISTGenerator(z_dim=100, n_layers=point.n_layer_g, size=point.size_g)
    discriminator = MNISTDiscriminator(
        point.n_layer_d, point.size_d, dropout=0.5 if point.dropout_d else 0.0, head=head
    )
    return EBGAN(
        generator,
        discriminator,
        loss=point.model,
        margin=10.0,
        energy="l2",
        pt_weight=point.pt_weight,
        optimizer_g=lambda params: OPTIMIZERS[point.optim_g](params, lr=point.lr),
        optimizer_d=lambda params: OPTIMIZERS[point.optim_d](params, lr=point.lr),
    )


@torch.no_grad()
def score_generator(module: EBGAN, n_samples: int, seed: int, batch: int = 1000) -> tuple[float, torch.Tensor]:
    """I' of ``n_samples`` generated digits (G in eval mode) and the first 100 of them."""
    module.eval()
    metric, rng = MNISTScore(), torch.Generator().manual_seed(seed)
    first = None
    for start in range(0, n_samples, batch):
        images = module(module.sample_noise(min(batch, n_samples - start), rng))
        metric.update(images)
        first = images[:100] if first is None else first
    return float(metric.compute()), first


def run_point(point: GridPoint, seed: int, datamodule: MNISTDataModule, args: argparse.Namespace) -> dict:
    pl.seed_everything(seed, workers=True, verbose=False)
    module = build_module(point)
    start = time.perf_counter()
    trainer = quiet_trainer(max_epochs=args.epochs, limit_train_batches=args.limit_batches)
    trainer.fit(module, datamodule=datamodule)
    score, samples = score_generator(module, args.score_samples, seed)
    save_image(samples, args.out / "samples" / f"{point.name}.png", nrow=10, normalize=True, value_range=(-1, 1))
    return {**asdict(point), "seed": seed, "score": score, "seconds": round(time.perf_counter() - start, 1)}


def histogram_figure(rows: list[dict], path: Path) -> None:
    """Fig. 2: I' histograms of EBGAN vs GAN runs for all runs, nLayer <= 4 and nLayer <= 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(12, 3.2), sharey=False)
    scores = [float(r["score"]) for r in rows]
    bins = torch.linspace(min(scores, default=0.0), max(scores, default=1.0) + 1e-9, 21).tolist()
    for ax, (title, limit) in zip(axes, [("(a) all", 5), ("(b) nLayer <= 4", 4), ("(c) nLayer <= 3", 3)], strict=True):
        for model, color in (("ebgan", "tab:blue"), ("gan", "tab:orange")):
            values = [
                float(r["score"])
                for r in rows
                if r["model"] == model and int(r["n_layer_g"]) <= limit and int(r["n_layer_d"]) <= limit
            ]
            ax.hist(values, bins=bins, alpha=0.6, color=color, label=f"{model.upper()} ({len(values)})")
        ax.set(title=title, xlabel="I'", ylabel="runs")
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/ebgan/grid"))
    parser.add_argument("--models", nargs="+", default=["ebgan", "gan"], choices=["ebgan", "gan"])
    parser.add_argument("--n-layer-g", nargs="+", type=int, default=[2, 3, 4, 5])
    parser.add_argument("--n-layer-d", nargs="+", type=int, default=[2, 3, 4, 5])
    parser.add_argument("--size-g", nargs="+", type=int, default=[400, 800, 1600, 3200])
    parser.add_argument("--size-d", nargs="+", type=int, default=[128, 256, 512, 1024])
    parser.add_argument("--dropout-d", nargs="+", type=int, default=[1, 0], choices=[0, 1])
    parser.add_argument("--pt-weight", nargs="+", type=float, default=[0.0], help="EBGAN lambda_PT values")
    parser.add_argument("--gan-optim", nargs="+", default=["adam", "sgd"], choices=sorted(OPTIMIZERS))
    parser.add_argument("--gan-lr", nargs="+", type=float, default=[0.01, 0.001, 0.0001])
    parser.add_argument("--subset", type=int, default=None, help="seeded random sample of N points per model")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--limit-batches", type=int, default=None, help="training batches per epoch (default all)")
    parser.add_argument("--score-samples", type=int, default=10_000)
    parser.add_argument("--data-dir", default=None, help="data root (default $ICLR17_DATA_DIR, else ./data)")
    parser.add_argument("--val-size", type=int, default=10_000, help="training images held out (not used)")
    args = parser.parse_args(argv)

    axes = dict(
        n_layer_g=args.n_layer_g,
        n_layer_d=args.n_layer_d,
        size_g=args.size_g,
        size_d=args.size_d,
        dropout_d=[bool(d) for d in args.dropout_d],
        gan_optim=args.gan_optim,
        gan_lr=args.gan_lr,
        pt_weight=args.pt_weight,
    )
    points: list[tuple[int, GridPoint]] = []
    for model in args.models:
        grid = list(enumerate(table1_grid(model, **axes)))
        if args.subset is not None and args.subset < len(grid):
            grid = sorted(random.Random(0).sample(grid, args.subset))
        points += grid

    (args.out / "samples").mkdir(parents=True, exist_ok=True)
    csv_path = args.out / "runs.csv"
    columns = [f.name for f in fields(GridPoint)] + ["seed", "score", "seconds"]
    rows = list(csv.DictReader(csv_path.open())) if csv_path.is_file() else []
    done = {(r["model"], r["n_layer_g"], r["n_layer_d"], r["size_g"], r["size_d"], r["dropout_d"], r["optim_d"],
             r["optim_g"], r["lr"], r["pt_weight"]) for r in rows}  # fmt: skip
    datamodule = MNISTDataModule(data_dir=args.data_dir, batch_size=64, normalization="tanh", val_size=args.val_size)
    datamodule.setup("fit")
    for seed, point in points:
        if tuple(str(v) for v in asdict(point).values()) in done:
            continue
        row = run_point(point, seed, datamodule, args)
        rows.append({k: str(v) for k, v in row.items()})
        with csv_path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        print(f"{len(rows)}/{len(points)} {point.name} seed {seed}: I' = {row['score']:.3f} ({row['seconds']} s)")
    histogram_figure(rows, args.out / "histograms.png")
    print(f"wrote {csv_path} and {args.out / 'histograms.png'}")


if __name__ == "__main__":
    main()
