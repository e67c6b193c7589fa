"""The Hessian study: tables and figure from hand-written rows, the spectrum read back from the callback's file, one
tiny run of the blobs config end to end, and the committed ledgers against the raw JSON they came from."""

import numpy as np
import pytest

from iclr17.studies.hessian_report import (
    RESULTS_TABLES,
    HessianStudy,
    near_zero_summary,
    saved_spectrum,
    spectra_figure,
    spectrum_table,
    sweep_table,
)
from iclr17.studies.ledger import read
from iclr17.studies.runner import record_run
from tests.conftest import REPO_ROOT

WIDTHS = "model.init_args.net.init_args.widths"


def _snapshot(lambda_max, lambda_min, zero_abs, zero_rel, negative, outliers, n_params=10, eigenvalues=None):
    snapshot = {"n_params": n_params, "lambda_max": lambda_max, "lambda_min": lambda_min, "frac_zero_abs": zero_abs,
                "frac_zero_rel": zero_rel, "negative_mass": negative, "n_outliers": outliers,
                "num_classes": 4.0}  # fmt: skip
    return snapshot | ({"eigenvalues": eigenvalues} if eigenvalues is not None else {})


def _row(params, start, end, status="finished", seed=0):
    return {"params": params, "seed": seed, "status": status, "config": "c.yaml",
            "metrics": {"hessian/start": start, "hessian/end": end}}  # fmt: skip


def test_spectrum_table_has_a_line_before_and_after_training_and_leaves_failed_runs_out():
    rows = [
        _row(
            {},
            _snapshot(1.6539, -1.1696, 0.4021, 0.5464, 0.4617, 4.0),
            _snapshot(0.83837, -0.000644, 0.732, 0.9278, 0.002348, 1.0),
        ),  # fmt: skip
        {"params": {}, "seed": 0, "status": "failed", "config": "c.yaml", "metrics": {"error": "boom"}},
    ]
    rerun = _row({}, _snapshot(1.0, -1.0, 0.5, 0.5, 0.5, 3.0), _snapshot(0.5, -0.1, 0.5, 0.5, 0.5, 2.0))
    assert spectrum_table([rerun, *rows]) == spectrum_table(rows)  # the latest row of a run is shown
    assert spectrum_table(rows).splitlines() == [
        "| | lambda_max | lambda_min | share abs(lambda) < 1e-4 | share abs(lambda) < 1e-3 lambda_max | negative mass "
        "| outliers (4 classes) |",
        "|---|---|---|---|---|---|---|",
        "| before training | 1.65 | -1.2 | 40.2% | 54.6% | 46.2% | 4 |",
        "| after training | 0.838 | -0.00064 | 73.2% | 92.8% | 0.2% | 1 |",
    ]


def test_the_near_zero_summary_gives_each_run_by_size_in_one_line():
    big, small = {WIDTHS: [2, 40, 40, 4]}, {WIDTHS: [2, 5, 5, 4]}
    rows = [
        _row(big, _snapshot(1.6, -1.0, 0.7, 0.7968, 0.47, 1.0), _snapshot(14.0, -0.02, 0.8, 0.98857, 0.02, 2.0, 1924)),
        _row(small, _snapshot(1.0, -1.0, 0.5, 0.536, 0.37, 4.0), _snapshot(14.0, -0.004, 0.8, 0.855, 0.01, 1.0, 69)),
        {"params": small, "seed": 1, "status": "failed", "config": "c.yaml", "metrics": {"error": "boom"}},
    ]  # fmt: skip
    assert near_zero_summary(rows) == (
        "widths 2-5-5-4, 69 parameters: 85.5% (53.6% before), 1 outlier (4 classes); "
        "widths 2-40-40-4, 1,924 parameters: 98.9% (79.7% before), 2 outliers (4 classes)"
    )
    one = _row({}, _snapshot(1.0, -1.0, 0.5, 0.5, 0.5, 3.0), _snapshot(0.5, -0.1, 0.5, 0.9278, 0.5, 1.0, 97))
    del one["metrics"]["hessian/end"]["num_classes"]
    assert near_zero_summary([one]) == "97 parameters: 92.8% (50.0% before), 1 outlier"
    assert near_zero_summary(rows[2:]) == "(no runs with both spectra)"


def test_sweep_table_orders_runs_by_size_labels_seeds_and_capped_runs():
    big, small = {WIDTHS: [2, 40, 40, 4]}, {WIDTHS: [2, 5, 5, 4]}
    rows = [
        _row(
            big,
            _snapshot(1.6, -1.07, 0.77, 0.7968, 0.4759, 1.0),
            _snapshot(14.26, -0.02652, 0.8, 0.98857, 0.0206, 2.0, n_params=1924),
            status="capped",
        ),  # fmt: skip
        _row(
            small,
            _snapshot(0.6, -0.4, 0.5, 0.5362, 0.3727, 7.0),
            _snapshot(14.31, -0.00439, 0.48, 0.855, 0.0007, 1.0, n_params=69),
        ),  # fmt: skip
        _row(
            small,
            _snapshot(0.6, -0.4, 0.5, 0.5, 0.3, 7.0),
            _snapshot(9.0, -0.001, 0.48, 0.9, 0.0007, 1.0, n_params=69),
            seed=1,
        ),  # fmt: skip
    ]
    lines = sweep_table(rows).splitlines()
    assert lines[2:] == [
        "| widths 2-5-5-4 seed 0 | 69 | 85.5% | 14.3 | -0.0044 | 1 | 53.6% | 37.3% |",
        "| widths 2-5-5-4 seed 1 | 69 | 90.0% | 9 | -0.001 | 1 | 50.0% | 30.0% |",
        "| widths 2-40-40-4 seed 0 (capped) | 1,924 | 98.9% | 14.3 | -0.027 | 2 | 79.7% | 47.6% |",
    ]
    assert "after: outliers (4 classes)" in lines[0]


