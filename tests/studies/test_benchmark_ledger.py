"""The benchmark ledgers: ``record`` writes full ledger rows, the RESULTS.md benchmark tables render from hand-written
rows, and the committed ledgers (transcribed from RESULTS.md at 978148c) render that file's numbers."""

from __future__ import annotations

import re
import sys

import pytest

from iclr17.studies.benchmark_ledger import command_line, ledger_path, record
from iclr17.studies.benchmark_tables import (
    RESULTS_TABLES,
    entnet_compile_first5_table,
    entnet_first5_table,
    entnet_packed_table,
    entnet_speed_summary,
    entnet_throughput_table,
    entropy_sgd_overhead_summary,
    entropy_sgd_overhead_table,
    halting_ensembles_table,
    hessian_before_products_table,
    hessian_vs_peers_table,
    lightning_overhead_table,
)
from iclr17.studies.ledger import ROW_KEYS, digest, read
from tests.conftest import REPO_ROOT


def row(params: dict, metrics: dict, commit: str = "abcdef1" + "0" * 33, **keys) -> dict:
    """A hand-written benchmark row."""
    return {
        "study": "benchmarks_x", "config": "benchmarks/x.py", "config_digest": "0" * 16, "params": params,
        "overrides": [], "seed": 0, "commit": commit, "dirty": False, "machine": "m", "command": "python x.py",
        "status": "finished", "steps": None, "fit_seconds": None, "metrics": metrics,
    } | keys  # fmt: skip


# ---- record -------------------------------------------------------------------------------------------------------


def test_record_appends_rows_that_read_back_with_every_key(tmp_path):
    script = tmp_path / "toy_bench.py"
    script.write_text("print('timing')\n")
    for k in (1, 2):
        record("toy_bench", {"k": k}, {"ours_seconds": 0.5 * k, "ratio": 2.0}, "python toy_bench.py", tmp_path,
               seconds=1.5 * k, script=script)  # fmt: skip
    rows = read(ledger_path("toy_bench", tmp_path))
    assert ledger_path("toy_bench", tmp_path) == tmp_path / "benchmarks_toy_bench.jsonl"
    assert [list(r) for r in rows] == [list(ROW_KEYS)] * 2
    first = rows[0]
    assert first["study"] == "benchmarks_toy_bench" and first["config"] == "benchmarks/toy_bench.py"
    assert first["config_digest"] == digest(b"print('timing')\n")
    assert first["params"] == {"k": 1} and first["metrics"] == {"ours_seconds": 0.5, "ratio": 2.0}
    assert (first["overrides"], first["seed"], first["status"], first["steps"]) == ([], 0, "finished", None)
    assert [r["fit_seconds"] for r in rows] == [1.5, 3.0] and first["command"] == "python toy_bench.py"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", first["commit"]) and isinstance(first["dirty"], bool)
    assert "cores" in first["machine"] and "torch " in first["machine"] and "load average" in first["machine"]


def test_record_digests_the_checked_out_script_by_default(tmp_path):
    row_ = record("lightning_overhead", {}, {}, "python benchmarks/lightning_overhead.py", tmp_path)
    assert row_["config_digest"] == digest((REPO_ROOT / "benchmarks/lightning_overhead.py").read_bytes())


def test_command_line_names_the_set_environment_variables(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["benchmarks/x.py", "--k", "2", "--name", "a b"])
    monkeypatch.setenv("ICLR17_DATA_DIR", "/data dir")
    monkeypatch.delenv("UNSET_VARIABLE", raising=False)
    assert command_line("ICLR17_DATA_DIR", "UNSET_VARIABLE") == (
        "ICLR17_DATA_DIR='/data dir' python benchmarks/x.py --k 2 --name 'a b'"
    )
    assert command_line() == "python benchmarks/x.py --k 2 --name 'a b'"


# ---- renderers on hand-written rows -------------------------------------------------------------------------------


def test_lightning_overhead_table_rounds_like_results_md_and_leaves_out_failed_rows():
    rows = [
        row({}, {"peer_seconds": 5.154, "ours_seconds": 5.576, "ratio": 1.08399, "note": "first version"}),
        row({}, {"peer_seconds": 1.0, "ours_seconds": 9.0, "ratio": 9.0}, status="failed"),
        row({}, {"peer_seconds": 6.0, "ours_seconds": 6.5, "ratio": 1.0833}, commit="1234567" + "0" * 33, dirty=True),
    ]
    assert lightning_overhead_table(rows) == (
        "| commit | plain loop (peer) | iclr17 | ratio | note |\n"
        "|---|---|---|---|---|\n"
        "| abcdef1 | 5.15 s | 5.58 s | 1.084 | first version |\n"
        "| 1234567 (dirty) | 6.00 s | 6.50 s | 1.083 | |"
    )


