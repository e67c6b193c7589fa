"""RESULTS.md's benchmark tables, each a pure function of one benchmark ledger's rows (``benchmark_ledger``).

Failed rows never enter a table. Cells are the recorded numbers at RESULTS.md's rounding; a row's ``note``
metric (prose that came with a number) goes to a note column or, for a label cell, in brackets after the label.
Tables that grow with new runs name each row's commit.
"""

from __future__ import annotations

import itertools
import re
import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

from iclr17.studies.seed_tables import plural, span

Rows = list[dict[str, Any]]


def shown(rows: Rows, **params: Any) -> Rows:
    """The rows a table shows: not failed, with the given ``params`` values."""
    return [r for r in rows if r["status"] != "failed" and all(r["params"].get(k) == v for k, v in params.items())]


def _line(cells: list[str]) -> str:
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def markdown(header: list[str], lines: list[list[str]]) -> str:
    """A markdown table; an empty cell is written ``| |``."""
    return "\n".join([_line(header), "|---" * len(header) + "|", *map(_line, lines)])


def commit_of(row: dict[str, Any]) -> str:
    """The row's commit, short, marked ``(dirty)`` when the tree had uncommitted changes."""
    return row["commit"][:7] + (" (dirty)" if row["dirty"] else "")


def labelled(label: str, metrics: dict[str, Any]) -> str:
    """``label``, with the row's note in brackets when it has one."""
    return f"{label} ({metrics['note']})" if metrics.get("note") else label


def met(ok: bool) -> str:
    return "met" if ok else "not met"


# ---- benchmarks/lightning_overhead.py -----------------------------------------------------------------------------


def lightning_overhead_table(rows: Rows) -> str:
    """One epoch of mnistfc, plain loop (peer) vs Classifier + Trainer: medians and ratio, per recorded run."""
    lines = [
        [commit_of(r), f"{m['peer_seconds']:.2f} s", f"{m['ours_seconds']:.2f} s", f"{m['ratio']:.3f}",
         m.get("note", "")]
        for r in shown(rows) for m in [r["metrics"]]
    ]  # fmt: skip
    return markdown(["commit", "plain loop (peer)", "iclr17", "ratio", "note"], lines)


# ---- benchmarks/entnet_throughput.py ------------------------------------------------------------------------------


def _median_and_runs(runs: list[dict[str, Any]], key: str, spec: str, unit: str = "") -> str:
    """The median of metric ``key`` over ``runs``, then each run's value in brackets when there are several."""
    values = [m[key] for m in runs]
    text = f"{statistics.median(values):{spec}}{unit}"
    return text if len(values) == 1 else text + " (" + ", ".join(f"{v:{spec}}" for v in values) + ")"


