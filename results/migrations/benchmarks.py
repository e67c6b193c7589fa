"""One-off migration (issue 14): RESULTS.md's benchmark tables at 978148c, and the Hessian benchmark's raw outputs,
into the benchmark ledgers ``results/ledgers/benchmarks_<script>.jsonl``.

    .venv/bin/python results/migrations/benchmarks.py      # from the repository root; rewrites the five ledgers

Everything is read from git at 978148c (so it still works once the raw files are deleted) and parsed: the table
rows of RESULTS.md, the facts the prose around a table states for its runs (commit, command, ceiling, threads),
and ``results/hessian/hessian_vs_peers_{606ebf7,9c0d815}.txt`` (the Hessian rows are those outputs, every number
printed, checked against the two tables). What the parse finds is asserted, so a changed source fails loudly.

How the fields map. ``commit``: the full hash of the commit the table row or its paragraph names (``git
rev-parse``; the Hessian outputs' file names). ``machine``: ``dev`` or ``h200-host`` with RESULTS.md's description
of that machine, the conditions its paragraph gives, and "(transcribed from RESULTS.md at 978148c)". ``command``:
the command RESULTS.md shows for the table (for the halting rows, the row's own). ``config_digest``: the digest of
the script's text at ``commit``. ``params``: the case (model, memory mode, K, N ...) and the script arguments the
command or the paragraph states; a thread count only where RESULTS.md gives one. ``fit_seconds``: null (RESULTS.md
gives medians only). ``metrics``: the table's numbers under the names the scripts now record (``--ledger``); prose
in a cell becomes a ``note`` metric (e.g. "first version"); bold marks are dropped. The EntNet throughput table of
issue 12 gives each of its three runs in brackets: one row per run and memory mode. Rescaled EntNet numbers (the
tables before issue 12) keep ``_rescaled`` names: RESULTS.md computed them, no run measured them.
"""

from __future__ import annotations

import re
import shlex
import statistics
import subprocess
from pathlib import Path
from typing import Any

from iclr17.studies.benchmark_ledger import ledger_path
from iclr17.studies.benchmark_tables import TARGET_SCOPE
from iclr17.studies.ledger import ROW_KEYS, append, digest, read

SOURCE = "978148c"
ROOT = Path(__file__).resolve().parents[2]
LEDGERS = ROOT / "results" / "ledgers"
TRANSCRIBED = f"(transcribed from RESULTS.md at {SOURCE})"
NUMBER = r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout


def full(commit: str) -> str:
    return git("rev-parse", commit).strip()


RESULTS = git("show", f"{SOURCE}:RESULTS.md")
LINES = RESULTS.splitlines()


def one_line(text: str) -> str:
    return " ".join(text.split())


def machines() -> dict[str, str]:
    """RESULTS.md's machine list: name -> description."""
    found = re.findall(r"^- \*\*([\w-]+)\*\*: (.*?)(?=\n- \*\*|\n\n)", RESULTS, re.M | re.S)
    assert {name for name, _ in found} == {"dev", "h200-host"}, found
    return {name: one_line(text) for name, text in found}


MACHINES = machines()


def machine(name: str, conditions: str) -> str:
    """``name``, the first sentence of RESULTS.md's description of it, the run's conditions, the source."""
    return f"{name}: {MACHINES[name].split('. ')[0]}; {conditions} {TRANSCRIBED}"


def table(header: str) -> tuple[int, list[list[str]]]:
    """The line index of the table whose header line is ``header``, and its rows' cells (bold marks removed)."""
    (start,) = [i for i, line in enumerate(LINES) if line == header]
    assert set(LINES[start + 1].strip("|").split("|")) == {"---"}, LINES[start + 1]
    rows = []
    for line in LINES[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().replace("**", "") for cell in line.strip().strip("|").split("|")])
    return start, rows


