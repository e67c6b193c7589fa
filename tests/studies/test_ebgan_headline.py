"""The headline EBGAN study: per-epoch I' from the run's own CSV log, the final sample grid, the table and the
curves from ledger rows alone (issue 17, part 1)."""

import csv

import numpy as np
import pytest
from PIL import Image

from iclr17.studies.ebgan_headline import EbganHeadlineStudy, curves_figure, headline_summary, headline_table
from iclr17.studies.fit_study import epoch_history
from iclr17.studies.ledger import read
from iclr17.studies.runner import record_run
from tests.studies.study_configs import shipped_study


def test_epoch_history_reads_each_metric_in_logged_order_and_skips_blank_cells(tmp_path):
    path = tmp_path / "metrics.csv"
    rows = [  # Lightning's CSVLogger: one row per logging call, blanks for the metrics not logged then
        {"epoch": 0, "step": 49, "train/loss": 0.9, "val/score": "", "val/energy": ""},
        {"epoch": 0, "step": 99, "train/loss": "", "val/score": 1.5, "val/energy": 7.0},
        {"epoch": 1, "step": 149, "train/loss": 0.4, "val/score": "", "val/energy": ""},
        {"epoch": 1, "step": 199, "train/loss": "", "val/score": 3.25, "val/energy": 6.5},
    ]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert epoch_history(tmp_path, ["val/score", "val/energy"]) == {"val/score": [1.5, 3.25], "val/energy": [7.0, 6.5]}
    with pytest.raises(KeyError, match=r"metrics\.csv.*val/missing"):
        epoch_history(tmp_path, ["val/missing"])


def _row(config, seed, curve, final, status="finished"):
    return {"params": {"config": config}, "seed": seed, "status": status, "config_digest": "d", "overrides": [],
            "metrics": {"val/mnist_score by epoch": curve, "test/mnist_score": final}}  # fmt: skip


def test_the_table_on_hand_written_rows():
    rows = [
        _row("mnist_ebgan", 0, [1.0, 4.0, 7.0], 7.5),
        _row("mnist_ebgan", 1, [2.0, 5.0, 6.5], 6.25),
        _row("mnist_ebgan", 2, [0.5, 3.0, 5.0], 5.5),
        _row("mnist_gan", 0, [3.0, 3.5, 4.0], 4.0),
        _row("mnist_gan", 1, [3.0], 3.0, status="capped"),
    ]
    lines = headline_table(rows, target=6.0).splitlines()
    ebgan = next(line for line in lines if line.startswith("| mnist_ebgan |"))
    finals = [7.5, 6.25, 5.5]
    cells = [c.strip() for c in ebgan.split("|")[1:-1]]
    assert cells[:3] == ["mnist_ebgan", "3", "3"]
    assert cells[3] == ", ".join(f"{np.mean(v):.2f}" for v in ([1.0, 2.0, 0.5], [4.0, 5.0, 3.0], [7.0, 6.5, 5.0]))
    assert cells[4] == "7.50 (seed 0), 6.25 (seed 1), 5.50 (seed 2)"
    assert cells[5] == f"{np.mean(finals):.2f} +- {np.std(finals, ddof=1):.2f}" and cells[6] == "no"
    gan = next(line for line in lines if line.startswith("| mnist_gan |"))
    assert gan.split("|")[2].strip() == "1" and gan.rstrip().endswith("| no |")  # the capped seed is not a seed
    assert lines[-1] == "Not shown (not full runs): mnist_gan capped x 1."
    assert headline_table(rows[:2], target=6.0).splitlines()[2].endswith("| yes |")
    assert headline_table([]) == "(no finished runs)"
    variant = _row("mnist_ebgan", 0, [1.0], 1.0) | {"params": {"config": "mnist_ebgan", "variant": "init_0.02",
                                                               "trainer.max_epochs": 4}}  # fmt: skip
    assert headline_table([variant]).splitlines()[2].startswith("| mnist_ebgan, init_0.02, 4 | 1 | 1 | 1.00 |")


