"""The studies of ``iclr17 <study>``, by command name, and the RESULTS.md tables their ledgers regenerate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iclr17.studies import (
    babi_table,
    benchmark_tables,
    char_lstm_selection,
    ebgan_grid,
    ebgan_headline,
    ebgan_ladder,
    fit_study,
    halting,
    hessian_report,
    seed_tables,
    world_model,
)
from iclr17.studies.runner import Study

STUDIES: dict[str, type[Study]] = {
    cls.cli_name(): cls
    for cls in (
        babi_table.BabiStudy,
        world_model.WorldModelStudy,
        fit_study.FitStudy,
        hessian_report.HessianStudy,
        halting.HaltingStudy,
        ebgan_grid.EbganGridStudy,
        ebgan_headline.EbganHeadlineStudy,
        ebgan_ladder.EbganLadderStudy,
        char_lstm_selection.CharLstmSelectionStudy,
    )
}

Renderer = Callable[[list[dict[str, Any]]], str]
RESULTS_TABLES: dict[str, tuple[str | tuple[str, ...], Renderer]] = {  # name -> ledger stem(s), renderer
    **babi_table.RESULTS_TABLES,
    **world_model.RESULTS_TABLES,
    **seed_tables.RESULTS_TABLES,
    **hessian_report.RESULTS_TABLES,
    **halting.RESULTS_TABLES,
    **ebgan_grid.RESULTS_TABLES,
    **ebgan_headline.RESULTS_TABLES,
    **ebgan_ladder.RESULTS_TABLES,
    **benchmark_tables.RESULTS_TABLES,
    **char_lstm_selection.RESULTS_TABLES,
}