def prose(start: int, after: bool = False) -> str:
    """The text between ``start`` (a table's header line) and the heading before it, or, with ``after``, between
    the table's end and the next heading; on one line."""
    if after:
        end = next(i for i in range(start, len(LINES)) if LINES[i].startswith("#"))
        return one_line("\n".join(line for line in LINES[start:end] if not line.startswith("|")))
    begin = max(i for i in range(start) if LINES[i].startswith("#"))
    return one_line("\n".join(LINES[begin + 1 : start]))


def commands(text: str) -> list[str]:
    """The benchmark commands shown (in backticks) in ``text``."""
    return [c for c in re.findall(r"`([^`]*benchmarks/\w+\.py[^`]*)`", text)]


def search(pattern: str, text: str) -> re.Match:
    match = re.search(pattern, text)
    assert match, pattern
    return match


def number(cell: str, unit: str = "") -> float:
    """The number of a cell like ``5.15 s`` or ``8.7x``."""
    match = re.fullmatch(rf"({NUMBER}){re.escape(unit)}", cell.strip())
    assert match, (cell, unit)
    return float(match.group(1))


def flag(command: str, name: str, kind: type = int) -> Any:
    words = shlex.split(command)
    return kind(words[words.index(name) + 1])


def row(benchmark: str, commit: str, params: dict, metrics: dict, command: str, machine_text: str) -> dict[str, Any]:
    commit = full(commit)
    values = {
        "study": f"benchmarks_{benchmark}", "config": f"benchmarks/{benchmark}.py",
        "config_digest": digest(subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:benchmarks/{benchmark}.py"],
                                               capture_output=True, check=True).stdout),
        "params": params, "overrides": [], "seed": 0, "commit": commit, "dirty": False, "machine": machine_text,
        "command": command, "status": "finished", "steps": None, "fit_seconds": None, "metrics": metrics,
    }  # fmt: skip
    return {key: values[key] for key in ROW_KEYS}


def labelled(cell: str) -> tuple[str, str]:
    """``fused (the default)`` -> ``("fused", "the default")``."""
    match = re.fullmatch(r"(.*?)(?: \((.*)\))?", cell)
    return match.group(1), match.group(2) or ""


# ---- benchmarks/lightning_overhead.py -----------------------------------------------------------------------------


def lightning_overhead() -> list[dict]:
    start, cells = table("| commit | plain loop (peer) | iclr17 | ratio | note |")
    (command,) = commands(prose(start, after=True))[:1]
    batches = int(search(r"\((\d+) batches of 128\)", prose(start)).group(1))
    params = {"batches": batches, "repeats": flag(command, "--repeats")}
    text = machine("dev", "thread count not recorded")
    rows = []
    for commit, peer, ours, ratio, note in cells:
        metrics = {"peer_seconds": number(peer, " s"), "ours_seconds": number(ours, " s"), "ratio": number(ratio)}
        rows.append(row("lightning_overhead", commit, params, metrics | {"note": note}, command, text))
    return rows


# ---- benchmarks/entnet_throughput.py ------------------------------------------------------------------------------


def runs_cell(cell: str, unit: str = "") -> list[float]:
    """``1742 (1742, 1779, 1632)`` -> the runs, after checking that the first number is their median."""
    match = re.fullmatch(rf"({NUMBER}){re.escape(unit)} \((.*)\)", cell)
    assert match, cell
    runs = [float(v) for v in match.group(2).split(", ")]
    assert statistics.median(runs) == float(match.group(1)), cell
    return runs


