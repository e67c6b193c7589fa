"""The EBGAN-LN vs Ladder Network study (issue 17, part 3): runs paired by seed on one labelled subset, the Table 2
layout from ledger rows alone, a tiny run through the runner."""

import numpy as np
import pytest

from iclr17.studies.ebgan_ladder import PAPER_TABLE2, EbganLadderStudy, table2, table2_summary
from iclr17.studies.ledger import read
from iclr17.studies.runner import record_run
from tests.studies.study_configs import shipped_study


def _row(model, labels, seed, error, status="finished", **params):
    return {"params": {"model": model, "labels": labels, **params}, "seed": seed, "status": status,
            "config_digest": "d", "overrides": [], "metrics": {"test/error": error}}  # fmt: skip


def _cells(lines, start):
    line = next(line for line in lines if line.startswith(start))
    return [c.strip() for c in line.split("|")[1:-1]]


def test_the_table_on_hand_written_rows():
    ln, ebgan = [1.5, 1.25, 1.75, 2.0], [1.0, 1.5, 0.75]
    rows = [_row("ln", 100, s, e) for s, e in zip((1, 2, 3, 4), ln, strict=True)]
    rows += [_row("ebgan_ln", 100, s, e) for s, e in zip((1, 2, 5), ebgan, strict=True)]
    rows += [_row("ebgan_ln", 100, 3, 9.0, status="capped"), _row("ln", 1000, 1, 1.1)]
    lines = table2(rows).splitlines()
    first = _cells(lines, "| 100 | LN |")
    assert first[2:5] == ["4", "1.50 (seed 1), 1.25 (seed 2), 1.75 (seed 3), 2.00 (seed 4)",
                          f"{np.mean(ln):.2f} +- {np.std(ln, ddof=1):.2f}"]  # fmt: skip
    assert first[5] == "1.36 +- 0.21" and first[6] == ""
    second = _cells(lines, "| 100 | EBGAN-LN |")
    assert second[2] == "3" and second[5] == "1.04 +- 0.12"  # the capped seed 3 is not a seed
    paired = [1.0 - 1.5, 1.5 - 1.25]  # seeds 1 and 2 only: seed 5 has no LN run, seed 3's EBGAN-LN was capped
    assert second[6] == f"{np.mean(paired):.2f} +- {np.std(paired, ddof=1):.2f} (2 seeds)"
    assert [line.split("|")[1:3] for line in lines[2:5]] == [[" 100 ", " LN "], [" 100 ", " EBGAN-LN "],
                                                             [" 1000 ", " LN "]]  # fmt: skip
    assert _cells(lines, "| 1000 | LN |")[4:6] == ["1.10", "1.04 +- 0.06"]
    one_pair = table2([_row("ln", 100, 1, 1.25), _row("ebgan_ln", 100, 1, 1.5)])
    assert _cells(one_pair.splitlines(), "| 100 | EBGAN-LN |")[6] == "0.25 (1 seed)"
    assert lines[-1] == "Not shown (not full runs): EBGAN-LN 100 labels capped x 1."
    assert table2([]) == "(no finished runs)"
    assert table2([_row("ln", 100, 1, 1.0, variant="split")]).splitlines()[2].startswith("| 100 | LN (variant split) |")


