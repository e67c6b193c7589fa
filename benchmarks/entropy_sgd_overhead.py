"""One Entropy-SGD outer step (L Langevin steps + the evaluation at x) vs L + 1 plain SGD steps.

    python benchmarks/entropy_sgd_overhead.py [--device cpu|cuda] [--L 20] [--repeats 7] [--threads N] [--ledger DIR]

Both sides run the same model on the same L + 1 minibatches (MNIST-shaped random tensors, batch 128: pixel
values do not change the time) and do L + 1 forward/backward passes; the peer is ``torch.optim.SGD`` with
Nesterov momentum 0.9 (foreach), stepping after each pass. So the ratio is what EntropySGD adds beyond its
gradient evaluations: the coupling term, the running average mu, the outer step, and the Gaussian noise
(one draw per parameter per Langevin step, inherent to the algorithm). A second line with ``eps = 0``
separates the cost of the draws, and a third times the draws alone: one ``torch.randn`` from a single generator
(torch's CPU Mersenne twister, how the noise was drawn first) against the optimizer's own (on the CPU the Philox
kernel of ``iclr17.functional.philox`` on every thread, on a GPU ``NOISE_STREAMS`` CUDA generators). Sides
alternate; medians over ``--repeats``; ``--threads`` sets torch's thread count (the CPU noise uses as many).
Target: ratio <= 1.10.
``--ledger DIR`` also records each model as a row of ``DIR/benchmarks_entropy_sgd_overhead.jsonl``
(``iclr17.studies.benchmark_ledger``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from iclr17 import MNISTFC, EntropySGD, LeNet
from iclr17.studies.benchmark_ledger import command_line, record


def batches(n: int, device: torch.device, conv: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    shape = (128, 1, 28, 28) if conv else (128, 784)
    return [
        (
            torch.rand(shape, generator=generator).to(device),
            torch.randint(0, 10, (128,), generator=generator).to(device),
        )
        for _ in range(n)
    ]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def plain_steps(model: nn.Module, optimizer: torch.optim.Optimizer, data: list, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    for x, y in data:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start


def entropy_step(model: nn.Module, optimizer: EntropySGD, data: list, device: torch.device) -> float:
    stream = iter(data)

    def closure() -> torch.Tensor:
        x, y = next(stream)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    sync(device)
    start = time.perf_counter()
    optimizer.step(closure)
    sync(device)
    return time.perf_counter() - start


def noise_draws(optimizer: EntropySGD, model: nn.Module, device: torch.device) -> tuple[float, float]:
    """Seconds for one step's noise: a single generator's ``torch.randn`` (the peer) and the optimizer's own."""
    params = [p for p in model.parameters() if p.requires_grad]
    generator = torch.Generator(device=device).manual_seed(0)
    sync(device)
    start = time.perf_counter()
    torch.randn(sum(p.numel() for p in params), generator=generator, device=device)
    sync(device)
    middle = time.perf_counter()
    optimizer._gaussians(params)
    sync(device)
    return middle - start, time.perf_counter() - middle


def compare(name: str, make_model, conv: bool, L: int, repeats: int, device: torch.device) -> tuple[dict, dict, float]:
    """Print the medians and ratios; return the case, its metrics and the seconds timed, for the ledger."""
    data = batches(L + 1, device, conv)
    torch.manual_seed(0)
    plain_model, entropy_model, silent_model = make_model(), make_model(), make_model()
    for model in (plain_model, entropy_model, silent_model):
        model.to(device).train()
    plain = torch.optim.SGD(plain_model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    noisy = EntropySGD(entropy_model.parameters(), lr=0.01, L=L, eps=1e-4)
    silent = EntropySGD(silent_model.parameters(), lr=0.01, L=L, eps=0.0)
    plain_steps(plain_model, plain, data, device)  # warm-up: allocations, kernels, optimizer state
    entropy_step(entropy_model, noisy, data, device)
    entropy_step(silent_model, silent, data, device)
    times: dict[str, list[float]] = {"plain": [], "noisy": [], "silent": [], "one_generator": [], "streams": []}
    for _ in range(repeats):
        times["plain"].append(plain_steps(plain_model, plain, data, device))
        times["noisy"].append(entropy_step(entropy_model, noisy, data, device))
        times["silent"].append(entropy_step(silent_model, silent, data, device))
        for key, seconds in zip(("one_generator", "streams"), noise_draws(noisy, entropy_model, device), strict=True):
            times[key].append(seconds)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_params = sum(p.numel() for p in plain_model.parameters())
    print(f"{name} ({n_params:,} parameters, L = {L}, {device}):")
    print(f"  peer  {L + 1} SGD-Nesterov steps       {med['plain'] * 1e3:9.1f} ms")
    for key, label in [("noisy", "eps=1e-4"), ("silent", "eps=0   ")]:
        ratio = med[key] / med["plain"]
        print(f"  ours  one EntropySGD step, {label} {med[key] * 1e3:9.1f} ms   ratio {ratio:.3f}")
    one, streams = med["one_generator"], med["streams"]
    ours = "Philox kernel" if device.type == "cpu" else "CUDA streams"
    print(
        f"  noise of one Langevin step: torch.randn {one * 1e3:.2f} ms, ours ({ours}, "
        f"{torch.get_num_threads()} threads) {streams * 1e3:.2f} ms   ratio {streams / one:.3f}"
    )
    case = {
        "model": name, "parameters": n_params, "L": L, "device": device.type, "repeats": repeats,
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    metrics = {f"{key}_ms": 1e3 * m for key, m in med.items()}
    metrics |= {f"{key}_ratio": med[key] / med["plain"] for key in ("noisy", "silent")}
    metrics["streams_vs_one_generator_ratio"] = med["streams"] / med["one_generator"]
    metrics |= {f"{key}_runs_ms": [1e3 * t for t in runs] for key, runs in times.items()}
    return case, metrics, sum(sum(runs) for runs in times.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--L", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--ledger", default=None, help="record the results in this ledger folder (default: print only)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    for name, make_model, conv in (("mnistfc", MNISTFC, False), ("LeNet-BN", LeNet, True)):
        case, metrics, seconds = compare(name, make_model, conv=conv, L=args.L, repeats=args.repeats, device=device)
        if args.ledger:
            record("entropy_sgd_overhead", case, metrics, command_line(), args.ledger, seconds, __file__)


if __name__ == "__main__":
    main()