def entnet_issue12() -> list[dict]:
    start, cells = table(
        "| memory | task 1: questions/s | task 2: ms/step | GFLOP/step padded / unpadded | GFLOP/s padded "
        "| share of ceiling, padded | unpadded |"
    )
    text = prose(start)
    commit = search(r"quiet dev \(load average ([\d.]+) before the runs; (\w+),", text)
    command = one_line(commands(text)[-1])
    threads = int(search(r"--no-compile` \((\d+) threads\)", text).group(1))
    after = prose(start, after=True)
    ceilings = [float(v) for v in search(rf"ceiling measured in these runs was ({NUMBER}), ({NUMBER}) and ({NUMBER})",
                                         after).groups()]  # fmt: skip
    conditions = f"quiet, load average {commit.group(1)} before the runs, {threads} threads, three runs in a row"
    rows_by_run: list[list[dict]] = [[] for _ in ceilings]
    for memory_cell, questions, task2, flops, gflops, share, unpadded in cells:
        memory, note = labelled(memory_cell)
        padded_flops, unpadded_flops = (float(v) for v in flops.split(" / "))
        columns = [runs_cell(questions), runs_cell(task2), runs_cell(gflops), runs_cell(share, "%"),
                   runs_cell(unpadded, "%")]  # fmt: skip
        for run, (q, t2, g, s, u) in enumerate(zip(*columns, strict=True)):
            params = {"memory": memory, "steps": flag(command, "--steps"), "threads": threads, "no_compile": True,
                      "flops_on": "timed batches"}  # fmt: skip
            metrics = {"questions_per_s": q, "task2_ms": t2, "gflop_per_step_padded": padded_flops,
                       "gflop_per_step_unpadded": unpadded_flops, "gflops_padded": g, "share_padded": s,
                       "share_unpadded": u, "ceiling_gflops": ceilings[run], "note": note}  # fmt: skip
            rows_by_run[run].append(
                row("entnet_throughput", commit.group(2), params, metrics, command, machine("dev", conditions))
            )
    return [r for run in rows_by_run for r in run]


def first5_metrics(task1: str, task2: str, shares: str) -> dict[str, float]:
    questions, task1_ms = search(rf"^({NUMBER}) \(({NUMBER})\)$", task1).groups()
    published, padded, unpadded = (number(s, "%") for s in shares.split(" / "))
    return {"questions_per_s": float(questions), "task1_ms": float(task1_ms), "task2_ms": number(task2),
            "share_published": published, "share_padded_rescaled": padded,
            "share_unpadded_rescaled": unpadded}  # fmt: skip


def entnet_first5() -> list[dict]:
    start, cells = table(
        "| commit (ceiling) | memory | task 1: questions/s (ms/step) | task 2: ms/step | GFLOP/step (first 5 batches) "
        "| GFLOP/s (rescaled) | share of ceiling: as published / padded / unpadded |"
    )
    text = prose(start)
    command = one_line(commands(text)[-1])
    threads = int(search(r"Session 3, dev \((\d+) threads, quiet machine\)", text).group(1))
    rows, ceilings = [], {}
    for commit_cell, memory_cell, task1, task2, flops, gflops, shares in cells:
        commit, ceiling = search(rf"^(\w+)(?: \(({NUMBER}) GFLOP/s\))?$", commit_cell).groups()
        ceilings.setdefault(commit, float(ceiling) if ceiling else None)
        memory, note = labelled(memory_cell)
        params = {"memory": memory, "steps": flag(command, "--steps"), "threads": threads, "no_compile": True,
                  "flops_on": "first 5 batches"}  # fmt: skip
        metrics = {**first5_metrics(task1, task2, shares), "gflop_per_step_first5": number(flops),
                   "gflops_padded_rescaled": number(gflops), "ceiling_gflops": ceilings[commit],
                   "note": note}  # fmt: skip
        rows.append(row("entnet_throughput", commit, params, metrics, command,
                        machine("dev", f"session 3, quiet, {threads} threads")))  # fmt: skip
    return rows


def entnet_compile_first5() -> list[dict]:
    start, cells = table(
        "| memory | task 1: questions/s (ms/step) | task 2: ms/step "
        "| share of ceiling: as published / padded / unpadded |"
    )
    text = prose(start)
    found = search(rf"\(`(python benchmarks/entnet_throughput\.py[^`]*)`, (\w+), dev, a third run; ceiling ({NUMBER}) "
                   "GFLOP/s;", text)  # fmt: skip
    command, commit, ceiling = found.group(1), found.group(2), float(found.group(3))
    rows = []
    for memory_cell, task1, task2, shares in cells:
        memory, note = labelled(memory_cell)
        params = {"memory": memory, "steps": flag(command, "--steps"), "no_compile": False,
                  "flops_on": "first 5 batches"}  # fmt: skip
        metrics = {**first5_metrics(task1, task2, shares), "ceiling_gflops": ceiling, "note": note}
        conditions = "session 3, a third run after the two eager ones; threads not stated"
        rows.append(row("entnet_throughput", commit, params, metrics, command, machine("dev", conditions)))
    return rows