def test_the_summary_gives_table_2_in_one_line():
    ln, ebgan = [1.5, 1.25, 1.75], [1.0, 1.5]
    rows = [_row("ln", 100, s, e) for s, e in zip((1, 2, 3), ln, strict=True)]
    rows += [_row("ebgan_ln", 100, s, e) for s, e in zip((2, 1), ebgan, strict=True)]
    rows += [_row("ebgan_ln", 100, 3, 9.0, status="capped"), _row("ln", 1000, 1, 1.1)]
    paired = [1.5 - 1.5, 1.0 - 1.25]  # seeds 1 and 2
    assert table2_summary(rows) == (
        f"100 labels, LN {np.mean(ln):.2f} +- {np.std(ln, ddof=1):.2f}% test error (seeds 1, 2, 3: 1.50, 1.25, "
        "1.75; paper, 15 seeds: 1.36 +- 0.21%); 100 labels, EBGAN-LN "
        f"{np.mean(ebgan):.2f} +- {np.std(ebgan, ddof=1):.2f}% test error (seeds 1, 2: 1.50, 1.00; paper, 15 seeds: "
        f"1.04 +- 0.12%), EBGAN-LN - LN {np.mean(paired):.2f} +- {np.std(paired, ddof=1):.2f} points (2 seeds); "
        "1000 labels, LN 1.10% test error (seed 1: 1.10; paper, 15 seeds: 1.04 +- 0.06%); "
        "not shown (not full runs): EBGAN-LN 100 labels capped x 1"
    )
    assert table2_summary([]) == "(no finished runs)"
    assert table2_summary(rows[5:6]) == "(no finished runs); not shown (not full runs): EBGAN-LN 100 labels capped x 1"


def test_the_paper_numbers_are_table_2s():
    assert PAPER_TABLE2["ebgan_ln"] == {100: (1.04, 0.12), 200: (0.99, 0.12), 1000: (0.89, 0.04)}
    assert PAPER_TABLE2["ln"] == {100: (1.36, 0.21), 200: (1.24, 0.09), 1000: (1.04, 0.06)}


def test_the_study_config_pairs_the_two_models_on_each_seeds_labelled_subset():
    study = shipped_study(EbganLadderStudy, "ebgan_ln_table2", arxiv="1609.03126")
    planned = study.planned()
    assert [(r.params["model"], r.params["labels"], r.seed) for r in planned] == [
        (m, 100, s) for m in ("ln", "ebgan_ln") for s in (1, 2, 3)
    ]
    assert all(r.overrides == (f"--seed_everything={r.seed}", f"--data.init_args.seed={r.seed}") for r in planned)
    assert [r.config for r in planned[::3]] == ["ebgan/ln_100.yaml", "ebgan/ebgan_ln_100.yaml"]
    assert len({r.config_digest for r in planned}) == 2 and len({r.key for r in planned}) == 6
    more = shipped_study(EbganLadderStudy, "ebgan_ln_table2", labels=[100, 1000], seeds=[1])
    expected = [f"ebgan/{model}_{n}.yaml" for n in (100, 1000) for model in ("ln", "ebgan_ln")]
    assert [r.config for r in more.planned()] == expected


@pytest.mark.parametrize(
    ("models", "labels", "match"),
    [
        ({}, [100], "models"),
        ({"ladder": "ebgan/ln_{labels}.yaml"}, [100], "models"),
        ({"ln": "ebgan/ln_100.yaml"}, [100], "labels"),
        ({"ln": "ebgan/ln_{labels}.yaml"}, [105], "labels"),
    ],
)
def test_bad_arguments_are_refused(models, labels, match):
    with pytest.raises(ValueError, match=match):
        EbganLadderStudy(models=models, labels=labels)


def test_a_tiny_run_records_the_final_test_error(fixture_data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.accelerator=cpu"]
    study = EbganLadderStudy(models={"ebgan_ln": "ebgan/ebgan_ln_{labels}.yaml"}, seeds=[4], extra=short,
                             ledger_dir=str(tmp_path / "ledgers"), runs_dir=str(tmp_path / "runs"))  # fmt: skip
    (run,) = study.planned()
    row = record_run(study, run, threads=1, machine="test")
    assert row["status"] == "finished" and read(study.ledger) == [row] and row["params"] == run.params
    assert 0.0 <= row["metrics"]["test/error"] <= 100.0 and row["metrics"]["epochs"] == 1
    assert "--data.init_args.seed=4" in row["overrides"]
    assert table2([row]).splitlines()[2].startswith("| 100 | EBGAN-LN | 1 |")
