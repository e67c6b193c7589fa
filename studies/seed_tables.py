"""Tables of seeds for the generic ``FitStudy`` studies of Entropy-SGD (arXiv:1611.01838 section 5, Table 1):
its MNIST rows (mnistfc and LeNet-BN, Entropy-SGD and their Adam baselines, with mnistfc's Adam baseline at the
full 100 epochs) and its char-LSTM row, each a pure function of one ledger's rows.

    iclr17 seeds --config configs/studies/entropy_sgd_table1_mnistfc_entropy.yaml run
    iclr17 seeds --config configs/studies/entropy_sgd_char_lstm_adam.yaml run

The MNIST study configs (``entropy_sgd_table1_*.yaml``) all write the ledger ``entropy_sgd_mnist_table1`` and the
char-LSTM ones ``entropy_sgd_char_lstm``; a row's variant (one name per config and preset) is its table row. Failed
runs never enter a table; a run cut by a time cap is counted and labelled ``capped`` (with its cap, read from the
row's command by :func:`time_cap`, which the EntNet tables use too).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from iclr17.studies.ledger import current_runs, per_evaluation

Rows = list[dict[str, Any]]

# variant -> (model, optimizer, effective epochs (x L / x (L + 1)), paper): Table 1 of arXiv:1611.01838 and the
# configs' headers; the paper's values are test error over 5 seeds. The variants are the study configs'
# (configs/studies/entropy_sgd_table1_*.yaml), one name per config and preset, so one ledger holds them all.
TABLE1_MNIST = {
    "mnistfc_entropy_v5": ("mnistfc", "Entropy-SGD, L = 20 (`paper_v5`)", "120 / 126", "1.37 +- 0.03%"),
    "mnistfc_entropy_lua": ("mnistfc", "Entropy-SGD, L = 20 (`official_lua`)", "120 / 126",
                            "(the Lua code made the paper's numbers)"),
    "mnistfc_adam": ("mnistfc", "Adam (`configs/classifier/mnistfc.yaml`)", "100", "1.39 +- 0.03%"),
    "lenet_entropy_v5": ("LeNet-BN", "Entropy-SGD, L = 20 (`paper_v5`)", "80 / 84", "0.50 +- 0.01%"),
    "lenet_adam": ("LeNet-BN", "Adam (`lenet_adam.yaml`)", "100", "0.51 +- 0.01%"),
    # the authors' setup (Lua layouts, 60k training images, (x - 126) / 126, the test set as validation):
    # configs/studies/entropy_sgd_table1_*_lua_*.yaml; LeNet with BN statistics from test or training images
    "mnistfc_lua_entropy": ("mnistfc (Lua, authors' data)", "Entropy-SGD, L = 20 (`official_lua`)", "120 / 126",
                            "1.37 +- 0.03%"),
    "mnistfc_lua_adam": ("mnistfc (Lua, authors' data)", "Adam", "100", "1.39 +- 0.03%"),
}  # fmt: skip
# The fits evaluated twice (FitStudy evaluations bn_test and bn_train: BatchNorm statistics re-estimated on the
# test or the training images before evaluating): variant -> (model, ...) as above; each gives the table rows
# <variant>_bn_test and <variant>_bn_train, "BN statistics of the ... images" after the model.
BN_EVALUATED = {
    # the Lua mnistfc from May 2017 on (BatchNorm after each hidden ReLU, Torch7's init)
    "mnistfc_lua_bn_entropy": ("mnistfc (Lua with BN, authors' data)", "Entropy-SGD, L = 20 (`official_lua`)",
                               "120 / 126", "1.37 +- 0.03%"),
    "mnistfc_lua_bn_adam": ("mnistfc (Lua with BN, authors' data)", "Adam", "100", "1.39 +- 0.03%"),
    "lenet_lua_t7init_entropy": ("LeNet (Lua, authors' init and data)", "Entropy-SGD, L = 20 (`official_lua`)",
                                 "80 / 84", "0.50 +- 0.01%"),
    "lenet_lua_t7init_adam": ("LeNet (Lua, authors' init and data)", "Adam", "100", "0.51 +- 0.01%"),
    # the same before Torch7's BatchNorm init: scales started at 1 (PyTorch's default)
    "lenet_lua_entropy": ("LeNet (Lua, BN scales from 1)", "Entropy-SGD, L = 20 (`official_lua`)", "80 / 84",
                          "0.50 +- 0.01%"),
    "lenet_lua_adam": ("LeNet (Lua, BN scales from 1)", "Adam", "100", "0.51 +- 0.01%"),
}  # fmt: skip
BN_EVALUATIONS = {"bn_test": "BN statistics of the test images", "bn_train": "BN statistics of the training images"}


def _bn_evaluation_rows(fits: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """The table rows of ``fits`` under both BN statistics: per net (in order), its variants with the test images'
    statistics, then with the training images'."""
    rows = {}
    for net in dict.fromkeys(model for model, *_ in fits.values()):
        for evaluation, statistics_text in BN_EVALUATIONS.items():
            for variant, (model, *rest) in fits.items():
                if model == net:
                    rows[f"{variant}_{evaluation}"] = (f"{model}, {statistics_text}", *rest)
    return rows


