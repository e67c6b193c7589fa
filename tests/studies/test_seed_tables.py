"""The Entropy-SGD tables of seeds (arXiv:1611.01838 Table 1: MNIST rows, mnistfc's 100-epoch Adam baseline,
char-LSTM) on hand-written rows and on the committed ledgers; the generic study configs; every RESULTS_TABLES entry
of the EntNet and Entropy-SGD studies."""

from __future__ import annotations

import re

import numpy as np
import pytest

from iclr17.studies import babi_table, seed_tables, world_model
from iclr17.studies.fit_study import FitStudy
from iclr17.studies.ledger import current_runs, done_keys, read
from iclr17.studies.results_tables import ledger_rows
from iclr17.studies.seed_tables import (
    char_lstm_markdown,
    error_percent,
    mnistfc_adam_markdown,
    not_full,
    table1_markdown,
    time_cap,
    variant_summary,
)
from tests.conftest import REPO_ROOT
from tests.studies.study_configs import shipped_study

LEDGERS = REPO_ROOT / "results" / "ledgers"


def _row(variant, seed, metrics, status="finished", steps=100, seconds=300.0, command="iclr17 fit ..."):
    return {
        "study": "toy", "config": "c.yaml", "config_digest": "ab" * 8, "params": {"variant": variant},
        "overrides": [f"--seed_everything={seed}"], "seed": seed, "commit": "0" * 40, "dirty": False,
        "machine": "test", "command": command, "status": status, "steps": steps, "fit_seconds": seconds,
        "metrics": metrics,
    }  # fmt: skip


def test_time_cap_reads_days_hours_minutes_seconds():
    assert time_cap("iclr17 fit --trainer.max_time=00:00:03:30 --x=1") == "3.5-min cap"
    assert time_cap("iclr17 fit --trainer.max_time=01:01:00:00") == "1500-min cap"
    assert time_cap("iclr17 fit --trainer.max_epochs=3") is None


def test_the_mnistfc_baseline_table_on_hand_written_rows():
    cap = "x --trainer.max_time=00:00:03:30"
    rows = [
        _row("mnistfc_adam", 2, {"test/acc": 0.9875}, steps=39_100),
        _row("mnistfc_adam", 1, {"test/acc": 0.9874}, steps=39_100),
        _row("mnistfc_adam", 3, {"test/acc": 0.9870}, "capped", 38_898, command=cap),
        _row("mnistfc_adam", 4, {"test/acc": 0.5}, "failed"),
        _row("lenet_adam", 1, {"test/acc": 0.99}),
    ]
    errors = [1.26, 1.25, 1.30]  # 100 (1 - acc), seeds 1-3
    assert error_percent(rows[0]) == pytest.approx(1.25)
    assert mnistfc_adam_markdown(rows).splitlines() == [
        "| seed | steps | stopped by | test error |",
        "|---|---|---|---|",
        "| 1 | 39,100 | the epoch budget | 1.26% |",
        "| 2 | 39,100 | the epoch budget | 1.25% |",
        "| 3 | 38,898 | capped (3.5-min cap) | 1.30% |",
        f"| mean +- std | | | {np.mean(errors):.2f} +- {np.std(errors, ddof=1):.2f}% |",
        "| paper (Adam) | | | 1.39 +- 0.03% |",
    ]
    one_seed = mnistfc_adam_markdown(rows[:1]).splitlines()  # one seed: no mean +- std line
    assert one_seed[2:] == ["| 2 | 39,100 | the epoch budget | 1.25% |", "| paper (Adam) | | | 1.39 +- 0.03% |"]