# ---- benchmarks/hessian_vs_peers.py -------------------------------------------------------------------------------

PREFIX = {  # the printed contender -> its metrics' prefix, as the script records them
    "ours (Lanczos)": "ours", "PyHessian (power)": "pyhessian_power", "eigenthings (Lanczos)": "eigenthings_lanczos",
    "eigenthings (power)": "eigenthings_power", "ours (SLQ)": "ours", "PyHessian (density)": "pyhessian_density",
    "eigenthings (SLQ)": "eigenthings_slq",
}  # fmt: skip


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(", ")]


def top_metrics(block: str, params: dict) -> dict[str, Any]:
    """Part (a): the ARPACK reference, each contender's line, the product timed alone (since issue 12)."""
    ref = search(rf"float64, (\d+) products, ({NUMBER}) s\): largest \[(.*)\], smallest \[(.*)\]", block)
    metrics = {"reference_products": int(ref.group(1)), "reference_seconds": float(ref.group(2)),
               "reference_largest": floats(ref.group(3)), "reference_smallest": floats(ref.group(4))}  # fmt: skip
    params["rtol"] = float(search(rf"on the top 5 <= ({NUMBER})", block).group(1))
    line = rf"^  (\w+ \(\w+\)) +(steps|tol) ({NUMBER}) +(\d+)" + rf" +({NUMBER})" * 4 + r"(  \(did not reach rtol\))?$"
    for m in re.finditer(line, block, re.M):
        key, kind = PREFIX[m.group(1)], m.group(2)
        metrics |= {f"{key}_{kind}": int(m.group(3)) if kind == "steps" else float(m.group(3)),
                    f"{key}_hvps": int(m.group(4)), f"{key}_max_rel_err": float(m.group(5)),
                    f"{key}_seconds": float(m.group(6)), f"{key}_ms_per_hvp": float(m.group(7)),
                    f"{key}_reached": m.group(9) is None}  # fmt: skip
        if key != "ours":
            metrics[f"{key}_over_ours"] = float(m.group(8))
    product = rf"ours ({NUMBER}) ms, PyHessian ({NUMBER}) ms \(ours ({NUMBER})x its cost\); ours needs ({NUMBER})x"
    if found := re.search(product, block):
        names = ("ours_product_ms", "pyhessian_product_ms", "product_cost_ratio", "fewer_products")
        metrics |= {name: float(value) for name, value in zip(names, found.groups(), strict=True)}
    assert {"ours_seconds", "pyhessian_power_seconds"} <= set(metrics), block
    return metrics


def density_metrics(block: str, params: dict) -> dict[str, Any]:
    """Part (b): the common grid and each contender's line."""
    steps, probes = search(r": (\d+) Lanczos steps x (\d+) Rademacher probes", block).groups()
    params |= {"steps": int(steps), "probes": int(probes)}
    grid = search(rf"common grid (\d+) points on \[({NUMBER}), ({NUMBER})\], sigma ({NUMBER})", block)
    metrics = {"grid_points": int(grid.group(1)), "grid_low": float(grid.group(2)), "grid_high": float(grid.group(3)),
               "sigma": float(grid.group(4))}  # fmt: skip
    metrics["reference_lambda_max"] = float(search(rf"reference lambda_max ({NUMBER})", block).group(1))
    for m in re.finditer(r"^  (\w+ \(\w+\)) +(\d+)" + rf" +({NUMBER})" * 5 + "$", block, re.M):
        key = PREFIX[m.group(1)]
        metrics |= {f"{key}_hvps": int(m.group(2)), f"{key}_seconds": float(m.group(3)),
                    f"{key}_trace": float(m.group(6)), f"{key}_max_node": float(m.group(7))}  # fmt: skip
        if key != "ours":
            metrics |= {f"{key}_over_ours": float(m.group(4)), f"{key}_l1_to_ours": float(m.group(5))}
    assert {"ours_seconds", "pyhessian_density_seconds"} <= set(metrics), block
    return metrics