ENTNET = {"gflop_per_step_padded": 1.43, "gflop_per_step_unpadded": 0.68, "share_unpadded": 9.0}


def test_entnet_throughput_table_gives_the_median_of_the_runs_and_each_run():
    runs = [(1700, 42.0, 32.0, 19.5), (1800, 40.0, 33.0, 34.0), (1600, 41.0, 31.0, 20.0)]
    fused = {"memory": "fused", "flops_on": "timed batches", "threads": 2}
    rows = [row(fused, ENTNET | {"questions_per_s": q, "task2_ms": t, "gflops_padded": g, "share_padded": s,
                                 "note": "default"}) for q, t, g, s in runs]  # fmt: skip
    rows.append(row(fused | {"threads": 1}, ENTNET))  # the packed table's
    rows.append(row({"memory": "recorded", "flops_on": "timed batches", "threads": 2},
                    ENTNET | {"questions_per_s": 1000.4, "task2_ms": 100.04, "gflops_padded": 13.2,
                              "share_padded": 9.3}))  # fmt: skip
    rows.append(row({"memory": "fused", "flops_on": "first 5 batches", "no_compile": True}, {}))  # another table's
    table = entnet_throughput_table(rows).splitlines()
    assert table[2] == (
        "| abcdef1 | fused (default) | 1700 (1700, 1800, 1600) | 41.0 (42.0, 40.0, 41.0) | 1.43 / 0.68 "
        "| 32.0 (32.0, 33.0, 31.0) | 20.0% (19.5, 34.0, 20.0) | 9.0% (9.0, 9.0, 9.0) |"
    )
    assert table[3] == "| abcdef1 | recorded | 1000 | 100.0 | 1.43 / 0.68 | 13.2 | 9.3% | 9.0% |"
    assert len(table) == 4


def packed_run(threads, ours, peer, commit="abcdef1" + "0" * 33, python_loops=None, recorded=(40.0, 80.0)):
    """Rows of one run: ``ours`` and ``peer`` are (task 1 ms, task 2 ms, padded share, real-sentence share);
    ``python_loops``: the same memory's (task 1 ms, task 2 ms) with its loops in Python, if it ran; ``recorded``:
    autograd's (task 1 ms, task 2 ms), or None when it did not run."""
    case = {"flops_on": "timed batches", "threads": threads}

    def metrics(ms1, ms2, padded, real):
        return {"questions_per_s": 32e3 / ms1, "task2_ms": ms2, "share_padded": padded, "share_unpadded": real}

    speedups = {"speedup_vs_peer_task1": peer[0] / ours[0], "speedup_vs_peer_task2": peer[1] / ours[1]}
    if python_loops:
        speedups |= {f"speedup_vs_python_loops_task{n}": python_loops[n - 1] / ours[n - 1] for n in (1, 2)}
    rows = [
        row(case | {"memory": "fused"}, speedups | metrics(*ours), commit=commit),
        row(case | {"memory": "fused padded (48fa93d)"}, metrics(*peer), commit=commit),
    ]
    if recorded:
        rows.append(row(case | {"memory": "recorded"}, metrics(*recorded, 1.0, 1.0), commit=commit))
    return rows