def test_table_1_on_hand_written_rows():
    rows = [
        _row("lenet_adam", 1, {"test/acc": 0.9950}, seconds=100.0),
        _row("mnistfc_entropy_v5", 2, {"test/acc": 0.9870}, seconds=280.0),
        _row("mnistfc_entropy_v5", 1, {"test/acc": 0.9880}, seconds=300.0),
        _row("mnistfc_entropy_v5", 3, {"test/acc": 0.9000}, "failed"),
        _row("mnistfc_adam", 1, {"test/acc": 0.9860}, "capped", seconds=None),
        _row("mnistfc_adam", 2, {"test/acc": 0.9870}, seconds=None),
        _row("other", 1, {"test/acc": 0.9}),
    ]
    lines = table1_markdown(rows).splitlines()
    assert lines[0].startswith("| model | optimizer (preset) | effective epochs (x L / x (L + 1)) | test error |")
    # errors 1.20 (seed 1) and 1.30 (seed 2): mean 1.25, std 0.0707; wall: mean of 300 and 280 s
    spread = f"{np.mean([1.2, 1.3]):.2f} +- {np.std([1.2, 1.3], ddof=1):.2f}%"
    assert lines[2] == f"| mnistfc | Entropy-SGD, L = 20 (`paper_v5`) | 120 / 126 | {spread} (1.20, 1.30) | 2 | " \
        "1.37 +- 0.03% | 290 s |"  # fmt: skip
    adam = f"{np.mean([1.4, 1.3]):.2f} +- {np.std([1.4, 1.3], ddof=1):.2f}%"  # seed 1 capped, seed 2 finished
    assert lines[3] == f"| mnistfc | Adam (`configs/classifier/mnistfc.yaml`) | 100 | {adam} (1.40 (capped), 1.30) " \
        "| 2 | 1.39 +- 0.03% |  |"  # fmt: skip
    lenet = "| LeNet-BN | Adam (`lenet_adam.yaml`) | 100 | 0.50% (0.50) | 1 | 0.51 +- 0.01% | 100 s |"  # no spread
    assert lines[4] == lenet
    assert lines[5] == "| c.yaml | other |  | 10.00% (10.00) | 1 |  | 300 s |"
    assert len(lines) == 6


def test_table_1_says_so_when_every_run_of_a_row_was_capped():
    capped = "iclr17 fit --trainer.max_time=00:00:23:00"
    rows = [
        _row("lenet_adam", 2, {"test/acc": 0.9950}, "capped", command=capped),
        _row("lenet_adam", 1, {"test/acc": 0.9940}, "capped", command=capped),
    ]
    spread = f"{np.mean([0.6, 0.5]):.2f} +- {np.std([0.6, 0.5], ddof=1):.2f}%"
    assert table1_markdown(rows).splitlines()[2] == (
        f"| LeNet-BN | Adam (`lenet_adam.yaml`) | 100 | {spread} (0.60, 0.50; capped (23-min cap)) | 2 | "
        "0.51 +- 0.01% | 300 s |"
    )


def test_table_1_shows_each_evaluation_of_one_fit_as_its_own_row():
    def evaluated(seed, test_images, training_images):
        by_name = {"bn_test": {"test/acc": test_images}, "bn_train": {"test/acc": training_images}}
        return _row("lenet_lua_t7init_adam", seed, {"epochs": 100, "evaluations": by_name}, seconds=2000.0)

    lines = table1_markdown([evaluated(1, 0.9950, 0.9940), evaluated(2, 0.9948, 0.9946)]).splitlines()
    test_images = f"{np.mean([0.5, 0.52]):.2f} +- {np.std([0.5, 0.52], ddof=1):.2f}% (0.50, 0.52)"
    training_images = f"{np.mean([0.6, 0.54]):.2f} +- {np.std([0.6, 0.54], ddof=1):.2f}% (0.60, 0.54)"
    assert lines[2:] == [
        "| LeNet (Lua, authors' init and data), BN statistics of the test images | Adam | 100 | "
        f"{test_images} | 2 | 0.51 +- 0.01% | 2000 s |",
        "| LeNet (Lua, authors' init and data), BN statistics of the training images | Adam | 100 | "
        f"{training_images} | 2 | 0.51 +- 0.01% | 2000 s |",
    ]


def test_a_variants_summary_is_its_table_1_row_in_one_line():
    capped = "iclr17 fit --trainer.max_time=00:00:03:30"
    rows = [
        _row("mnistfc_adam", 2, {"test/acc": 0.9870}),
        _row("mnistfc_adam", 1, {"test/acc": 0.9860}, "capped", command=capped),
        _row("mnistfc_adam", 3, {"test/acc": 0.9000}, "failed"),
        _row("lenet_adam", 4, {"test/acc": 0.9950}),
    ]  # fmt: skip
    spread = f"{np.mean([1.4, 1.3]):.2f} +- {np.std([1.4, 1.3], ddof=1):.2f}%"
    assert variant_summary(rows, "mnistfc_adam") == f"{spread} (2 seeds, 1 capped: 3.5-min cap)"
    assert variant_summary(rows, "lenet_adam") == "0.50% (seed 4)"
    assert variant_summary(rows[1:2], "mnistfc_adam") == "1.40% (seed 1, capped: 3.5-min cap)"
    assert variant_summary(rows, "lenet_entropy_v5") == "(no runs of lenet_entropy_v5)"
    evaluated = _row("lenet_lua_adam", 1, {"evaluations": {"bn_test": {"test/acc": 0.9940}}})
    assert variant_summary([evaluated], "lenet_lua_adam_bn_test") == "0.60% (seed 1)"
    for variant in seed_tables.SUMMARISED_VARIANTS:
        _, renderer = seed_tables.RESULTS_TABLES[f"entropy-sgd-mnist.{variant}"]
        assert renderer(rows) == variant_summary(rows, variant)