TABLE1_MNIST |= _bn_evaluation_rows(BN_EVALUATED)
# variant -> (optimizer, paper: per-char cross-entropy in nats, which the spec calls "perplexity per char")
TABLE1_CHAR_LSTM = {
    "char_adam": ("Adam (lr 2e-3)", "1.226 +- 0.01 at 40-50 epochs"),
    "char_entropy_adam": ("Entropy-Adam, L = 5", "1.217 +- 0.005 at 25 effective epochs"),
}
MNISTFC_ADAM = "mnistfc_adam"
PAPER_MNISTFC_ADAM = TABLE1_MNIST[MNISTFC_ADAM][3]


def time_cap(command: str) -> str | None:
    """The ``--trainer.max_time`` (``DD:HH:MM:SS``) in ``command`` as ``"55-min cap"``, or None without one."""
    found = re.findall(r"--trainer\.max_time[= ](\d+):(\d+):(\d+):(\d+)", command)
    if not found:
        return None
    days, hours, minutes, seconds = map(int, found[-1])
    return f"{days * 1440 + hours * 60 + minutes + seconds / 60:g}-min cap"


def capped_label(row: dict[str, Any]) -> str:
    """``"capped (3.5-min cap)"`` for a capped row (``"capped"`` if its command names no cap)."""
    cap = time_cap(row["command"])
    return f"capped ({cap})" if cap else "capped"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_std_text(values: list[float], digits: int = 2) -> str:
    """``mean +- std`` to ``digits`` decimals, the mean alone for one value."""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} +- {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def not_shown_lines(counts: Mapping[str, int]) -> list[str]:
    """The note under a table that counts its runs that are not full (capped) by label; none if none."""
    return ["", f"Not shown (not full runs): {counted(counts)}."] if counts else []


def not_full(rows: Rows, label: Callable[[dict[str, Any]], str]) -> Counter[str]:
    """``<label of the params> <status>`` -> runs, for the current runs that did not finish: the capped ones
    (:func:`current_runs` leaves failed rows out: failed runs never enter a table)."""
    return Counter(f"{label(r['params'])} {r['status']}" for r in current_runs(rows) if r["status"] != "finished")


def counted(counts: Mapping[str, int]) -> str:
    """``a capped x 1, b failed x 2``: counts by label, in label order."""
    return ", ".join(f"{k} x {v}" for k, v in sorted(counts.items()))


def with_not_shown(parts: list[str], counts: Mapping[str, int], empty: str = "(no finished runs)") -> str:
    """An inline summary: ``parts`` joined by ``; ``, then the runs that are not full (capped) by label when
    there are any; ``empty`` in place of the parts when there are none."""
    shown = "; ".join(parts) if parts else empty
    return f"{shown}; not shown (not full runs): {counted(counts)}" if counts else shown


def plural(n: int, word: str) -> str:
    """``1 seed``, ``3 seeds``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def seeds_text(seeds: list[int]) -> str:
    """``seed 4``, ``seeds 0, 1, 2``: the seeds in the order given."""
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def span(values: list[float], text=lambda v: f"{v:.1f}") -> str:
    """``lo-hi`` of ``values`` as ``text`` writes them, or one value when both ends read the same."""
    low, high = text(min(values)), text(max(values))
    return low if low == high else f"{low}-{high}"


def error_percent(row: dict[str, Any]) -> float:
    """Test error in percent from a classifier row's ``test/acc``."""
    return 100 * (1 - row["metrics"]["test/acc"])


def header(columns: list[str]) -> list[str]:
    """A markdown table's first two lines."""
    return ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]