def test_entnet_packed_table_pairs_each_run_with_its_own_peer_and_splits_on_threads():
    run = packed_run
    rows = run(2, (16.0, 32.0, 30.0, 15.0), (20.0, 48.0, 20.0, 10.0)) + run(
        1, (10.0, 20.0, 50.0, 20.0), (30.0, 50.0, 20.0, 8.0)
    )
    rows += run(2, (14.0, 28.0, 40.0, 17.0), (21.0, 42.0, 30.0, 13.0))
    rows += run(2, (8.0, 16.0, 60.0, 30.0), (16.0, 64.0, 15.0, 7.5), commit="1234567" + "0" * 33,
                python_loops=(10.4, 17.6))  # fmt: skip
    table = entnet_packed_table(rows).splitlines()
    assert table[2] == (
        "| abcdef1 | 2 | 2 | 2143 (2000, 2286) / 1562 (1600, 1524) | 1.38x (1.25, 1.50) | 30.0 (32.0, 28.0) / "
        "45.0 (48.0, 42.0) | 1.50x (1.50, 1.50) | 35.0% (30.0, 40.0) / 25.0% (20.0, 30.0) | "
        "16.0% (15.0, 17.0) / 11.5% (10.0, 13.0) | |"
    )
    assert table[3] == (
        "| abcdef1 | 1 | 1 | 3200 / 1067 | 3.00x | 20.0 / 50.0 | 2.50x | 50.0% / 20.0% | 20.0% / 8.0% | |"
    )
    assert table[4] == (  # C++ loops: 10.4 / 8 and 17.6 / 16 faster than the Python loops
        "| 1234567 | 2 | 1 | 4000 / 2000 | 2.00x | 16.0 / 64.0 | 4.00x | 60.0% / 15.0% | 30.0% / 7.5% | 1.30x / 1.10x |"
    )
    assert len(table) == 5


def test_entnet_speed_summary_is_the_latest_commits_runs_at_the_threads_asked():
    rows = packed_run(2, (16.0, 32.0, 30.0, 15.0), (20.0, 48.0, 20.0, 10.0), commit="1" * 40)  # an older commit
    latest = "2" * 40
    rows += packed_run(2, (20.0, 40.0, 28.0, 14.0), (22.0, 58.0, 20.0, 10.0), latest, recorded=(30.0, 87.0))
    rows += packed_run(1, (10.0, 20.0, 50.0, 20.0), (30.0, 50.0, 20.0, 8.0), latest)
    rows += packed_run(2, (17.0, 40.0, 29.0, 14.5), (24.0, 62.0, 20.0, 10.0), latest, recorded=None)  # not its next
    rows += packed_run(2, (20.0, 40.0, 30.0, 13.0), (26.0, 60.0, 20.0, 10.0), latest, recorded=(34.0, 83.0))
    # vs autograd, the two runs that had it (the middle one borrowing the next run's would give 34/17 = 2.0): task 1
    # 30/20 = 1.5 and 34/20 = 1.7, task 2 87/40 and 83/40 (2.175, 2.075); vs the peer, medians over the three runs:
    # of 22/20, 24/17, 26/20 1.30 and of 58/40, 62/40, 60/40 1.50
    assert entnet_speed_summary(rows) == (
        "2222222, 2 threads, 3 runs: a training step 1.5-1.7x (task 1) and 2.1-2.2x (task 2) faster than autograd's, "
        "1.30x / 1.50x faster than the fused memory before issue 15 (medians); on task 2 29.0% of the matmul "
        "ceiling counting padding sentences, 14.0% counting only the stories' own"
    )
    assert entnet_speed_summary(rows, threads=1).startswith("2222222, 1 thread, 1 run: a training step 4.0x (task 1)")
    assert entnet_speed_summary(rows, threads=4) == "(no packed-memory runs at 4 threads)"
    older = entnet_speed_summary(rows, commit="1111111")  # a commit named: its runs, not the latest
    assert older.startswith("1111111, 2 threads, 1 run: a training step 2.5x (task 1) and 2.5x (task 2) faster")
    assert entnet_speed_summary(rows, commit="3333333") == "(no packed-memory runs at 2 threads of 3333333)"


FIRST5 = {"questions_per_s": 3494, "task1_ms": 9.2, "task2_ms": 33.8, "share_published": 11.1,
          "share_padded_rescaled": 9.8, "share_unpadded_rescaled": 4.7}  # fmt: skip


def test_entnet_first5_tables_name_the_ceiling_once_per_run_and_split_on_the_compile_modes():
    eager = {"flops_on": "first 5 batches", "no_compile": True}
    rows = [
        row(eager | {"memory": "fused"}, FIRST5 | {"gflop_per_step_first5": 1.62, "gflops_padded_rescaled": 42.1,
                                                   "ceiling_gflops": 431.94, "note": "the default"}),
        row(eager | {"memory": "recorded"}, FIRST5 | {"gflop_per_step_first5": 1.62, "gflops_padded_rescaled": 23.5,
                                                      "ceiling_gflops": 431.94}),
        row({"flops_on": "first 5 batches", "no_compile": False, "memory": "fused + compile"},
            FIRST5 | {"ceiling_gflops": 430.1}),
    ]  # fmt: skip
    table = entnet_first5_table(rows).splitlines()
    assert table[2:] == [
        "| abcdef1 (431.9 GFLOP/s) | fused (the default) | 3494 (9.2) | 33.8 | 1.62 | 42.1 | 11.1% / 9.8% / 4.7% |",
        "| abcdef1 | recorded | 3494 (9.2) | 33.8 | 1.62 | 23.5 | 11.1% / 9.8% / 4.7% |",
    ]
    assert entnet_compile_first5_table(rows).splitlines()[2:] == [
        "| fused + compile | 3494 (9.2) | 33.8 | 11.1% / 9.8% / 4.7% |"
    ]