def exact_metrics(block: str, params: dict) -> dict[str, Any]:
    """Part (c): the floor's and our runs, the Hessian alone, their agreement and the ratio."""
    metrics: dict[str, Any] = {}
    for side in ("floor", "ours"):
        m = search(rf"  {side} \([^)]*\): +median ({NUMBER}) s +runs \[(.*)\]", block)
        metrics |= {f"{side}_seconds": float(m.group(1)), f"{side}_runs": floats(m.group(2))}
    alone = search(rf"Hessian alone: floor ({NUMBER}) s, ours ({NUMBER}) s; .* = ({NUMBER})", block)
    metrics |= {"floor_hessian_seconds": float(alone.group(1)), "ours_hessian_seconds": float(alone.group(2)),
                "max_difference_over_max_lambda": float(alone.group(3))}  # fmt: skip
    metrics["ratio"] = float(search(rf"ratio \(ours / floor\): ({NUMBER})", block).group(1))
    return metrics


def hessian_output(text: str) -> list[tuple[dict, dict]]:
    """The ``(params, metrics)`` of each comparison in a raw output of ``benchmarks/hessian_vs_peers.py``."""
    threads = int(search(r"(\d+) thread\(s\)", text).group(1))
    samples = int(search(r"MNIST: (\d+) training images", text).group(1))
    cases = []
    for block in re.split(r"\n\n(?=\([abc]\) )", text)[1:]:
        head = block.splitlines()[0]
        net, parameters = search(r"^\([abc]\) [^,]+, (.+?) \(([\d,]+) parameters\)", head).groups()
        params = {"part": head[1], "net": net, "parameters": int(parameters.replace(",", "")), "samples": samples,
                  "dtype": search(r"(float\d+)$", head).group(1), "threads": threads}  # fmt: skip
        parse = {"a": top_metrics, "b": density_metrics, "c": exact_metrics}[head[1]]
        cases.append((params, parse(block, params)))
    repeats = len(next(m["floor_runs"] for p, m in cases if p["part"] == "c"))  # the runs (c) lists: --repeats
    return [({**params, "repeats": repeats}, metrics) for params, metrics in cases]


def hessian_vs_peers() -> list[dict]:
    first, _ = table("| comparison | ours | peer | ratio | target |")
    second, _ = table("| comparison | ours | PyHessian | ratio |")
    before, again = prose(first), prose(second)
    (command,) = commands(before)
    assert "(the same command," in again, again
    conditions = {
        "606ebf7": search(r"on dev \((1 torch thread; other jobs shared the CPU)\)", before).group(1),
        "9c0d815": search(r"at 9c0d815 \(the same command, (quiet dev, 1 torch thread)", again).group(1),
    }
    rows = []
    for commit, condition in conditions.items():
        path = f"results/hessian/hessian_vs_peers_{commit}.txt"
        assert f"`{path}`" in before + again, path
        text = git("show", f"{SOURCE}:{path}")
        versions = search(r"^Hessian benchmark: (.*)$", text.splitlines()[0]).group(1)
        for params, metrics in hessian_output(text):
            rows.append(row("hessian_vs_peers", commit, params, metrics, command,
                            machine("dev", f"{condition}; {versions}")))  # fmt: skip
    return rows


# ---- benchmarks/entropy_sgd_overhead.py ---------------------------------------------------------------------------


def entropy_metrics(plain: str, noisy: str, noisy_ratio: str, silent: str, silent_ratio: str) -> dict[str, float]:
    return {"plain_ms": number(plain, " ms"), "noisy_ms": number(noisy, " ms"), "noisy_ratio": number(noisy_ratio),
            "silent_ms": number(silent, " ms"), "silent_ratio": number(silent_ratio)}  # fmt: skip


