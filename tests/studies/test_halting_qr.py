"""The QR study (arXiv:1511.06444, its QR experiment: N = 150, eps 1e-10; the first deflation of Pfrang, Deift,
Menon 2014): the shipped config plans the paper's runs, and a tiny version run into a ledger holds the halting
times and deflation points a from-scratch numpy loop finds on the same draws, censored runs included, with its
table drawn from the ledger alone."""

import numpy as np
import pytest
import torch
import yaml

from iclr17.functional.qr_algorithm import wigner_matrices
from iclr17.studies.halting import RESULTS_TABLES, HaltingStudy, QRRuns, qr_table
from iclr17.studies.ledger import done_keys, read
from iclr17.studies.runner import record_run
from tests.conftest import REPO_ROOT
from tests.functional.numpy_references import numpy_first_deflation


def test_the_config_plans_one_run_per_ensemble_at_the_papers_size_into_the_qr_ledger():
    spec = yaml.safe_load((REPO_ROOT / "configs" / "studies" / "halting_qr_n150.yaml").read_text())
    assert spec["system"]["class_path"] == "iclr17.studies.halting.QRRuns"
    system = QRRuns(**spec["system"]["init_args"])
    study = HaltingStudy(system, n_runs=spec["n_runs"], seed=spec["seed"], name=spec["name"])
    assert (system.n, system.eps[-1], study.n_runs, study.name) == (150, 1e-10, 1000, "halting_qr")
    assert system.eps == sorted(system.eps, reverse=True)
    runs = study.planned()
    assert [r.params for r in runs] == [
        {"system": "QRRuns", "n": 150, "ensemble": "gaussian", "ensemble_index": 0},
        {"system": "QRRuns", "n": 150, "ensemble": "bernoulli", "ensemble_index": 1},
    ]
    assert len({r.config_digest for r in runs}) == 1 and len({r.key for r in runs}) == 2
    assert "iclr17.studies.halting.QRRuns" in study.command(runs[0]) and '"n": 150' in study.command(runs[0])
    assert RESULTS_TABLES["halting-qr"] == ("halting_qr", qr_table)


def test_a_tiny_study_records_the_times_and_deflations_of_a_numpy_loop_and_draws_its_table(tmp_path):
    eps, n, n_runs, seed, max_steps = [1e-4, 1e-9], 10, 10, 3, 30  # T at 1e-4 is 1-18, at 1e-9 up to 40
    system = QRRuns(n=n, eps=eps, max_steps=max_steps, chunk_size=4)
    study = HaltingStudy(system, n_runs=n_runs, seed=seed, n_resamples=100, name="tiny_qr",
                         ledger_dir=str(tmp_path / "ledgers"), runs_dir=str(tmp_path / "runs"))  # fmt: skip
    runs = study.planned()
    for run in runs:
        record_run(study, run, threads=1, machine="test")
    rows = read(study.ledger)
    assert done_keys(rows) == {run.key for run in runs} and all(r["status"] == "finished" for r in rows)

    expected = {}
    for index, ensemble in enumerate(("gaussian", "bernoulli")):
        times, ks = [], []
        for chunk, size in enumerate([4, 4, 2]):  # each chunk's generator: (seed, ensemble, chunk), as studies seed
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index * 10_007 + chunk)
            h = wigner_matrices(size, n, ensemble, generator).numpy()
            for j in range(size):
                first, deflated, _ = numpy_first_deflation(h[j], eps, max_steps)
                times.append([max_steps if f < 0 else f for f in first])
                ks.append(deflated)
        expected[ensemble] = (np.array(times), np.array(ks))
        metrics = rows[index]["metrics"]
        assert rows[index]["params"]["ensemble"] == ensemble
        assert metrics["times"] == expected[ensemble][0].T.tolist()
        assert metrics["deflated_k"] == expected[ensemble][1].T.tolist()
        censored = [np.flatnonzero(expected[ensemble][1][:, e] < 0).tolist() for e in range(2)]
        assert metrics["censored_runs"] == censored and metrics["thresholds"] == eps
    assert any(rows[i]["metrics"]["censored_runs"][1] for i in (0, 1))  # the cap censors some runs at 1e-9
    assert all(not rows[i]["metrics"]["censored_runs"][0] for i in (0, 1))

    table = study.markdown(rows).splitlines()
    assert table[0].startswith("| eps | mean T (std) Gaussian / Bernoulli |")
    assert table[0].endswith("| first deflation N - k, median (max), Gaussian / Bernoulli |")
    assert table[1] == "|---" * (table[0].count("|") - 1) + "|"
    assert [line.split(" | ")[0] for line in table[2:]] == ["| 0.0001", "| 1e-09"]
    for e, line in enumerate(table[2:]):
        cells = []
        for ensemble in ("gaussian", "bernoulli"):
            ks = expected[ensemble][1][:, e]
            from_bottom = n - ks[ks > 0]  # halted runs only
            cells.append(f"{np.median(from_bottom):g} ({from_bottom.max():g})")
        assert line.endswith(f"| {' / '.join(cells)} |")
    gaussian = expected["gaussian"][0][:, 0]  # numpy, not the report
    assert table[2].split(" | ")[1].startswith(f"{gaussian.mean():.1f} ({gaussian.std(ddof=1):.1f}) / ")
    assert qr_table(rows, n_resamples=100) == "\n".join(table)
    assert qr_table([]) == "(no finished runs)"


def test_a_seed_reproduces_its_runs_and_another_seed_draws_others():
    runs = [QRRuns(n=12, eps=[1e-6], chunk_size=3).run("gaussian", 0, 6, seed) for seed in (0, 0, 1)]
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][2]["deflated_k"], runs[1][2]["deflated_k"])
    assert not np.array_equal(runs[0][0], runs[2][0])


@pytest.mark.parametrize(("arguments", "name"), [({"n": 1}, "n"), ({"eps": [1e-4, 0.0]}, "eps")])
def test_bad_arguments_are_refused_by_name(arguments, name):
    with pytest.raises(ValueError, match=f"{name}="):
        QRRuns(**arguments)


def test_an_unknown_ensemble_is_refused_by_the_study():
    with pytest.raises(ValueError, match="uniform"):
        HaltingStudy(QRRuns(n=10), ensembles=["uniform"])