def test_the_char_lstm_table_on_hand_written_rows():
    cap = "x --trainer.max_time=00:00:03:30"
    metrics = {"test/loss": 1.3874, "test/ppl": 4.0047, "test/bits_per_char": 2.0017, "epochs": 28}
    rows = [
        _row("char_entropy_adam", 1, metrics | {"epochs": 30}),
        _row("char_adam", 2, metrics | {"test/loss": 1.38494}, "capped", command=cap),
        _row("char_adam", 1, metrics, "capped", command=cap),
    ]
    lines = char_lstm_markdown(rows).splitlines()
    assert lines[2] == "| Adam (lr 2e-3) | 28 epochs, capped (3.5-min cap) | 1.387, 1.385 | 4.00, 4.00 | 2.00, 2.00 " \
        "| 1.226 +- 0.01 at 40-50 epochs |"  # fmt: skip
    assert lines[3].startswith("| Entropy-Adam, L = 5 | 30 epochs | 1.387 | 4.00 | 2.00 | 1.217 +- 0.005")


def test_the_committed_table_1_ledger():
    rows = read(LEDGERS / "entropy_sgd_mnist_table1.jsonl")[:15]  # the migrated rows; the ledger may grow
    assert len(rows) == 15
    # results/entropy_sgd_mnist_table1.json at 978148c: test_error_percent of mnistfc_entropy_v5_s1..3 and
    # lenet_adam_s1..3, fit_seconds 292, 292, 292
    v5, lenet = [1.23, 1.27, 1.24], [0.73, 0.69, 0.75]
    table = table1_markdown(rows)
    assert f"{np.mean(v5):.2f} +- {np.std(v5, ddof=1):.2f}% (1.23, 1.27, 1.24) | 3 | 1.37 +- 0.03% | 292 s |" in table
    assert f"{np.mean(lenet):.2f} +- {np.std(lenet, ddof=1):.2f}% (0.73, 0.69, 0.75) | 3 | 0.51 +- 0.01% |" in table
    # results/mnistfc_adam_100epochs_3seeds.json at 978148c: seed 3's checkpoint epoch=99-step=38898.ckpt,
    # test_error_percent 1.26, 1.25, 1.3 (RESULTS.md: the 3.5-minute guard cut seed 3)
    baseline = mnistfc_adam_markdown(rows)
    assert "| 3 | 38,898 | capped (3.5-min cap) | 1.30% |" in baseline
    errors = [1.26, 1.25, 1.3]
    assert f"| mean +- std | | | {np.mean(errors):.2f} +- {np.std(errors, ddof=1):.2f}% |" in baseline


def test_the_committed_char_lstm_ledger():
    rows = read(LEDGERS / "entropy_sgd_char_lstm.jsonl")
    # results/entropy_sgd_char_lstm.json at 978148c: test_loss_nats 1.3874704837799072, 1.3849406242370605 (Adam),
    # 1.7413660287857056, 1.7256810665130615 (Entropy-Adam); 28 and 30 validations
    lines = char_lstm_markdown(rows).splitlines()
    assert lines[2].startswith("| Adam (lr 2e-3) | 28 epochs, capped (3.5-min cap) | 1.387, 1.385 | 4.00, 3.99 |")
    assert lines[3].startswith("| Entropy-Adam, L = 5 | 30 epochs | 1.741, 1.726 | 5.71, 5.62 | 2.51, 2.49 |")