def hessian_rows(products: bool, commit: str) -> list[dict]:
    """One run of the Hessian benchmark: (a) on an MLP, (b), (c); (a) with or without a product timed alone."""
    top = {"ours_steps": 12, "ours_hvps": 12, "ours_seconds": 0.0514, "pyhessian_power_seconds": 0.2571,
           "pyhessian_power_hvps": 106, "pyhessian_power_over_ours": 5.002, "eigenthings_lanczos_seconds": 0.067,
           "eigenthings_lanczos_hvps": 14, "eigenthings_lanczos_over_ours": 1.31}  # fmt: skip
    if products:
        top |= {"ours_product_ms": 3.791, "pyhessian_product_ms": 3.52, "product_cost_ratio": 1.077}
    mlp = {"net": "MLP 784-128-10", "parameters": 101770, "dtype": "float32"}
    return [
        row({"part": "c", "net": "MLP 784-4-10", "parameters": 3190, "dtype": "float64"},
            {"ours_seconds": 2.879, "floor_seconds": 2.0, "ratio": 1.4395}, commit=commit),
        row({"part": "a"} | mlp, top, commit=commit),
        row({"part": "b", "steps": 80, "probes": 2} | mlp,
            {"ours_seconds": 1.095, "pyhessian_density_seconds": 0.929, "pyhessian_density_over_ours": 0.848,
             "pyhessian_density_l1_to_ours": 2.43e-06}, commit=commit),
        row({"part": "b", "steps": 80, "probes": 2} | mlp, {"ours_seconds": 1.0}, commit=commit),  # no peer
    ]  # fmt: skip


def test_hessian_tables_split_runs_on_the_product_timing_and_order_the_parts():
    rows = hessian_rows(False, "1" * 40) + hessian_rows(True, "2" * 40)
    assert hessian_before_products_table(rows).splitlines()[2:] == [
        "| (a) top-5, MLP 784-128-10 (101,770 parameters) | Lanczos 12 steps: 0.051 s, 12 products "
        "| PyHessian power: 0.257 s, 106 products | 5.00x faster | >= 3x: met |",
        "| | | hessian-eigenthings Lanczos: 0.067 s, 14 products | 1.31x faster | |",
        "| (b) density, MLP, 80 Lanczos steps x 2 probes | SLQ 1.095 s | PyHessian density 0.929 s (L1 distance "
        "between densities 2.4e-6) | 0.85 (PyHessian 15% faster) | equal steps: compared |",
        "| (c) exact, MLP 784-4-10 (3,190 parameters), float64 | 2.879 s | floor `torch.func.hessian` + `eigvalsh`: "
        "2.000 s | 1.440 | <= 1.3: not met |",
    ]
    assert hessian_vs_peers_table(rows).splitlines()[2:] == [
        "| 2222222 | (a) top-5, MLP: end to end | Lanczos 12 steps, 0.051 s | power, 0.257 s, 106 products "
        "| 5.00x faster (target >= 3x: met) |",
        "| 2222222 | (a) top-5, MLP: one product | 3.79 ms | 3.52 ms | ours costs 1.08x PyHessian's |",
        "| 2222222 | (b) density, MLP, 80 steps x 2 probes | SLQ 1.095 s | density 0.929 s (L1 between densities "
        "2.4e-6) | 0.85 |",
        "| 2222222 | (c) exact, MLP 784-4-10, float64 | 2.879 s | floor `torch.func.hessian` + `eigvalsh` 2.000 s "
        "| 1.440 (target <= 1.3: not met) |",
    ]


