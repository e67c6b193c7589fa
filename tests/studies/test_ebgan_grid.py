"""The Table 1 grid driver: grid sizes, and a two-run grid end to end on the fixture MNIST."""

import csv

from iclr17.studies.ebgan_grid import main, table1_grid


def test_full_grids_have_the_papers_sizes():
    assert len(table1_grid("ebgan")) == 512 and len(table1_grid("gan")) == 6144
    assert {p.lr for p in table1_grid("ebgan")} == {1e-3}


def test_a_tiny_grid_writes_csv_samples_and_histograms(fixture_data_root, tmp_path):
    out = tmp_path / "grid"
    args = ["--out", str(out), "--data-dir", str(fixture_data_root), "--n-layer-g", "2", "--n-layer-d", "2"]
    args += ["--size-g", "16", "--size-d", "8", "--dropout-d", "0", "--gan-optim", "adam", "--gan-lr", "0.001"]
    main([*args, "--limit-batches", "2", "--score-samples", "50", "--val-size", "100"])
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert [r["model"] for r in rows] == ["ebgan", "gan"] and all(float(r["score"]) >= 0 for r in rows)
    assert len(list((out / "samples").glob("*.png"))) == 2 and (out / "histograms.png").is_file()
    main([*args, "--limit-batches", "2", "--score-samples", "50", "--val-size", "100"])  # a rerun skips finished runs
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 2
