"""EntNet training throughput at the paper's sizes, against this machine's fp32 matmul ceiling.

    ICLR17_DATA_DIR=/path/to/data python benchmarks/entnet_throughput.py [--steps 30] [--threads N] [--no-compile]
        [--ledger DIR]

``--threads`` (default: torch's default) is set with ``torch.set_num_threads`` and printed.

Model d=100, m=20, batch 32, memory horizon T=70, bAbI 10k. A full training step (forward, backward,
gradient clipping, Adam), median over ``--steps`` steps after warm-up, on two tasks:

- task 1 (stories of at most 10 sentences; batches are padded to the longest story in the batch, never to
  70): training questions per second;
- task 2 (stories up to 68 sentences, so batches run close to the T=70 horizon): FLOP/s, the median over
  the timed steps of each step's FLOPs (counted by ``torch.utils.flop_counter``, matmuls only, on exactly
  the timed batches) divided by its time, as a fraction of a 2048x2048 fp32 matmul's FLOP/s measured in
  this process. Both FLOP counts are properties of the batches, counted once on the peer (which computes every
  padded step) and used for every mode: padded FLOPs run every story to the longest in its batch (the same work
  rate as the peer's, for any mode); real-sentence FLOPs leave out the work on padding sentences (each story run
  to its own length: what the packed memory computes), measured as the per-sentence FLOPs (one batch counted at
  its length and one sentence shorter) times the padding.

Before timing, each mode runs one step on every timed batch (so ``torch.compile`` has compiled, or given
up on, every story length it will see), then times a second pass over the same batches, the modes taking turns
batch by batch so that a shared host's load falls on all of them alike; the speedup over the peer is the median
over batches of the peer's step time over ours.

Ways to run the memory: the default (``fused``: the recurrence with its hand-written backward on the real sentences
only, ``iclr17.functional.entnet``, its loops over sentences in C++), ``fused, Python loops`` (the same with its
loops in Python, ``ICLR17_ENTNET_LOOPS=python``), its peer ``fused padded (48fa93d)`` (the same before issue 15:
every padded step computed, ``entnet_padded_memory.py``), ``recorded`` (every step under autograd, what ports do),
and each under ``torch.compile`` of the memory module (where it compiles); the output gives each one's first losses
to show whether they agree, and the ratios of the packed memory to its peer.

Targets (issue 15): at least 30% of the matmul ceiling on task 2 and twice the peer's questions/s on task 1.
``--ledger DIR`` also records each mode that ran as a row of ``DIR/benchmarks_entnet_throughput.jsonl``
(``iclr17.studies.benchmark_ledger``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from iclr17.datamodules import BabiDataModule
from iclr17.functional.entnet_extension import ENVIRONMENT
from iclr17.modules import EntNet
from iclr17.modules.entnet import nets
from iclr17.studies.benchmark_ledger import command_line, record

PEER = "fused padded (48fa93d)"
PYTHON_LOOPS = "fused, Python loops"  # the packed memory with its loops over sentences in Python, not C++


@cache
def padded_memory():
    """The peer's ``memory_recurrence`` with our memory's arguments."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "entnet_padded_memory", Path(__file__).with_name("entnet_padded_memory.py")
    )
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)

    def memory(sentences, key_gate, sentence_term, slot_term, u_weight, slope, initial, step_mask):
        # the (T, B, m, d) term the peer takes, in one broadcast add (before issue 15 DynamicMemory spent two)
        constant = slot_term + sentence_term.unsqueeze(2)
        return peer.memory_recurrence(sentences, key_gate, constant, u_weight, slope, initial, step_mask)

    return memory


@contextmanager
def loops_in_python(active: bool):
    """Run the packed memory's loops in Python (``ICLR17_ENTNET_LOOPS=python``) inside this block."""
    if not active:
        yield
        return
    before = os.environ.get(ENVIRONMENT)
    os.environ[ENVIRONMENT] = "python"
    try:
        yield
    finally:
        if before is None:
            del os.environ[ENVIRONMENT]
        else:
            os.environ[ENVIRONMENT] = before