def test_entropy_sgd_table_keeps_one_device_and_names_each_models_size_once():
    times = {"plain_ms": 34.44, "noisy_ms": 37.5, "noisy_ratio": 1.0884, "silent_ms": 34.3, "silent_ratio": 0.996}
    rows = [
        row({"model": "mnistfc", "parameters": 1867786, "L": 20, "device": "cuda"}, times),
        row({"model": "LeNet-BN", "parameters": "132 k", "L": 20, "device": "cuda"}, times),
        row({"model": "mnistfc", "parameters": 1867786, "L": 20, "device": "cuda"}, times),
        row({"model": "mnistfc", "L": 20, "device": "cpu"}, times | {"plain_ms": 210.8}),
    ]
    gpu = entropy_sgd_overhead_table(rows, device="cuda").splitlines()
    assert gpu[0].startswith("| commit | model | 21 SGD steps (peer) | EntropySGD, eps = 1e-4 | ratio |")
    models = [line.split(" | ")[1] for line in gpu[2:]]
    assert models == ["mnistfc (1.87 M parameters)", "LeNet-BN (132 k parameters)", "mnistfc"]
    assert gpu[2] == "| abcdef1 | mnistfc (1.87 M parameters) | 34.4 ms | 37.5 ms | 1.088 | 34.3 ms | 0.996 |"
    assert entropy_sgd_overhead_table(rows, device="cpu").splitlines()[2:] == [
        "| abcdef1 | mnistfc | 210.8 ms | 37.5 ms | 1.088 | 34.3 ms | 0.996 |"
    ]


def test_entropy_sgd_summary_gives_each_devices_latest_run_in_one_line():
    def timed(ratio):
        return {"plain_ms": 10.0, "noisy_ms": 10.0 * ratio, "noisy_ratio": ratio, "silent_ms": 10.0, "silent_ratio": 1}

    old, new = "1" * 40, "2" * 40
    rows = [
        row({"model": "mnistfc", "L": 20, "device": "cuda"}, timed(1.2), commit=old),
        row({"model": "mnistfc", "L": 20, "device": "cpu"}, timed(1.5), commit=old),
        row({"model": "mnistfc", "L": 20, "device": "cuda"}, timed(1.04), commit=new),
        row({"model": "LeNet-BN", "L": 20, "device": "cuda"}, timed(1.0456) | {"note": "BN"}, commit=new),
        row({"model": "LeNet-BN", "L": 20, "device": "cuda"}, timed(9.0), commit=new, status="failed"),
    ]
    rows[1]["machine"] = "dev: the 2-core machine; load 1.5"
    assert entropy_sgd_overhead_summary(rows) == (
        "cuda on m, 2222222: mnistfc 1.040, LeNet-BN (BN) 1.046; cpu on dev, 1111111: mnistfc 1.500"
    )
    assert entropy_sgd_overhead_summary(rows[-1:]) == "(no runs)"


def test_halting_table_shows_each_command_and_each_systems_target_once():
    rows = [
        row({"system": "spin-glass", "k": 256}, {"ours_seconds": 0.26, "peer_seconds": 2.254, "speedup": 8.669,
                                                 "target_speedup": 20}, command="python h.py spin-glass --k 256"),
        row({"system": "spin-glass", "k": 32}, {"ours_seconds": 1.14, "peer_seconds": 1.49, "speedup": 1.31,
                                                "target_speedup": 20}, command="python h.py spin-glass --k 32"),
        row({"system": "mlp", "k": 64}, {"ours_seconds": 6.69, "peer_seconds": 65.32, "speedup": 9.76,
                                         "target_speedup": 5.0}, command="python h.py mlp --k 64"),
    ]  # fmt: skip
    assert halting_ensembles_table(rows).splitlines()[2:] == [
        "| abcdef1 | `python h.py spin-glass --k 256` | 0.26 s | 2.25 s | 8.7x | 20x (at K = 256, N = 200) |",
        "| abcdef1 | `python h.py spin-glass --k 32` | 1.14 s | 1.49 s | 1.3x | |",
        "| abcdef1 | `python h.py mlp --k 64` | 6.69 s | 65.32 s (64 Lightning fits) | 9.8x | 5x (K = 64) |",
    ]


# ---- the committed ledgers ----------------------------------------------------------------------------------------

