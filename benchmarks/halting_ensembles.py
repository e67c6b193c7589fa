"""Halting-time ensembles: K runs in one tensor program vs one run at a time.

    python benchmarks/halting_ensembles.py spin-glass [--k 256] [--n 200] [--eps 0.01] [--repeats 3] [--threads 1]
    ICLR17_DATA_DIR=/path/to/data python benchmarks/halting_ensembles.py mlp [--k 64] [--theta 0.1] [--threads 1]

Both sides run on ``--threads`` torch threads (default 1), set before anything runs and printed first.

``spin-glass``: K p = 3 spherical spin glasses of N spins, projected gradient descent until the gradient norm
is below eps; batched (``descend_until_halted`` on all K: lockstep groups of ``lockstep_group_size``, halted
instances dropped as they finish) vs a Python loop calling it on one instance at a time, on the same couplings
and starting points, whose halting times are checked equal. Memory: ``8 K N^3`` bytes (couplings and their
symmetrised copy, float32): the issue's K = 256, N = 200 needs 16 GB. Target on a CPU: batched never slower
than the loop (>= 1x) at every N (issue: N = 32, 100, 200); on a GPU, >= 20x.

``mlp``: K MLPs 784-32-10 trained by SGD (lr 0.1, batch 100) on 1,000 MNIST images until the full training
loss is below theta; vmapped (``train_until_halted``) vs K sequential Lightning fits of ``Classifier`` with
``HaltingTime(train_loss_below, theta, full_data)`` and ``MNISTDataModule``. Both sides evaluate the full
training loss after every step and stop at halting. Target (K = 64): vmapped >= 5x faster.

Each side is timed from initialisation to the last halting time; runs alternate; medians are reported.
``--ledger DIR`` also records the medians, the runs and the speed-up as a row of
``DIR/benchmarks_halting_ensembles.jsonl`` (``iclr17.studies.benchmark_ledger``).
"""

from __future__ import annotations

import argparse
import statistics

import pytorch_lightning as pl
import torch
from timing import alternate, print_medians

from iclr17.callbacks import HaltingTime
from iclr17.datamodules import MNISTDataModule
from iclr17.functional.spin_glass import (
    descend_until_halted,
    lockstep_group_size,
    random_sphere_points,
    sample_couplings,
    symmetrize,
)
from iclr17.modules import MLP, Classifier
from iclr17.studies.benchmark_ledger import command_line, record
from iclr17.studies.mlp_ensemble import init_ensemble, train_until_halted
from iclr17.studies.trainers import quiet_trainer


def spin_glass(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, float]]:
    generator = torch.Generator().manual_seed(0)
    couplings = symmetrize(sample_couplings(args.k, args.n, "gaussian", generator))
    w = random_sphere_points(args.k, args.n, generator)
    eps = torch.tensor([args.eps])

    def vectorised() -> torch.Tensor:
        return descend_until_halted(couplings, w, eps, max_steps=args.max_steps)[0]

    def one_at_a_time() -> torch.Tensor:
        rows = [descend_until_halted(couplings[i : i + 1], w[i : i + 1], eps, max_steps=args.max_steps)[0]
                for i in range(args.k)]  # fmt: skip
        return torch.cat(rows)

    times = vectorised()
    assert torch.equal(times, one_at_a_time()), "vectorised and one-at-a-time halting times differ"
    group = lockstep_group_size(couplings)
    print(f"spin glass K={args.k} N={args.n} eps={args.eps}: T mean {times.float().mean():.1f}, max {times.max()}; "
          f"batched in lockstep groups of {group}")  # fmt: skip
    halting = {"mean_T": times.float().mean().item(), "max_T": times.max().item(), "group_size": group}
    return alternate({"ours": vectorised, "peer": one_at_a_time}, args.repeats), halting


def mlp(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, float]]:
    datamodule = MNISTDataModule(val_size=10_000, normalization="standard", flatten=True, subset_size=1000,
                                 batch_size=100)  # fmt: skip
    datamodule.setup("fit")
    x, y = datamodule.train_set.tensors
    theta = torch.tensor([args.theta])
    seeds = list(range(args.k))

    def vmapped() -> torch.Tensor:
        base, params = init_ensemble([784, 32, 10], seeds)
        return train_until_halted(base, params, x, y, theta, [s + 50_000 for s in seeds], 0.1, 100, 1, 5000)[0]

    def sequential_lightning() -> list[int | None]:
        steps = []
        for seed in seeds:
            pl.seed_everything(seed, verbose=False)
            model = Classifier(MLP([784, 32, 10]), optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
            callback = HaltingTime("train_loss_below", args.theta, loss_source="full_data")
            trainer = quiet_trainer(max_steps=5000, callbacks=[callback])
            trainer.fit(model, datamodule)
            steps.append(callback.halting_step)
        return steps

    vmapped_times = vmapped()
    lightning_times = sequential_lightning()
    print(f"MLP K={args.k} theta={args.theta}: vmapped T mean {vmapped_times.float().mean():.1f}, "
          f"Lightning T mean {statistics.mean(s for s in lightning_times if s is not None):.1f} "
          "(different sample orders: equal laws, not equal runs)")  # fmt: skip
    halting = {"mean_T": vmapped_times.float().mean().item(),
               "lightning_mean_T": statistics.mean(s for s in lightning_times if s is not None)}  # fmt: skip
    return alternate({"ours": vmapped, "peer": sequential_lightning}, args.repeats), halting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=["spin-glass", "mlp"])
    parser.add_argument("--k", type=int, default=None, help="runs (default 256 spin glasses, 64 MLPs)")
    parser.add_argument("--n", type=int, default=200, help="spins")
    parser.add_argument("--eps", type=float, default=0.01, help="spin-glass gradient-norm threshold")
    parser.add_argument("--theta", type=float, default=0.1, help="MLP full-training-loss threshold")
    parser.add_argument("--max-steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both sides")
    parser.add_argument("--ledger", default=None, help="record the result in this ledger folder (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    args.k = args.k or (256 if args.system == "spin-glass" else 64)
    times, halting = spin_glass(args) if args.system == "spin-glass" else mlp(args)
    label = "one at a time" if args.system == "spin-glass" else "sequential Lightning fits"
    ours, peer = print_medians({f"batched ({args.k} at once)": times["ours"], label: times["peer"]}).values()
    target = 1 if args.system == "spin-glass" else 5  # the script runs on the CPU: there, never slower
    print(f"peer {peer:.2f} s, ours {ours:.2f} s, speed-up (peer / ours): {peer / ours:.2f}x   target >= {target}x")
    if args.ledger:
        system = {"n": args.n, "eps": args.eps} if args.system == "spin-glass" else {"theta": args.theta}
        case = {"system": args.system, "k": args.k, **system, "max_steps": args.max_steps, "repeats": args.repeats,
                "threads": args.threads}  # fmt: skip
        metrics = {"ours_seconds": ours, "peer_seconds": peer, "speedup": peer / ours, "target_speedup": target,
                   "ours_runs": times["ours"], "peer_runs": times["peer"], **halting}  # fmt: skip
        env = ("ICLR17_DATA_DIR",) if args.system == "mlp" else ()
        seconds = sum(times["ours"]) + sum(times["peer"])
        record("halting_ensembles", case, metrics, command_line(*env), args.ledger, seconds, __file__)


if __name__ == "__main__":
    main()