def test_the_summary_gives_each_configs_final_scores_in_one_line():
    ebgan = [7.5, 6.25, 5.5]
    rows = [_row("mnist_ebgan", s, [1.0, 2.0, 3.0], v) for s, v in zip((2, 0, 1), ebgan, strict=True)]
    rows += [_row("mnist_gan", 4, [3.0, 3.5], 4.0), _row("mnist_gan", 5, [3.0], 3.0, status="capped")]
    by_seed = [ebgan[1], ebgan[2], ebgan[0]]  # seeds 0, 1, 2
    assert headline_summary(rows) == (
        f"mnist_ebgan {np.mean(ebgan):.2f} +- {np.std(ebgan, ddof=1):.2f} (3 epochs, seeds 0, 1, 2: "
        + ", ".join(f"{v:.2f}" for v in by_seed) + "); mnist_gan 4.00 (2 epochs, seed 4: 4.00); "
        "not shown (not full runs): mnist_gan capped x 1"
    )  # fmt: skip
    assert headline_summary(rows[-1:]) == "(no finished runs); not shown (not full runs): mnist_gan capped x 1"
    assert headline_summary([]) == "(no finished runs)"


def test_the_curves_figure_draws_every_finished_run(tmp_path):
    rows = [_row("a", s, [1.0 + s, 2.0, 3.0], 3.0) for s in range(3)] + [_row("b", 0, [0.5, 0.7], 0.7)]
    curves_figure(rows, tmp_path / "curves.png")
    assert Image.open(tmp_path / "curves.png").size[0] > 600
    with pytest.raises(ValueError, match="run the study"):
        curves_figure([], tmp_path / "empty.png")


def test_the_study_config_plans_three_configs_by_three_seeds():
    study = shipped_study(EbganHeadlineStudy, "ebgan_headline", arxiv="1609.03126")
    planned = study.planned()
    assert [(r.params["config"], r.seed) for r in planned] == [
        (c, s) for c in ("mnist_ebgan", "mnist_ebgan_pt", "mnist_gan") for s in (0, 1, 2)
    ]
    assert all(r.overrides == (f"--seed_everything={r.seed}",) for r in planned)  # the shipped config, unchanged
    assert len({r.config_digest for r in planned}) == 3 and "val/mnist_score" in study.history


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="fit_configs"):
        EbganHeadlineStudy(fit_configs={})


def test_a_tiny_run_records_its_curve_and_final_score_and_writes_its_grid(fixture_data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(fixture_data_root))
    short = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=2", "--data.init_args.val_size=100",
             "--trainer.accelerator=cpu"]  # fmt: skip
    study = EbganHeadlineStudy(
        fit_configs={"ebgan": "ebgan/mnist_ebgan.yaml"}, seeds=[3], samples_dir=str(tmp_path / "samples"),
        extra=short, ledger_dir=str(tmp_path / "ledgers"), runs_dir=str(tmp_path / "runs"),
    )  # fmt: skip
    (run,) = study.planned()
    row = record_run(study, run, threads=1, machine="test")
    assert row["status"] == "finished" and read(study.ledger) == [row] and row["steps"] == 8  # 2 x 2 batches x (D, G)
    curve = row["metrics"]["val/mnist_score by epoch"]
    assert len(curve) == 2 and all(np.isfinite(curve)) and min(curve) >= 0.0
    assert "val/energy_real by epoch" not in row["metrics"]  # not asked for: only I' is added by default
    assert "test/mnist_score" in row["metrics"]
    grid = Image.open(tmp_path / "samples" / "ebgan_seed3.png")
    assert grid.size == (10 * 30 + 2, 10 * 30 + 2)  # torchvision's grid: 28-pixel images, 2-pixel padding


def test_the_slow_start_config_plans_each_variant_of_the_shipped_config_for_4_epochs():
    study = shipped_study(EbganHeadlineStudy, "ebgan_slow_start", arxiv="1609.03126")
    headline = shipped_study(EbganHeadlineStudy, "ebgan_headline", arxiv="1609.03126")
    planned = study.planned()
    variants = ["shipped", "init_0.02", "adam_beta1_0.5", "batch_32", "margin_5", "margin_20"]
    assert [(r.params["variant"], r.seed) for r in planned] == [(v, s) for v in variants for s in (0, 1, 2)]
    assert all(r.params["trainer.max_epochs"] == 4 and r.params["config"] == "mnist_ebgan" for r in planned)
    shipped = [r for r in planned if r.params["variant"] == "shipped"]
    same_config = [r for r in headline.planned() if r.params["config"] == "mnist_ebgan"]
    assert [r.overrides for r in shipped] == [("--trainer.max_epochs=4", *r.overrides) for r in same_config]
    assert shipped[0].config_digest == same_config[0].config_digest and study.name == "ebgan_slow_start"