# Literals copied from RESULTS.md at 978148c (bold marks dropped), one or more per benchmark table there.
RESULTS_MD_978148C = {
    "benchmark-lightning-overhead": [
        "| 983b8c4 | 5.15 s | 5.58 s | 1.084 | first version |",
        "| dd8ed94 | 5.41 s | 5.71 s | 1.055 | step values logged only on logger steps (one run of this version gave "
        "1.019) |",
    ],
    "benchmark-entnet-throughput": [
        "| fused (default) | 1742 (1742, 1779, 1632) | 41.8 (42.2, 41.8, 40.3) | 1.43 / 0.68 | 32.6 (32.0, 32.6, 32.8) "
        "| 19.9% (19.5, 19.9, 34.0) | 9.6% (9.4, 9.6, 16.6) |",
        "| recorded (autograd) | 1320 (1320, 1417, 1291) | 100.4 (83.7, 100.4, 121.7) | 1.44 / 0.68 |",
    ],
    "benchmark-entnet-throughput-first5": [
        "| 3b95cd5 (431.9 GFLOP/s) | fused (the default: hand-written backward) | 3494 (9.2) | 33.8 | 1.62 | 42.1 "
        "| 11.1% / 9.8% / 4.7% |",
        "| 9e19398 | recorded | 2129 (15.0) | 59.9 | 1.62 | 24.0 | 6.9% / 6.1% / 2.9% |",
    ],
    "benchmark-entnet-throughput-compile-first5": ["| recorded + compile | 3952 (8.1) | 62.9 | 6.0% / 5.3% / 2.5% |"],
    "benchmark-hessian-vs-peers-before-products": [
        "| PyHessian power: 0.257 s, 106 products | 5.00x faster | >= 3x: met |",
        "| | | hessian-eigenthings Lanczos: 0.067 s, 14 products | 1.31x faster | |",
        "| PyHessian power: 2.290 s, 89 products | 6.07x faster | >= 3x: met |",
        "| SLQ 1.095 s | PyHessian density 0.929 s (L1 distance between densities 2.4e-6) "
        "| 0.85 (PyHessian 15% faster) | equal steps: compared |",
        "| (c) exact, MLP 784-4-10 (3,190 parameters), float64 | 2.879 s | floor `torch.func.hessian` + `eigvalsh`: "
        "2.608 s | 1.104 | <= 1.3: met |",
    ],
    "benchmark-hessian-vs-peers": [
        "| (a) top-5, MLP: end to end | Lanczos 12 steps, 0.059 s | power, 0.393 s, 106 products | 6.70x faster "
        "(target >= 3x: met) |",
        "| (a) top-5, small CNN: one product | 45.84 ms | 45.30 ms | ours costs 1.01x PyHessian's |",
        "| (b) density, MLP, 80 steps x 2 probes | SLQ 1.424 s | density 1.442 s (L1 between densities 2.3e-6) "
        "| 1.01 |",
        "| 5.338 s | floor `torch.func.hessian` + `eigvalsh` 5.036 s | 1.060 (target <= 1.3: met) |",
    ],
    "benchmark-entropy-sgd-overhead-cuda": [
        "| 1aa3720 | mnistfc (1.87 M parameters) | 34.4 ms | 37.5 ms | 1.088 | 34.3 ms | 0.996 |",
        "| 681893e | LeNet-BN | 51.3 ms | 53.6 ms | 1.045 | 50.8 ms | 0.990 |",
    ],
    "benchmark-entropy-sgd-overhead-cpu": ["| mnistfc | 210.8 ms | 327.8 ms | 1.555 | 218.5 ms | 1.037 |"],
    "benchmark-halting-ensembles": [
        "| `python benchmarks/halting_ensembles.py spin-glass --k 256 --n 32 --eps 0.01 --repeats 3` | 0.26 s | 2.25 s "
        "| 8.7x | 20x (at K = 256, N = 200) |",
        "| `ICLR17_DATA_DIR=../shared/data python benchmarks/halting_ensembles.py mlp --k 64 --repeats 1` | 6.69 s "
        "| 65.32 s (64 Lightning fits) | 9.8x | 5x (K = 64) |",
    ],
}


@pytest.mark.parametrize("name", sorted(RESULTS_MD_978148C))
def test_the_committed_ledgers_render_results_md_numbers(name):
    """The migrated rows (runs measured since then are left out) still give RESULTS.md's numbers of 978148c."""
    stem, renderer = RESULTS_TABLES[name]
    rows = read(REPO_ROOT / "results" / "ledgers" / f"{stem}.jsonl")
    rows = [r for r in rows if r["machine"].endswith("(transcribed from RESULTS.md at 978148c)")]
    assert rows
    assert all(re.fullmatch(r"[0-9a-f]{40}", r["commit"]) and r["status"] == "finished" for r in rows)
    table = renderer(rows)
    for literal in RESULTS_MD_978148C[name]:
        assert literal in table, f"{name}: {literal!r} not in\n{table}"