def entnet_throughput_table(rows: Rows) -> str:
    """EntNet (arXiv:1612.03969) training throughput, runs that count FLOPs on the timed batches (the script since
    issue 12) on 2 threads (the dev machine's cores), by commit and memory mode: medians over the runs, each run's
    value in brackets."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in shown(rows, flops_on="timed batches", threads=2):
        groups.setdefault((commit_of(row), row["params"]["memory"]), []).append(row["metrics"])
    lines = []
    for (commit, memory), runs in groups.items():
        flops = [statistics.median(m[f"gflop_per_step_{k}"] for m in runs) for k in ("padded", "unpadded")]
        lines.append([
            commit, labelled(memory, runs[0]), _median_and_runs(runs, "questions_per_s", ".0f"),
            _median_and_runs(runs, "task2_ms", ".1f"), f"{flops[0]:.2f} / {flops[1]:.2f}",
            _median_and_runs(runs, "gflops_padded", ".1f"), _median_and_runs(runs, "share_padded", ".1f", "%"),
            _median_and_runs(runs, "share_unpadded", ".1f", "%"),
        ])  # fmt: skip
    header = ["commit", "memory", "task 1: questions/s", "task 2: ms/step", "GFLOP/step padded / unpadded",
              "GFLOP/s padded", "share of ceiling, padded", "unpadded"]  # fmt: skip
    return markdown(header, lines)


Metrics = dict[str, Any]


def _is_packed(row: dict[str, Any]) -> bool:
    return row["status"] != "failed" and "speedup_vs_peer_task1" in row["metrics"]


def _packed_runs(rows: Rows) -> dict[tuple[str, int], list[tuple[Metrics, Metrics, Metrics | None]]]:
    """(packed memory's metrics, its peer's, autograd's or None) of each run that measured the first two, by
    (commit, threads), in ledger order: a run's rows are those of its commit and threads from its packed row up to
    the next packed row of the same commit and threads; its peer's is the one whose memory is the padded peer,
    autograd's the one whose memory is ``recorded``."""
    runs: dict[tuple[str, int], list[tuple[Metrics, Metrics, Metrics | None]]] = {}
    for i, row in enumerate(rows):
        if not _is_packed(row):
            continue
        key = (commit_of(row), row["params"]["threads"])
        same = [r for r in rows[i + 1 :] if (commit_of(r), r["params"]["threads"]) == key and r["status"] != "failed"]
        own = list(itertools.takewhile(lambda r: not _is_packed(r), same))
        peer = next(r for r in own if r["params"]["memory"].startswith("fused padded"))
        recorded = next((r for r in own if r["params"]["memory"] == "recorded"), None)
        runs.setdefault(key, []).append((row["metrics"], peer["metrics"], recorded and recorded["metrics"]))
    return runs


def entnet_packed_table(rows: Rows) -> str:
    """Issue 15's packed memory against its peer (the fused memory before issue 15, every padded step computed),
    the two taking turns batch by batch in each run: by commit and threads, medians over the runs (each run in
    brackets) of task 1's questions/s, task 2's step time, the speedups (each run's median over batches of the
    peer's step time over ours; targets: 2x on task 1) and the share of the matmul ceiling on task 2 by the padded
    and by the real-sentence FLOP count (target: 30%)."""
    lines = []
    for (commit, threads), pairs in _packed_runs(rows).items():
        ours, peers = [m for m, _, _ in pairs], [p for _, p, _ in pairs]
        lines.append([
            commit, str(threads), str(len(pairs)),
            f"{_median_and_runs(ours, 'questions_per_s', '.0f')} / {_median_and_runs(peers, 'questions_per_s', '.0f')}",
            _median_and_runs(ours, "speedup_vs_peer_task1", ".2f", "x"),
            f"{_median_and_runs(ours, 'task2_ms', '.1f')} / {_median_and_runs(peers, 'task2_ms', '.1f')}",
            _median_and_runs(ours, "speedup_vs_peer_task2", ".2f", "x"),
            f"{_median_and_runs(ours, 'share_padded', '.1f', '%')} / "
            f"{_median_and_runs(peers, 'share_padded', '.1f', '%')}",
            f"{_median_and_runs(ours, 'share_unpadded', '.1f', '%')} / "
            f"{_median_and_runs(peers, 'share_unpadded', '.1f', '%')}",
            " / ".join(_median_and_runs(ours, f"speedup_vs_python_loops_task{n}", ".2f", "x") for n in (1, 2))
            if all("speedup_vs_python_loops_task1" in m for m in ours) else "",
        ])  # fmt: skip
    header = ["commit", "threads", "runs", "task 1: questions/s, packed / peer", "task 1 speedup",
              "task 2: ms/step, packed / peer", "task 2 speedup", "share of ceiling (padded FLOPs), packed / peer",
              "share (real-sentence FLOPs), packed / peer", "C++ loops vs Python loops, task 1 / task 2"]  # fmt: skip
    return markdown(header, lines)


def entnet_speed_summary(rows: Rows, commit: str | None = None, threads: int = 2) -> str:
    """The packed memory's runs of ``commit`` (short; default: the commit of the last packed run) at ``threads`` in
    one line, for a sentence or a table cell, as :func:`entnet_packed_table` pairs them: a training step's speed-up
    over autograd's (``recorded``) on tasks 1 and 2, the range over the runs; over the fused memory before issue 15
    (medians); its share of the matmul ceiling on task 2 counting the padding sentences and the stories' own
    (medians)."""
    if commit is None:
        commit = next((commit_of(r) for r in reversed(rows) if _is_packed(r) and r["params"]["threads"] == threads), "")
    triples = _packed_runs(rows).get((commit, threads))
    if not triples:
        return f"(no packed-memory runs at {threads} threads{f' of {commit}' if commit else ''})"
    autograd = [(ours, recorded) for ours, _, recorded in triples if recorded is not None]

    def median(key: str, spec: str) -> str:
        return format(statistics.median(m[key] for m, _, _ in triples), spec)

    task1 = span([o["questions_per_s"] / r["questions_per_s"] for o, r in autograd]) + "x" if autograd else ""
    task2 = span([r["task2_ms"] / o["task2_ms"] for o, r in autograd]) + "x" if autograd else ""
    versus = f"a training step {task1} (task 1) and {task2} (task 2) faster than autograd's, " if autograd else ""
    counted = f"{plural(threads, 'thread')}, {plural(len(triples), 'run')}"
    return (
        f"{commit}, {counted}: {versus}"
        f"{median('speedup_vs_peer_task1', '.2f')}x / {median('speedup_vs_peer_task2', '.2f')}x faster than the fused "
        f"memory before issue 15 (medians); on task 2 {median('share_padded', '.1f')}% of the matmul ceiling counting "
        f"padding sentences, {median('share_unpadded', '.1f')}% counting only the stories' own"
    )


def _task1(m: dict[str, Any]) -> str:
    return f"{m['questions_per_s']:.0f} ({m['task1_ms']:.1f})"


def _shares_first5(m: dict[str, Any]) -> str:
    return f"{m['share_published']:.1f}% / {m['share_padded_rescaled']:.1f}% / {m['share_unpadded_rescaled']:.1f}%"


def entnet_first5_table(rows: Rows) -> str:
    """Eager runs from before issue 12, when FLOPs were counted on the first 5 batches: as published, and the
    GFLOP/s and shares rescaled to the timed batches. The ceiling is named on each run's first row."""
    lines, seen = [], set()
    for row in shown(rows, flops_on="first 5 batches", no_compile=True):
        m = row["metrics"]
        run = (row["commit"], m["ceiling_gflops"])
        commit = commit_of(row) + ("" if run in seen else f" ({m['ceiling_gflops']:.1f} GFLOP/s)")
        seen.add(run)
        lines.append([
            commit, labelled(row["params"]["memory"], m), _task1(m), f"{m['task2_ms']:.1f}",
            f"{m['gflop_per_step_first5']:.2f}", f"{m['gflops_padded_rescaled']:.1f}", _shares_first5(m),
        ])  # fmt: skip
    header = ["commit (ceiling)", "memory", "task 1: questions/s (ms/step)", "task 2: ms/step",
              "GFLOP/step (first 5 batches)", "GFLOP/s (rescaled)",
              "share of ceiling: as published / padded / unpadded"]  # fmt: skip
    return markdown(header, lines)


def entnet_compile_first5_table(rows: Rows) -> str:
    """The run with the ``torch.compile`` modes from before issue 12 (FLOPs on the first 5 batches)."""
    lines = [
        [labelled(r["params"]["memory"], r["metrics"]), _task1(r["metrics"]), f"{r['metrics']['task2_ms']:.1f}",
         _shares_first5(r["metrics"])]
        for r in shown(rows, flops_on="first 5 batches", no_compile=False)
    ]  # fmt: skip
    header = ["memory", "task 1: questions/s (ms/step)", "task 2: ms/step",
              "share of ceiling: as published / padded / unpadded"]  # fmt: skip
    return markdown(header, lines)


# ---- benchmarks/hessian_vs_peers.py -------------------------------------------------------------------------------


def _exponent(value: float) -> str:
    """``2.4e-6`` (one decimal, no padded exponent)."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{value:.1e}")


def _model(net: str) -> str:
    return "MLP" if net.startswith("MLP") else net


def hessian_runs(rows: Rows, products: bool) -> Rows:
    """The rows, in part order, of the runs (by commit) that compared with PyHessian and timed (``products``) or did
    not time (the script before issue 12) one Hessian-vector product alone. A comparison without PyHessian is not
    shown (the renderers skip it)."""
    runs: dict[str, Rows] = {}
    for row in shown(rows):
        runs.setdefault(row["commit"], []).append(row)
    kept = []
    for run in runs.values():
        top = [r["metrics"] for r in run if r["params"]["part"] == "a"]
        if any("pyhessian_power_seconds" in m for m in top) and any("ours_product_ms" in m for m in top) == products:
            kept += sorted(run, key=lambda r: r["params"]["part"])
    return kept


def hessian_vs_peers_table(rows: Rows) -> str:
    """Hessian spectra (arXiv:1611.07476), ours against PyHessian per comparison: (a) end to end and one product
    alone, (b) the density at equal steps, (c) exact mode against the ``torch.func.hessian`` floor; targets (a) >= 3x
    faster, (c) <= 1.3."""
    lines = []
    for row in hessian_runs(rows, products=True):
        p, m, commit = row["params"], row["metrics"], commit_of(row)
        if p["part"] == "a" and "ours_product_ms" in m:
            ratio = m["pyhessian_power_over_ours"]
            lines.append([commit, f"(a) top-5, {_model(p['net'])}: end to end",
                          f"Lanczos {m['ours_steps']} steps, {m['ours_seconds']:.3f} s",
                          f"power, {m['pyhessian_power_seconds']:.3f} s, {m['pyhessian_power_hvps']} products",
                          f"{ratio:.2f}x faster (target >= 3x: {met(ratio >= 3)})"])  # fmt: skip
            lines.append([commit, f"(a) top-5, {_model(p['net'])}: one product", f"{m['ours_product_ms']:.2f} ms",
                          f"{m['pyhessian_product_ms']:.2f} ms",
                          f"ours costs {m['product_cost_ratio']:.2f}x PyHessian's"])  # fmt: skip
        elif p["part"] == "b" and "pyhessian_density_seconds" in m:
            lines.append([commit, f"(b) density, {_model(p['net'])}, {p['steps']} steps x {p['probes']} probes",
                          f"SLQ {m['ours_seconds']:.3f} s",
                          f"density {m['pyhessian_density_seconds']:.3f} s (L1 between densities "
                          f"{_exponent(m['pyhessian_density_l1_to_ours'])})",
                          f"{m['pyhessian_density_over_ours']:.2f}"])  # fmt: skip
        elif p["part"] == "c":
            lines.append([commit, f"(c) exact, {p['net']}, {p['dtype']}", f"{m['ours_seconds']:.3f} s",
                          f"floor `torch.func.hessian` + `eigvalsh` {m['floor_seconds']:.3f} s",
                          f"{m['ratio']:.3f} (target <= 1.3: {met(m['ratio'] <= 1.3)})"])  # fmt: skip
    return markdown(["commit", "comparison", "ours", "PyHessian", "ratio"], lines)


def hessian_before_products_table(rows: Rows) -> str:
    """The layout of the runs from before issue 12 (no product timed alone): ours against PyHessian and, in (a),
    hessian-eigenthings' Lanczos; a peer faster than ours is said so."""
    lines = []
    for row in hessian_runs(rows, products=False):
        p, m = row["params"], row["metrics"]
        if p["part"] == "a" and "pyhessian_power_seconds" in m:
            ratio = m["pyhessian_power_over_ours"]
            lines.append([
                f"(a) top-5, {p['net']} ({p['parameters']:,} parameters)",
                f"Lanczos {m['ours_steps']} steps: {m['ours_seconds']:.3f} s, {m['ours_hvps']} products",
                f"PyHessian power: {m['pyhessian_power_seconds']:.3f} s, {m['pyhessian_power_hvps']} products",
                f"{ratio:.2f}x faster", f">= 3x: {met(ratio >= 3)}",
            ])  # fmt: skip
            if "eigenthings_lanczos_seconds" in m:
                lines.append(["", "", f"hessian-eigenthings Lanczos: {m['eigenthings_lanczos_seconds']:.3f} s, "
                              f"{m['eigenthings_lanczos_hvps']} products",
                              f"{m['eigenthings_lanczos_over_ours']:.2f}x faster", ""])  # fmt: skip
        elif p["part"] == "b" and "pyhessian_density_seconds" in m:
            ratio = m["pyhessian_density_over_ours"]
            faster = f" (PyHessian {round(100 * (1 - ratio))}% faster)" if ratio < 1 else ""
            lines.append([f"(b) density, {_model(p['net'])}, {p['steps']} Lanczos steps x {p['probes']} probes",
                          f"SLQ {m['ours_seconds']:.3f} s",
                          f"PyHessian density {m['pyhessian_density_seconds']:.3f} s (L1 distance between densities "
                          f"{_exponent(m['pyhessian_density_l1_to_ours'])})",
                          f"{ratio:.2f}{faster}", "equal steps: compared"])  # fmt: skip
        elif p["part"] == "c":
            lines.append([
                f"(c) exact, {p['net']} ({p['parameters']:,} parameters), {p['dtype']}", f"{m['ours_seconds']:.3f} s",
                f"floor `torch.func.hessian` + `eigvalsh`: {m['floor_seconds']:.3f} s", f"{m['ratio']:.3f}",
                f"<= 1.3: {met(m['ratio'] <= 1.3)}",
            ])  # fmt: skip
    return markdown(["comparison", "ours", "peer", "ratio", "target"], lines)


# ---- benchmarks/entropy_sgd_overhead.py ---------------------------------------------------------------------------


def _parameters(count: int | float | str) -> str:
    """``1.87 M`` or ``132 k`` (a transcribed row keeps RESULTS.md's text)."""
    if isinstance(count, str):
        return count
    return f"{count / 1e6:.2f} M" if count >= 1e6 else f"{count / 1e3:.0f} k"


def entropy_sgd_overhead_table(rows: Rows, device: str) -> str:
    """One Entropy-SGD outer step (arXiv:1611.01838, Algorithm 1) vs L + 1 SGD steps on ``device``, per recorded run
    and model; a model's size is named on its first row."""
    lines, seen = [], set()
    selected = shown(rows, device=device)
    for row in selected:
        p, m = row["params"], row["metrics"]
        model = p["model"] + (f" ({_parameters(p['parameters'])} parameters)" if p["model"] not in seen and
                              "parameters" in p else "")  # fmt: skip
        seen.add(p["model"])
        lines.append([commit_of(row), labelled(model, m), f"{m['plain_ms']:.1f} ms", f"{m['noisy_ms']:.1f} ms",
                      f"{m['noisy_ratio']:.3f}", f"{m['silent_ms']:.1f} ms", f"{m['silent_ratio']:.3f}"])  # fmt: skip
    steps = {r["params"]["L"] + 1 for r in selected}
    peer = f"{steps.pop()} SGD steps (peer)" if len(steps) == 1 else "L + 1 SGD steps (peer)"
    header = ["commit", "model", peer, "EntropySGD, eps = 1e-4", "ratio", "EntropySGD, eps = 0", "ratio"]
    return markdown(header, lines)


def entropy_sgd_overhead_summary(rows: Rows) -> str:
    """:func:`entropy_sgd_overhead_table` in one line, for a sentence or a table cell: per device, its latest
    recorded run (the commit of its last row) and the machine it ran on (the first word of its description), each
    model's ratio of one outer step with Langevin noise to L + 1 SGD steps:
    ``cuda on h200-host, 681893e: mnistfc 1.051, LeNet-BN 1.045; ...``."""
    parts = []
    for device in dict.fromkeys(r["params"]["device"] for r in shown(rows)):
        of_device = shown(rows, device=device)
        last = of_device[-1]
        ratios = ", ".join(f"{labelled(r['params']['model'], r['metrics'])} {r['metrics']['noisy_ratio']:.3f}"
                           for r in of_device if commit_of(r) == commit_of(last))  # fmt: skip
        machine = re.split(r"[\s:;,]", last["machine"])[0]
        parts.append(f"{device} on {machine}, {commit_of(last)}: {ratios}")
    return "; ".join(parts) or "(no runs)"


# ---- benchmarks/halting_ensembles.py ------------------------------------------------------------------------------

TARGET_SCOPE = {"spin-glass": " (at K = 256, N = 200)", "mlp": " (K = 64)"}  # the issue's targets, as the script's


def halting_ensembles_table(rows: Rows) -> str:
    """Halting-time ensembles (arXiv:1511.06444) vectorised vs one at a time, per recorded command; each system's
    target on its first row."""
    lines, seen = [], set()
    for row in shown(rows):
        p, m = row["params"], row["metrics"]
        peer = f"{m['peer_seconds']:.2f} s" + (f" ({p['k']} Lightning fits)" if p["system"] == "mlp" else "")
        target = "" if p["system"] in seen else f"{m['target_speedup']:g}x{TARGET_SCOPE.get(p['system'], '')}"
        seen.add(p["system"])
        lines.append([commit_of(row), f"`{row['command']}`", f"{m['ours_seconds']:.2f} s", peer,
                      f"{m['speedup']:.1f}x", target])  # fmt: skip
    return markdown(["commit", "command", "vectorised", "one at a time", "speed-up", "target"], lines)


Renderer = Callable[[Rows], str]
RESULTS_TABLES: dict[str, tuple[str, Renderer]] = {
    "benchmark-lightning-overhead": ("benchmarks_lightning_overhead", lightning_overhead_table),
    "benchmark-entnet-throughput": ("benchmarks_entnet_throughput", entnet_throughput_table),
    "benchmark-entnet-throughput-packed": ("benchmarks_entnet_throughput", entnet_packed_table),
    # the Python loops' runs, which the README's sentence names (the C++ loops are not yet in the ledger)
    "benchmark-entnet-speed-summary": ("benchmarks_entnet_throughput", partial(entnet_speed_summary, commit="58abd95")),
    "benchmark-entnet-throughput-first5": ("benchmarks_entnet_throughput", entnet_first5_table),
    "benchmark-entnet-throughput-compile-first5": ("benchmarks_entnet_throughput", entnet_compile_first5_table),
    "benchmark-hessian-vs-peers-before-products": ("benchmarks_hessian_vs_peers", hessian_before_products_table),
    "benchmark-hessian-vs-peers": ("benchmarks_hessian_vs_peers", hessian_vs_peers_table),
    "benchmark-entropy-sgd-overhead-cuda": (
        "benchmarks_entropy_sgd_overhead",
        partial(entropy_sgd_overhead_table, device="cuda"),
    ),
    "benchmark-entropy-sgd-overhead-cpu": (
        "benchmarks_entropy_sgd_overhead",
        partial(entropy_sgd_overhead_table, device="cpu"),
    ),
    "benchmark-entropy-sgd-overhead-summary": ("benchmarks_entropy_sgd_overhead", entropy_sgd_overhead_summary),
    "benchmark-halting-ensembles": ("benchmarks_halting_ensembles", halting_ensembles_table),
}
