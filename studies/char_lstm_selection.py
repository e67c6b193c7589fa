"""Entropy-Adam's step sizes for the char-LSTM row of Entropy-SGD's Table 1 (arXiv:1611.01838 section 5), searched
on validation, then the selected point at full length beside Adam (docs/papers/entropy_sgd.md, "The char-LSTM step
sizes, searched on validation").

    iclr17 entropy-sgd-char-lstm-selected --config configs/studies/entropy_sgd_char_lstm_selected.yaml run
    iclr17 entropy-sgd-char-lstm-selected --config configs/studies/entropy_sgd_char_lstm_selected.yaml status
    iclr17 entropy-sgd-char-lstm-selected --config configs/studies/entropy_sgd_char_lstm_selected.yaml table

The paper never published Entropy-Adam's inner step eta' or its outer learning rate, so the study picks them the
only honest way, on validation, in two phases read from its ledger (as the bAbI study's seeds, ``babi_table``):

1. the grid: every inner step eta' x outer learning rate of the Entropy-Adam config, one seed, a fixed short epoch
   budget (``--trainer.max_epochs``, never a time cap, so the runs are comparable), each run's row in the ledger;
2. once every grid run has finished: the point with the lowest final validation loss (:func:`select`: ties go to
   the first in grid order, a diverged run never wins, test numbers are never read) at the config's full length for
   each seed, and Adam's config at its full length for the same seeds beside it.

:func:`selected_markdown` draws the grid (validation loss per point, the selected one marked) and the full-length
comparison from the ledger's rows alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from iclr17.studies.fit_study import FitStudy, fit_config_digest
from iclr17.studies.ledger import current_runs, read, row_key
from iclr17.studies.runner import Run
from iclr17.studies.seed_tables import Rows, capped_label, header, mean_std_text, seeds_text

ETA_PRIME = "--model.init_args.optimizer.init_args.eta_prime"
LR = "--model.init_args.optimizer.init_args.lr"
ENTROPY, ADAM = "char_entropy_adam", "char_adam"  # the full-length variants, as in the entropy_sgd_char_lstm ledger
ETA_PRIMES = (0.001, 0.002, 0.004)  # the default grid: configs/studies/entropy_sgd_char_lstm_selected.yaml's axes
LRS = (0.0025, 0.005, 0.01)
L = 5  # configs/entropy_sgd/char_lstm_entropy_adam.yaml's L: a pass is L + 1 minibatches per outer step
# The paper's char-LSTM numbers (the authors' figure data; arXiv:1611.01838 Table 1): per-char cross-entropy in nats
PAPER = {
    ENTROPY: "val 1.213, test 1.217 at 25 effective epochs (x L)",
    ADAM: "val 1.224, test 1.226 at 40 epochs",
}


class CharLstmSelectionStudy(FitStudy):
    """Entropy-Adam char-LSTM: step sizes searched on validation, then the best at full length beside Adam.

    Args:
        fit_config: the Entropy-Adam fit config (a path or a shipped config's name).
        baseline_config: the Adam fit config run at full length beside the selected point.
        eta_primes: the grid's inner (Langevin) Adam steps eta' (sorted ascending: the grid order).
        lrs: the grid's outer Adam learning rates (sorted ascending: the grid order, within each eta').
        grid_epochs: every grid run's epoch budget (``--trainer.max_epochs``; Lightning epochs, i.e. passes).
        grid_seed: the grid runs' ``seed_everything`` (one seed; apart from ``seeds``, so no reported run is one
            that chose the point).
        seeds: ``seed_everything`` of the full-length runs, Entropy-Adam at the selected point and Adam alike.
        max_time: a ``--trainer.max_time`` cap (``DD:HH:MM:SS``) of the full-length runs only (a run it cuts is
            recorded ``capped`` and tried again by the next ``run``); grid runs are never capped.
        extra: overrides for every run that are not part of a run's identity (e.g. the accelerator).
        **kwargs: :class:`~iclr17.studies.runner.Study`'s arguments (name, ledger_dir, runs_dir).
    """

    default_name = "entropy_sgd_char_lstm_selected"

    def __init__(
        self,
        fit_config: str = "entropy_sgd/char_lstm_entropy_adam.yaml",
        baseline_config: str = "entropy_sgd/char_lstm_adam.yaml",
        eta_primes: list[float] | None = None,
        lrs: list[float] | None = None,
        grid_epochs: int = 5,
        grid_seed: int = 0,
        seeds: list[int] | None = None,
        max_time: str | None = None,
        extra: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fit_config=fit_config, seeds=seeds or [1, 2, 3], max_time=max_time, extra=extra, **kwargs)
        if grid_epochs < 1:
            raise ValueError(f"grid_epochs must be >= 1, got {grid_epochs}")
        self.baseline_config, self.grid_epochs, self.grid_seed = baseline_config, grid_epochs, grid_seed
        self.eta_primes = sorted(eta_primes or ETA_PRIMES)
        self.lrs = sorted(lrs or LRS)

    def grid_runs(self) -> list[Run]:
        """Phase 1: every eta' x outer lr, in grid order (eta' ascending, then lr ascending), ``grid_epochs`` long."""
        config_digest = fit_config_digest(self.config)
        return [
            Run(self.config, config_digest,
                (f"{ETA_PRIME}={json.dumps(eta)}", f"{LR}={json.dumps(lr)}", f"--trainer.max_epochs={self.grid_epochs}",
                 f"--seed_everything={self.grid_seed}"),
                self.grid_seed, {"phase": "grid", "eta_prime": eta, "lr": lr})
            for eta in self.eta_primes
            for lr in self.lrs
        ]  # fmt: skip

    def full_runs(self, point: Run) -> list[Run]:
        """Phase 2: the grid run ``point``'s step sizes at the config's full length for every seed, then Adam."""
        eta, lr = point.params["eta_prime"], point.params["lr"]
        entropy_digest, adam_digest = fit_config_digest(self.config), fit_config_digest(self.baseline_config)
        entropy = [
            Run(self.config, entropy_digest,
                (f"{ETA_PRIME}={json.dumps(eta)}", f"{LR}={json.dumps(lr)}", f"--seed_everything={seed}"),
                seed, {"phase": "full", "variant": ENTROPY, "eta_prime": eta, "lr": lr})
            for seed in self.seeds
        ]  # fmt: skip
        adam = [
            Run(self.baseline_config, adam_digest, (f"--seed_everything={seed}",), seed,
                {"phase": "full", "variant": ADAM})
            for seed in self.seeds
        ]  # fmt: skip
        return entropy + adam

    def selected(self) -> Run | None:
        """:func:`select` over the grid and the ledger: the selected grid run, or None while phase 1 runs."""
        return select(self.grid_runs(), read(self.ledger))

    def planned(self) -> list[Run]:
        """The grid; once every grid run has finished, also the full-length runs of the selected point and Adam."""
        grid = self.grid_runs()
        point = select(grid, read(self.ledger))
        return grid if point is None else grid + self.full_runs(point)

    def has_time_cap(self, run: Run) -> bool:
        """``max_time`` caps the full-length runs only (the grid's short runs have their own epoch budget)."""
        return bool(self.max_time) and run.params["phase"] == "full"

    def run(self, **kwargs: Any) -> Rows:
        """Run what is planned; if that completes the grid, run the full-length runs it selects in the same call.

        Args:
            **kwargs: :meth:`Study.run`'s arguments (workers, threads, engine, ...); ``force`` is refused (it would
                rerun the grid and could change the selection under finished full-length runs: rerun the study
                under another ``name``, a new ledger, instead).
        """
        if kwargs.get("force"):
            raise ValueError(f"{self.cli_name()}: force would rerun the grid under the full-length runs it selected; "
                             "rerun the study under another name (a new ledger) instead")  # fmt: skip
        in_grid = self.selected() is None
        rows = super().run(**kwargs)
        if in_grid and self.selected() is not None:
            rows += super().run(**kwargs)
        return rows

    def status(self) -> dict[str, list[str]]:
        """Print and return the planned runs by state (done, missing, capped, failed), then the phase: the grid
        points still to finish, or the selected point; ``waiting`` lists the full-length runs the grid holds back."""
        report = super().status()
        grid = self.grid_runs()
        rows = read(self.ledger)
        point = select(grid, rows)
        if point is None:
            finished = {row_key(r) for r in rows if r["status"] == "finished"}
            left = [run for run in grid if run.key not in finished]
            waiting = [f"Entropy-Adam at the selected point seed {s}" for s in self.seeds]
            waiting += [f"Adam seed {s}" for s in self.seeds]
            points = "; ".join(_point(r.params) for r in left)
            print(f"{self.name}: phase 1 (grid), {len(grid) - len(left)} of {len(grid)} grid runs finished; "
                  f"{len(waiting)} full-length runs wait for the grid points {points}")  # fmt: skip
            report |= {"phase": ["grid"], "selected": [], "waiting": waiting}
        else:
            val = _val(_finished_rows(grid, rows)[point.key])
            print(f"{self.name}: phase 2 (full length), selected {_point(point.params)} (val loss {val:.4f} after "
                  f"{self.grid_epochs} passes)")  # fmt: skip
            report |= {"phase": ["full"], "selected": [_point(point.params)], "waiting": []}
        return report

    def markdown(self, rows: Rows) -> str:
        return selected_markdown(rows, self.eta_primes, self.lrs)


def _point(params: dict[str, Any]) -> str:
    return f"eta' {params['eta_prime']:g}, lr {params['lr']:g}"


def _val(row: dict[str, Any]) -> float:
    """A row's final validation loss; a missing or non-finite one (a diverged run) as +inf, so it never wins."""
    value = row["metrics"].get("val/loss")
    return value if isinstance(value, int | float) and math.isfinite(value) else math.inf


def _lowest(rows: Rows) -> int:
    """The index of the row with the lowest final validation loss (:func:`_val`); ties: the first. The one selection
    rule, which :func:`select` applies to the grid's runs and :func:`lowest_so_far` to the ledger's rows."""
    return min(range(len(rows)), key=lambda i: (_val(rows[i]), i))


def _finished_rows(runs: list[Run], rows: Rows) -> dict[str, dict[str, Any]]:
    """The last finished row of each of ``runs`` by run key (rows of other keys, e.g. an edited config, ignored)."""
    keys = {run.key for run in runs}
    return {row_key(r): r for r in rows if r["status"] == "finished" and row_key(r) in keys}


def select(grid: list[Run], rows: Rows) -> Run | None:
    """The grid run with the lowest final validation loss (``val/loss``; ties: the first in ``grid``'s order; a
    missing or non-finite loss counts as +inf), or None until every grid run has a finished row in ``rows``.

    Only validation is read: the test metrics of the rows never enter the choice."""
    finished = _finished_rows(grid, rows)
    if not grid or any(run.key not in finished for run in grid):
        return None
    return grid[_lowest([finished[run.key] for run in grid])]


# ---- the table ----------------------------------------------------------------------------------------------------


def _grid_rows(rows: Rows) -> Rows:
    return [r for r in current_runs(rows) if r["params"].get("phase") == "grid"]


def _grid_point(row: dict[str, Any]) -> tuple[float, float]:
    return row["params"]["eta_prime"], row["params"]["lr"]


def _grid_progress(
    rows: Rows, eta_primes: Sequence[float], lrs: Sequence[float]
) -> tuple[set[tuple[float, float]], set[tuple[float, float]]]:
    """The points of the grid ``eta_primes`` x ``lrs``, and those of them with a finished grid row in ``rows``."""
    points = {(eta, lr) for eta in eta_primes for lr in lrs}
    return points, {_grid_point(r) for r in _grid_rows(rows) if r["status"] == "finished"} & points


def selected_point(
    rows: Rows, eta_primes: Sequence[float] = ETA_PRIMES, lrs: Sequence[float] = LRS
) -> tuple[float, float] | None:
    """``(eta', lr)`` the study selects from the ledger's rows over the grid ``eta_primes`` x ``lrs``: once every point
    of that grid has a finished grid row, the lowest among them (:func:`select`'s rule); None before that.

    Only the current grid selects: full-length rows of a point an earlier, smaller grid selected do not (they are the
    study's selection again only if the grown grid selects their point, and the study plans new full-length runs
    otherwise)."""
    points, finished = _grid_progress(rows, eta_primes, lrs)
    if not points or finished != points:
        return None
    return lowest_so_far([r for r in _grid_rows(rows) if _grid_point(r) in points])


def lowest_so_far(rows: Rows) -> tuple[float, float] | None:
    """``(eta', lr)`` of the finished grid row with the lowest validation loss (ties: eta' then lr ascending;
    non-finite losses never win), or None without grid rows: what leads while the grid is still running."""
    grid = sorted(_grid_rows(rows), key=_grid_point)
    if not grid:
        return None
    best = grid[_lowest(grid)]
    return best["params"]["eta_prime"], best["params"]["lr"]


def _reached(row: dict[str, Any]) -> str:
    epochs = row["metrics"]["epochs"]
    if row["params"].get("variant") == ENTROPY:
        text = f"{epochs} passes = {epochs * L / (L + 1):g} effective epochs (x L)"
    else:
        text = f"{epochs} epochs"
    return text + (f", {capped_label(row)}" if row["status"] == "capped" else "")


def grid_edge_note(point: tuple[float, float], eta_primes: Sequence[float], lrs: Sequence[float]) -> str | None:
    """A sentence naming each axis on which the selected ``(eta', lr)`` is the smallest or largest value of the grid
    (the best step sizes may then lie outside it), or None when it is inside on both axes."""
    edges = []
    for name, value, axis in (("eta'", point[0], eta_primes), ("lr", point[1], lrs)):
        if len(axis) > 1 and value in (min(axis), max(axis)):
            edges.append(f"{name} {value:g} is the {'largest' if value == max(axis) else 'smallest'} tried")
    if not edges:
        return None
    return f"The selection is at the grid's edge ({'; '.join(edges)}): the best step sizes may lie outside the grid."


def selected_markdown(rows: Rows, eta_primes: Sequence[float] = ETA_PRIMES, lrs: Sequence[float] = LRS) -> str:
    """Two tables from the ledger's rows. The grid: final validation loss (nats per char) per inner step eta' (rows)
    and outer learning rate (columns), the selected point in bold; a point that did not finish is empty. The
    full-length runs: Entropy-Adam at the selected point and Adam, per variant the seeds, the epochs reached, mean +-
    std over seeds of the final validation and test loss (nats per char), test perplexity per char and bits per char,
    and the paper's numbers. Failed runs never enter; capped runs are labelled.

    The selected point is the current grid's (:func:`selected_point`: the lowest once every point of ``eta_primes`` x
    ``lrs`` has finished; "its full-length runs are still to come" until they exist); before that, the lowest point so
    far, marked as such. Full-length Entropy-Adam rows at a point that only an earlier, smaller grid selected are
    listed after Adam, labelled so. Under the grid, a selection on its edge is said so (:func:`grid_edge_note`).

    Args:
        rows: the ledger's rows.
        eta_primes, lrs: the grid's axes (default: those of the shipped study config, which RESULTS.md's table draws).
    """
    if not any(r["status"] != "failed" for r in rows):
        return "(no finished runs)"
    grid = _grid_rows(rows)
    full = _full_runs(rows)
    best, selected = selected_point(rows, eta_primes, lrs), True
    if best is not None:
        mark = "(selected)" if (ENTROPY, best) in full else "(selected; its full-length runs are still to come)"
    else:
        points, finished = _grid_progress(rows, eta_primes, lrs)
        count = f"{len(finished)} of {len(points)} grid points finished"
        best, mark, selected = lowest_so_far(grid), f"(lowest so far: {count}, no selection yet)", False
    row_etas = sorted({r["params"]["eta_prime"] for r in grid})
    column_lrs = sorted({r["params"]["lr"] for r in grid})
    cells = {_grid_point(r): r for r in grid}
    passes = ", ".join(map(str, sorted({r["metrics"]["epochs"] for r in grid})))
    run = f" after {passes} passes, seed {grid[0]['seed']}" if grid else ""
    lines = header([f"val loss{run}: inner eta' (rows), outer lr (columns)", *(f"{lr:g}" for lr in column_lrs)])
    for eta in row_etas:
        row_cells = []
        for lr in column_lrs:
            row = cells.get((eta, lr))
            text = "" if row is None else f"{row['metrics'].get('val/loss', math.nan):.4f}"
            if row is not None and row["status"] == "capped":
                text += f" ({capped_label(row)})"
            row_cells.append(f"**{text}** {mark}" if (eta, lr) == best else text)
        lines.append(f"| {eta:g} | " + " | ".join(row_cells) + " |")
    note = grid_edge_note(best, eta_primes, lrs) if selected and best is not None else None
    lines += ["", note] if note else []
    if not full:
        return "\n".join(lines)
    columns = ["optimizer", "step sizes", "seeds", "reached", "val loss", "test loss", "test perplexity per char",
               "test bits per char", "the paper's (nats per char)"]  # fmt: skip
    lines += ["", *header(columns)]
    current = (ENTROPY, best) if selected else None
    earlier = sorted(key for key in full if key[0] == ENTROPY and key != current)
    others = sorted(key for key in full if key[0] not in (ENTROPY, ADAM))
    for key in [k for k in (current, (ADAM, None)) if k in full] + earlier + others:
        variant, runs = key[0], full[key]
        if variant == ENTROPY:
            chosen = "selected on validation" if key == current else "selected on validation by an earlier grid"
            name, steps = f"Entropy-Adam, L = {L}, {chosen}", _point(runs[0]["params"])
        else:
            name, steps = ("Adam", "lr 0.002") if variant == ADAM else (variant, "")
        reached = ", ".join(dict.fromkeys(_reached(r) for r in runs))
        values = [mean_std_text([r["metrics"][m] for r in runs], 2 if m.endswith(("ppl", "char")) else 3)
                  for m in ("val/loss", "test/loss", "test/ppl", "test/bits_per_char")]  # fmt: skip
        seeds = ", ".join(str(r["seed"]) for r in runs)
        lines.append("| " + " | ".join([name, steps, seeds, reached, *values, PAPER.get(variant, "")]) + " |")
    return "\n".join(lines)


def selected_summary(rows: Rows, eta_primes: Sequence[float] = ETA_PRIMES, lrs: Sequence[float] = LRS) -> str:
    """:func:`selected_markdown`'s comparison in one line, for a sentence or a table cell: Entropy-Adam at the
    study's selected point and Adam, each with its seeds, how far they ran, and the final validation and test loss
    (nats per char, mean +- std over seeds); what is still missing said so."""
    best = selected_point(rows, eta_primes, lrs)
    if best is None:
        return "(no selection yet: the step-size grid has not finished)"
    full = _full_runs(rows)
    parts = []
    for key, name in (((ENTROPY, best), f"Entropy-Adam, L = {L}, selected on validation"), ((ADAM, None), "Adam")):
        runs = full.get(key)
        steps = _point({"eta_prime": best[0], "lr": best[1]}) if key[0] == ENTROPY else "lr 0.002"
        if not runs:
            parts.append(f"{name} ({steps}): no full-length runs yet")
            continue
        seeds = seeds_text([r["seed"] for r in runs])
        reached = ", ".join(dict.fromkeys(_reached(r) for r in runs))
        val, test = (mean_std_text([r["metrics"][m] for r in runs], 3) for m in ("val/loss", "test/loss"))
        parts.append(f"{name} ({steps}), {seeds}, {reached}: val {val}, test {test}")
    return "; ".join(parts) + " (nats per char)"


def _full_runs(rows: Rows) -> dict[tuple[str, Any], Rows]:
    """(variant, Entropy-Adam's point or None) -> its full-length rows (failed ones never), by seed."""
    full: dict[tuple[str, Any], Rows] = {}
    for row in sorted(current_runs(rows), key=lambda r: r["seed"]):
        params = row["params"]
        if params.get("phase") == "full":
            point = (params["eta_prime"], params["lr"]) if params["variant"] == ENTROPY else None
            full.setdefault((params["variant"], point), []).append(row)
    return full


RESULTS_TABLES = {
    "entropy-sgd-char-lstm-selected": ("entropy_sgd_char_lstm_selected", selected_markdown),
    "entropy-sgd-char-lstm-selected-summary": ("entropy_sgd_char_lstm_selected", selected_summary),
}