def test_saved_spectrum_recomputes_the_statistics_from_the_callbacks_file(tmp_path):
    eigenvalues = np.array([-0.02, -1e-5, 0.0, 2e-5, 3e-4, 0.004, 0.5, 2.0])
    folder = tmp_path / "lightning_logs" / "version_0" / "hessian"
    folder.mkdir(parents=True)
    stale = {"lambda_max": 99.0, "frac_zero_rel": 0.0, "num_classes": 3.0}  # an older definition's numbers
    np.savez(folder / "end_step7.npz", eigenvalues=eigenvalues, **stale)
    np.savez(folder / "end_step3.npz", eigenvalues=eigenvalues[:3], **stale)
    spectrum = saved_spectrum(tmp_path, "end")
    assert spectrum["step"] == 7 and spectrum["n_params"] == 8 and spectrum["num_classes"] == 3.0
    assert spectrum["eigenvalues"] == sorted(eigenvalues.tolist())
    assert spectrum["lambda_max"] == 2.0 and spectrum["lambda_min"] == -0.02
    assert spectrum["frac_zero_abs"] == pytest.approx(np.mean(np.abs(eigenvalues) < 1e-4))  # 3 of 8
    assert spectrum["frac_zero_rel"] == pytest.approx(np.mean(np.abs(eigenvalues) < 2e-3))  # 4 of 8
    negative = np.abs(eigenvalues[eigenvalues < 0]).sum() / np.abs(eigenvalues).sum()
    assert spectrum["negative_mass"] == pytest.approx(negative)
    # a resumed fit measures its start again at the resumed step: the start before training is the first
    np.savez(folder / "start_step12.npz", eigenvalues=eigenvalues[:5], **stale)
    np.savez(folder / "start_step0.npz", eigenvalues=eigenvalues[:4], **stale)
    assert (saved_spectrum(tmp_path, "start")["step"], saved_spectrum(tmp_path, "start")["n_params"]) == (0, 4)
    np.savez(folder / "start_step0.npz", lambda_max=1.0)  # a Lanczos or trace record: no full spectrum
    with pytest.raises(ValueError, match="method='exact'"):
        saved_spectrum(tmp_path, "start")
    with pytest.raises(FileNotFoundError, match="hessian/epoch_step"):
        saved_spectrum(tmp_path, "epoch")


def test_figure_needs_eigenvalues(tmp_path):
    values = np.linspace(-0.1, 3.0, 40).tolist()
    with_values = _row({}, _snapshot(3.0, -0.1, 0.1, 0.2, 0.01, 2.0, eigenvalues=values),
                       _snapshot(3.0, -0.1, 0.1, 0.2, 0.01, 2.0, eigenvalues=values))  # fmt: skip
    assert spectra_figure([with_values], tmp_path / "f.png") and (tmp_path / "f.png").stat().st_size > 10_000
    statistics_only = _row({}, _snapshot(3.0, -0.1, 0.1, 0.2, 0.01, 2.0), _snapshot(3.0, -0.1, 0.1, 0.2, 0.01, 2.0))
    with pytest.raises(ValueError, match="new runs|run the study"):
        spectra_figure([statistics_only], tmp_path / "g.png")


def test_a_tiny_blobs_run_records_both_spectra_and_the_test_metrics(tmp_path):
    study = HessianStudy(fit_config="configs/hessian/blobs.yaml", seeds=[0], extra=["--trainer.max_epochs=3"],
                         ledger_dir=str(tmp_path / "ledgers"), runs_dir=str(tmp_path / "runs"))  # fmt: skip
    (run,) = study.planned()
    row = record_run(study, run, threads=1, machine="test")
    assert row["status"] == "finished" and row["steps"] == 3 and read(study.ledger) == [row]
    start, end = row["metrics"]["hessian/start"], row["metrics"]["hessian/end"]
    assert (start["step"], end["step"], end["n_params"], len(end["eigenvalues"])) == (0, 3, 97, 97)
    assert end["lambda_max"] == max(end["eigenvalues"]) and end["num_classes"] == 2.0
    assert "test/acc" in row["metrics"] and "val/acc" in row["metrics"]
    assert study.markdown([row]).splitlines()[2].startswith("| before training | ")


def test_committed_ledgers_reproduce_the_raw_json():
    # literals: results/hessian/{blobs,width_sweep,mnist_small}.json at 978148c (RESULTS.md's tables)
    tables = {name: renderer(read(REPO_ROOT / f"results/ledgers/{stem}.jsonl")) for name, (stem, renderer) in
              RESULTS_TABLES.items()}  # fmt: skip
    assert "| after training | 0.838 | -0.00064 | 73.2% | 92.8% | 0.2% | 1 |" in tables["hessian-blobs"]
    assert "| widths 2-40-40-4 | 1,924 | 98.9% | 14.3 | -0.027 | 2 | 79.7% | 47.6% |" in tables["hessian-width-sweep"]
    assert "| before training | 1.52 | -0.54 | 73.0% | 91.5% | 36.1% | 4 |" in tables["hessian-mnist-small"]
    assert "| after training | 0.722 | -0.00043 | 90.2% | 95.4% | 0.2% | 9 |" in tables["hessian-mnist-small"]