def entropy_sgd_overhead() -> list[dict]:
    columns = "| 21 SGD steps (peer) | EntropySGD, eps = 1e-4 | ratio | EntropySGD, eps = 0 | ratio |"
    gpu, gpu_cells = table("| commit | model " + columns)
    cpu, cpu_cells = table("| model " + columns)
    gpu_text, cpu_text = prose(gpu), prose(cpu)
    L = int(search(r"\(L = (\d+), so 21 forward/backward passes\)", gpu_text).group(1))
    (gpu_command,) = [one_line(c) for c in commands(gpu_text)]
    found = search(r"\(`(python benchmarks/entropy_sgd_overhead\.py --device cpu[^`]*)`, commit (\w+), (load average "
                   r"about \d+ from one other job)\)", cpu_text)  # fmt: skip
    cpu_command, cpu_commit, cpu_load = found.groups()
    gpu_conditions = search(r"on (h200-host's GPU, alone on the machine each time)", gpu_text).group(1)
    gpu_machine = machine("h200-host", gpu_conditions)
    rows = []
    for commit, model_cell, *numbers in gpu_cells:
        model, size = search(r"^(\S+)(?: \((.*) parameters\))?$", model_cell).groups()
        params = {"model": model, **({"parameters": size} if size else {}), "L": L, "device": "cuda",
                  "repeats": flag(gpu_command, "--repeats")}  # fmt: skip
        rows.append(row("entropy_sgd_overhead", commit, params, entropy_metrics(*numbers), gpu_command, gpu_machine))
    for model, *numbers in cpu_cells:
        params = {"model": model, "L": L, "device": "cpu", "repeats": flag(cpu_command, "--repeats")}
        rows.append(row("entropy_sgd_overhead", cpu_commit, params, entropy_metrics(*numbers), cpu_command,
                        machine("dev", cpu_load)))  # fmt: skip
    return rows


# ---- benchmarks/halting_ensembles.py ------------------------------------------------------------------------------


def halting_ensembles() -> list[dict]:
    start, cells = table("| command | vectorised | one at a time | speed-up | target |")
    text = prose(start)
    commit = search(r"on the code committed at (\w+)", text).group(1)
    load = search(r"(measured while the host was quiet \(load about \d+)", text).group(1)
    conditions = f"{load}); thread count not known (RESULTS.md: the commands set none)"
    rows, targets = [], {}
    for command_cell, ours, peer, speedup, target in cells:
        command = command_cell.strip("`")
        words = shlex.split(command)
        system = words[words.index("benchmarks/halting_ensembles.py") + 1]
        params = {"system": system, "k": flag(command, "--k")}
        params |= {"n": flag(command, "--n"), "eps": flag(command, "--eps", float)} if system == "spin-glass" else {}
        params["repeats"] = flag(command, "--repeats")
        if target:
            value, scope = search(rf"^({NUMBER})x(.*)$", target).groups()
            assert scope == TARGET_SCOPE[system], (scope, system)
            targets[system] = float(value)
        peer_seconds, lightning = search(rf"^({NUMBER}) s(?: \((\d+) Lightning fits\))?$", peer).groups()
        assert (lightning is not None) == (system == "mlp") and int(lightning or params["k"]) == params["k"], peer
        metrics = {"ours_seconds": number(ours, " s"), "peer_seconds": float(peer_seconds),
                   "speedup": number(speedup, "x"), "target_speedup": targets[system]}  # fmt: skip
        rows.append(row("halting_ensembles", commit, params, metrics, command, machine("dev", conditions)))
    return rows


def main() -> None:
    ledgers = {
        "lightning_overhead": lightning_overhead(),
        "entnet_throughput": entnet_issue12() + entnet_first5() + entnet_compile_first5(),
        "hessian_vs_peers": hessian_vs_peers(),
        "entropy_sgd_overhead": entropy_sgd_overhead(),
        "halting_ensembles": halting_ensembles(),
    }
    for benchmark, rows in ledgers.items():
        path = ledger_path(benchmark, LEDGERS)
        path.unlink(missing_ok=True)
        for r in rows:
            append(path, r)
        print(f"{path.relative_to(ROOT)}: {len(read(path))} rows")


if __name__ == "__main__":
    main()