@contextmanager
def padded_peer(active: bool):
    """Run ``DynamicMemory``'s fused path on the peer (the memory before issue 15) inside this block."""
    if not active:
        yield
        return
    ours, nets.memory_recurrence = nets.memory_recurrence, padded_memory()
    try:
        yield
    finally:
        nets.memory_recurrence = ours


def matmul_flops_per_second(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def training_step(model: EntNet, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits, _ = model(batch["story"], batch["query"])
    loss = F.cross_entropy(logits, batch["answer"], reduction="sum")
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 40.0)
    optimizer.step()
    return loss.detach()


def time_interleaved(runs: dict[str, tuple], batches) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-step seconds of every mode on the same batches, the modes taking turns batch by batch (so that the
    load of a shared host falls on all of them alike), after a first pass in which each mode runs every batch
    (warm-up, and compilation for every story length). ``runs``: label -> (model, optimizer, peer). Returns the
    times and the first pass's losses by label."""
    losses: dict[str, list[float]] = {}
    for label, (model, optimizer, peer) in runs.items():
        with padded_peer(peer), loops_in_python(label == PYTHON_LOOPS):
            losses[label] = [float(training_step(model, optimizer, batch)) for batch in batches]
    times: dict[str, list[float]] = {label: [] for label in runs}
    for batch in batches:
        for label, (model, optimizer, peer) in runs.items():
            with padded_peer(peer), loops_in_python(label == PYTHON_LOOPS):
                start = time.perf_counter()
                training_step(model, optimizer, batch)
                times[label].append(time.perf_counter() - start)
    return times, losses


def count_flops(model, optimizer, batch) -> int:
    with FlopCounterMode(display=False) as counter:
        training_step(model, optimizer, batch)
    return counter.get_total_flops()


def padding_flops(model, optimizer, batches) -> list[float]:
    """FLOPs each batch spends on padding sentences: the FLOPs of one story-sentence (from the first batch
    counted at its length and one sentence shorter; the count is affine in the story length) times the
    batch's padding sentences."""
    first = batches[0]
    shorter = {**first, "story": first["story"][:, :-1]}
    batch_size = len(first["story"])
    per_sentence = (count_flops(model, optimizer, first) - count_flops(model, optimizer, shorter)) / batch_size
    slots = [batch["story"].shape[0] * batch["story"].shape[1] for batch in batches]
    real = [(batch["story"] != 0).any(dim=-1).sum().item() for batch in batches]
    return [per_sentence * (n_slots - n_real) for n_slots, n_real in zip(slots, real, strict=True)]


def fresh_model(dm: BabiDataModule, fused: bool, compiled: bool) -> tuple[EntNet, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = EntNet(
        vocab_size=dm.vocab_size, sentence_length=dm.sentence_length, query_length=dm.query_length, fused_memory=fused
    )
    if compiled:
        model.memory.compile()
    return model, torch.optim.Adam(model.parameters(), lr=0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile modes (slow to compile)")
    parser.add_argument("--ledger", default=None, help="record the results in this ledger folder (default: print only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    task1, task2 = (BabiDataModule(tasks=[t], subset="en-10k", batch_size=32) for t in (1, 2))
    task1.setup(), task2.setup()
    loader1, loader2 = iter(task1.train_dataloader()), iter(task2.train_dataloader())
    real = [next(loader1) for _ in range(args.steps)]
    long = [next(loader2) for _ in range(args.steps)]
    mean_steps = statistics.mean(b["story"].shape[1] for b in long)
    ceiling = matmul_flops_per_second()
    print(f"torch {torch.__version__}, {args.threads} threads; fp32 matmul ceiling {ceiling / 1e9:.1f} GFLOP/s")

    modes = ((True, False, False), (True, False, True), (False, False, False))
    if not args.no_compile:
        modes += ((True, True, False), (False, True, False))
    with padded_peer(True):  # the FLOPs of the padded batches, counted on the peer, which computes all of them
        model, optimizer = fresh_model(task2, fused=True, compiled=False)
        padded = [count_flops(model, optimizer, batch) for batch in long]
        unpadded = [f - p for f, p in zip(padded, padding_flops(model, optimizer, long), strict=True)]
    labels = {(PEER if peer else "fused" if fused else "recorded") + (" + compile" if compiled else ""): mode
              for mode in modes for fused, compiled, peer in [mode]}  # fmt: skip
    labels = {**dict(list(labels.items())[:1]), PYTHON_LOOPS: (True, False, False), **labels}
    timed = {}
    for task, batches in ((task1, real), (task2, long)):
        runs = {}
        for label, (fused, compiled, peer) in labels.items():
            try:
                runs[label] = (*fresh_model(task, fused, compiled), peer)
            except Exception as err:  # torch.compile may be unavailable
                print(f"{label}: failed ({type(err).__name__}: {err})")
        timed[task] = time_interleaved(runs, batches)
    (times1, losses1), (times2, losses2) = timed[task1], timed[task2]
    measured, rows = {}, []
    for label in [label for label in times1 if label in times2]:
        real_times, unroll_times = times1[label], times2[label]
        real_losses, unroll_losses = losses1[label], losses2[label]
        measured[label] = real_time, unroll_time = statistics.median(real_times), statistics.median(unroll_times)
        rates = {
            name: statistics.median(f / t for f, t in zip(flops, unroll_times, strict=True))
            for name, flops in (("padded", padded), ("unpadded", unpadded))
        }
        print(
            f"{label}: task 1 {32 / real_time:.0f} questions/s ({1e3 * real_time:.1f} ms/step); "
            f"task 2 (mean {mean_steps:.0f} steps/batch) {1e3 * unroll_time:.1f} ms/step, "
            f"GFLOP/step padded {statistics.mean(padded) / 1e9:.2f}, "
            f"real sentences {statistics.mean(unpadded) / 1e9:.2f}; "
            f"GFLOP/s padded {rates['padded'] / 1e9:.1f} = {100 * rates['padded'] / ceiling:.1f}%, "
            f"real sentences {rates['unpadded'] / 1e9:.1f} = {100 * rates['unpadded'] / ceiling:.1f}% "
            "of the matmul ceiling (target >= 30%)"
        )
        print(f"{label}: first losses task 1 {real_losses[:2]}, task 2 {unroll_losses[:2]}")
        # recorded after every mode ran, the packed memory's row with its speedups over the peer
        case = {"memory": label, "steps": args.steps, "threads": args.threads, "no_compile": args.no_compile,
                "flops_on": "timed batches"}  # fmt: skip
        metrics = {
            "questions_per_s": 32 / real_time, "task1_ms": 1e3 * real_time, "task2_ms": 1e3 * unroll_time,
            "task2_mean_sentences": mean_steps, "gflop_per_step_padded": statistics.mean(padded) / 1e9,
            "gflop_per_step_unpadded": statistics.mean(unpadded) / 1e9, "gflops_padded": rates["padded"] / 1e9,
            "gflops_unpadded": rates["unpadded"] / 1e9, "share_padded": 100 * rates["padded"] / ceiling,
            "share_unpadded": 100 * rates["unpadded"] / ceiling, "ceiling_gflops": ceiling / 1e9,
            "first_losses_task1": real_losses[:2], "first_losses_task2": unroll_losses[:2],
        }  # fmt: skip
        rows.append((case, metrics, sum(real_times) + sum(unroll_times)))
    fused_row = next((metrics for case, metrics, _ in rows if case["memory"] == "fused"), None)
    for baseline, key, what in ((PEER, "peer", "(target >= 2 on task 1)"), (PYTHON_LOOPS, "python_loops", "")):
        if fused_row is None or baseline not in measured:
            continue
        speedups = {  # the median over batches of the baseline's step time over ours
            f"speedup_vs_{key}_task{n}": statistics.median(
                p / o for p, o in zip(times[baseline], times["fused"], strict=True)
            )
            for n, times in ((1, times1), (2, times2))
        }
        print(
            f"fused vs {baseline}: task 1 x{speedups[f'speedup_vs_{key}_task1']:.2f}, "
            f"task 2 x{speedups[f'speedup_vs_{key}_task2']:.2f} faster {what}".rstrip()
        )
        fused_row.update(speedups)
    for case, metrics, seconds in rows if args.ledger else ():
        record("entnet_throughput", case, metrics, command_line("ICLR17_DATA_DIR"), args.ledger, seconds, __file__)


if __name__ == "__main__":
    main()