GENERIC_CONFIGS = {
    "entropy_sgd_table1_mnistfc_entropy": ("entropy_sgd_mnist_table1", {"mnistfc_entropy_v5", "mnistfc_entropy_lua"}),
    "entropy_sgd_table1_mnistfc_adam": ("entropy_sgd_mnist_table1", {"mnistfc_adam"}),
    "entropy_sgd_table1_lenet_entropy": ("entropy_sgd_mnist_table1", {"lenet_entropy_v5"}),
    "entropy_sgd_table1_lenet_adam": ("entropy_sgd_mnist_table1", {"lenet_adam"}),
    "entropy_sgd_char_lstm_adam": ("entropy_sgd_char_lstm", {"char_adam"}),
    "entropy_sgd_char_lstm_entropy_adam": ("entropy_sgd_char_lstm", {"char_entropy_adam"}),
}


@pytest.mark.parametrize("name", GENERIC_CONFIGS)
def test_the_generic_study_configs_plan_the_variants_their_ledger_rows_carry(name):
    study = shipped_study(FitStudy, name, arxiv="1611.01838")
    ledger, variants = GENERIC_CONFIGS[name]
    assert study.name == ledger and {r.params["variant"] for r in study.planned()} == variants
    assert {r["config"] for r in read(LEDGERS / f"{ledger}.jsonl") if r["params"]["variant"] in variants} == {
        study.config
    }


def test_every_shipped_config_of_a_bn_evaluated_fit_declares_the_evaluations_its_table_rows_name():
    """The table makes <variant>_bn_test and <variant>_bn_train rows of the BN_EVALUATED fits: a config that renamed
    or dropped an evaluation would leave its rows empty."""
    declared = {}
    for path in sorted((REPO_ROOT / "configs" / "studies").glob("entropy_sgd_table1_*.yaml")):
        study = shipped_study(FitStudy, path.stem)
        for variant in {r.params["variant"] for r in study.planned()} & set(seed_tables.BN_EVALUATED):
            declared[variant] = set(study.evaluations)
    assert len(declared) == 4  # the Lua mnistfc with BN and the Lua LeNet (the BN-scales-from-1 rows are older)
    assert all(names == set(seed_tables.BN_EVALUATIONS) for names in declared.values()), declared


def test_the_official_lua_rerun_replaces_the_rows_measured_before_the_preset_fix():
    old_rows = [r for r in read(LEDGERS / "entropy_sgd_mnist_table1.jsonl")[:15]
                if r["params"]["variant"] == "mnistfc_entropy_lua"]  # fmt: skip
    rerun = shipped_study(FitStudy, "entropy_sgd_table1_mnistfc_entropy_lua_rerun", arxiv="1611.01838")
    planned = rerun.planned()
    assert rerun.name == "entropy_sgd_mnist_table1" and rerun.max_time is None
    assert sorted((r.params["variant"], r.seed) for r in planned) == sorted(
        (r["params"]["variant"], r["seed"]) for r in old_rows
    )
    assert not {r.key for r in planned} & done_keys(old_rows)  # planned as new runs, not skipped as finished
    assert all("--model.init_args.optimizer.init_args.variant=official_lua" in r.overrides for r in planned)
    newer = [dict(r, commit="f" * 40, metrics=dict(r["metrics"], **{"test/acc": 0.99})) for r in old_rows]
    assert [r["commit"] for r in current_runs(old_rows + newer)] == ["f" * 40] * len(old_rows)


@pytest.mark.parametrize("module", [babi_table, world_model, seed_tables], ids=lambda m: m.__name__)
def test_every_results_table_is_named_for_its_marker_and_renders_its_ledger(module):
    for name, (stem, renderer) in module.RESULTS_TABLES.items():
        assert re.fullmatch(r"[\w.-]+", name), name  # iclr17.studies.results_tables' <!-- table: NAME --> marker
        rows = ledger_rows(stem, LEDGERS)
        text = renderer(rows)  # a table, or an inline summary's one line; never "(no ...)" on the committed ledger
        assert rows and (text.count("\n") >= 2 or ("\n" not in text and not text.startswith("("))), (name, text)


def test_not_full_counts_each_capped_run_once_by_label_and_leaves_out_failed_and_finished_ones():
    def row(model, seed, status):
        return {"params": {"model": model}, "seed": seed, "status": status}

    rows = [
        row("a", 0, "capped"),  # then finished: the finished row replaces it
        row("a", 0, "finished"),
        row("a", 1, "capped"),
        row("a", 1, "capped"),  # a later capped segment of the same run: one run
        row("b", 0, "failed"),
        row("b", 1, "capped"),
        row("c", 0, "finished"),
    ]
    assert not_full(rows, lambda p: p["model"].upper()) == {"A capped": 1, "B capped": 1}
    assert not_full(rows[-1:], str) == {}