def _kept(rows: Rows) -> Rows:
    return sorted(per_evaluation(current_runs(rows)), key=lambda r: r["seed"])


def _values(rows: Rows, value, digits: int) -> str:
    """``"1.26, 1.30 (capped)"``: each run's value in seed order, a capped run labelled where not all are."""
    mixed = len({r["status"] for r in rows}) > 1
    return ", ".join(
        f"{value(r):.{digits}f}" + (" (capped)" if mixed and r["status"] == "capped" else "") for r in rows
    )


def mnistfc_adam_markdown(rows: Rows) -> str:
    """mnistfc + Adam at the full 100 epochs (Table 1's baseline row): each seed's test error, mean +- std."""
    runs = [r for r in _kept(rows) if _variant(r) == MNISTFC_ADAM]
    lines = header(["seed", "steps", "stopped by", "test error"])
    for r in runs:
        stop = capped_label(r) if r["status"] == "capped" else "the epoch budget"
        steps = "" if r["steps"] is None else f"{r['steps']:,}"
        lines.append(f"| {r['seed']} | {steps} | {stop} | {error_percent(r):.2f}% |")
    if len(runs) > 1:
        mean, std = mean_std([error_percent(r) for r in runs])
        lines.append(f"| mean +- std | | | {mean:.2f} +- {std:.2f}% |")
    lines.append(f"| paper (Adam) | | | {PAPER_MNISTFC_ADAM} |")
    return "\n".join(lines)


def _variant(row: dict[str, Any]) -> str:
    """The row's table row: its variant, and its evaluation after an underscore if it has one."""
    return "_".join(filter(None, (row["params"].get("variant", ""), row["params"].get("evaluation"))))


def _groups(rows: Rows, order: list[str]) -> dict[str, Rows]:
    """Non-failed rows by variant: those of ``order`` in its order, then the others by name."""
    groups: dict[str, Rows] = {}
    for row in _kept(rows):
        groups.setdefault(_variant(row), []).append(row)
    return {v: groups[v] for v in [*order, *sorted(set(groups) - set(order))] if v in groups}


def table1_markdown(rows: Rows) -> str:
    """Entropy-SGD Table 1, MNIST rows: per variant (a config and preset) the test error over seeds (mean +- std,
    then each seed's), the paper's, and the mean wall time of a fit."""
    lines = header(["model", "optimizer (preset)", "effective epochs (x L / x (L + 1))", "test error", "seeds", "paper",
                    "wall per run"])  # fmt: skip
    for variant, runs in _groups(rows, list(TABLE1_MNIST)).items():
        model, optimizer, epochs, paper = TABLE1_MNIST.get(variant, (runs[0]["config"], variant, "", ""))
        mean, std = mean_std([error_percent(r) for r in runs])
        spread = f" +- {std:.2f}" if len(runs) > 1 else ""  # one seed has no spread to show
        seconds = [r["fit_seconds"] for r in runs if r["fit_seconds"] is not None]
        wall = f"{statistics.mean(seconds):.0f} s" if seconds else ""
        values = _values(runs, error_percent, 2)
        if all(r["status"] == "capped" for r in runs):  # no run reached the epoch budget: say so on the row
            values += "; " + ", ".join(dict.fromkeys(capped_label(r) for r in runs))
        lines.append(
            f"| {model} | {optimizer} | {epochs} | {mean:.2f}{spread}% ({values}) | {len(runs)} | {paper} | {wall} |"
        )
    return "\n".join(lines)


def variant_summary(rows: Rows, variant: str) -> str:
    """One row of :func:`table1_markdown` in one line, for a sentence or a table cell: the variant's test error,
    mean +- std over its seeds, and how many seeds, the capped ones counted with their caps:
    ``1.27 +- 0.03% (3 seeds, 1 capped: 3.5-min cap)``, ``1.37% (seed 1)``."""
    runs = _groups(rows, [variant]).get(variant)
    if not runs:
        return f"(no runs of {variant})"
    seeds = f"{len(runs)} seeds" if len(runs) > 1 else f"seed {runs[0]['seed']}"
    capped = [r for r in runs if r["status"] == "capped"]
    if capped:
        caps = ", ".join(dict.fromkeys(time_cap(r["command"]) or "no cap named" for r in capped))
        seeds += f", {len(capped)} capped: {caps}" if len(runs) > 1 else f", capped: {caps}"
    return f"{mean_std_text([error_percent(r) for r in runs])}% ({seeds})"


def char_lstm_markdown(rows: Rows) -> str:
    """Entropy-SGD Table 1, char-LSTM row: per variant (a config) each seed's test loss (nats per char),
    perplexity and bits per char, the epochs it reached, and the paper's number."""
    lines = header(["optimizer", "reached", "test loss (nats per char)", "test perplexity per char", "bits per char",
                    "paper"])  # fmt: skip
    for variant, runs in _groups(rows, list(TABLE1_CHAR_LSTM)).items():
        optimizer, paper = TABLE1_CHAR_LSTM.get(variant, (runs[0]["config"], ""))
        reached = ", ".join(dict.fromkeys(  # each distinct outcome once, in seed order
            f"{r['metrics']['epochs']} epochs" + (f", {capped_label(r)}" if r["status"] == "capped" else "")
            for r in runs
        ))  # fmt: skip
        cells = [_values(runs, lambda r, m=m: r["metrics"][m], 3 if m == "test/loss" else 2)
                 for m in ("test/loss", "test/ppl", "test/bits_per_char")]  # fmt: skip
        lines.append(f"| {optimizer} | {reached} | " + " | ".join(cells) + f" | {paper} |")
    return "\n".join(lines)


# The Table 1 variants the README cites in a sentence: each the inline table ``entropy-sgd-mnist.<variant>``.
SUMMARISED_VARIANTS = (
    "mnistfc_entropy_v5", "mnistfc_entropy_lua", "mnistfc_adam", "lenet_entropy_v5", "lenet_adam",
    "mnistfc_lua_entropy", "mnistfc_lua_bn_entropy_bn_test", "lenet_lua_t7init_entropy_bn_test",
    "lenet_lua_t7init_adam_bn_test", "lenet_lua_entropy_bn_test", "lenet_lua_adam_bn_test",
)  # fmt: skip

RESULTS_TABLES = {
    "mnistfc-adam-100-epochs": ("entropy_sgd_mnist_table1", mnistfc_adam_markdown),
    "entropy-sgd-table1-mnist": ("entropy_sgd_mnist_table1", table1_markdown),
    "entropy-sgd-char-lstm": ("entropy_sgd_char_lstm", char_lstm_markdown),
    **{f"entropy-sgd-mnist.{variant}": ("entropy_sgd_mnist_table1", partial(variant_summary, variant=variant))
       for variant in SUMMARISED_VARIANTS},
}  # fmt: skip
