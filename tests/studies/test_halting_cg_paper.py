"""The paper's conjugate-gradient study (arXiv:1511.06444: N = 500, b ~ U(-1, 1), x0 = b, M = N + 2 floor(sqrt(N))
and M = N): the new switches leave the committed N = 100 study's digest alone, runs equal a plain numpy CG loop on
the same draws, and the N-and-M table reads hand-written rows as numpy computes them."""

import json

import numpy as np
import pytest
import torch
import yaml

from iclr17.functional.conjugate_gradient import critical_width, wishart_systems
from iclr17.studies.halting import RESULTS_TABLES, ConjugateGradientRuns, HaltingStudy, cg_table, cg_widths_table
from iclr17.studies.ledger import read
from tests.conftest import REPO_ROOT
from tests.functional.numpy_references import numpy_cg


def _study(config: str) -> HaltingStudy:
    spec = yaml.safe_load((REPO_ROOT / "configs" / "studies" / config).read_text())
    system = ConjugateGradientRuns(**spec["system"]["init_args"])
    return HaltingStudy(system, n_runs=spec["n_runs"], seed=spec["seed"], name=spec["name"])


def test_the_n100_study_keeps_the_digest_of_its_committed_rows_and_the_n500_studies_state_their_switches():
    committed = read(REPO_ROOT / "results" / "ledgers" / "halting_cg.jsonl")
    planned = _study("halting_cg_wishart_n100.yaml").planned()
    assert {run.config_digest for run in planned} == {row["config_digest"] for row in committed}
    assert "rhs" not in planned[0].config and "start" not in planned[0].config
    for config, m in (("halting_cg_n500_paper.yaml", 544), ("halting_cg_n500_square.yaml", 500)):
        study = _study(config)
        arguments = study.system.arguments()
        assert (arguments["rhs"], arguments["start"], arguments["n"]) == ("uniform", "rhs", 500)
        assert critical_width(500, arguments["c"]) == m and study.system.eps[-1] == 1e-10
        assert study.name == "halting_cg_n500" and "halting-cg-n500" in RESULTS_TABLES
        command = study.command(study.planned()[0])
        assert '"rhs": "uniform"' in command and '"start": "rhs"' in command


@pytest.mark.parametrize(("name", "value"), [("rhs", "normal"), ("start", "b")])
def test_unknown_right_hand_sides_and_starts_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=f"{name}="):
        ConjugateGradientRuns(**{name: value})


def test_paper_runs_equal_a_plain_loop_from_b_on_the_same_draws_chunk_by_chunk():
    eps, seed, ensemble_index = [1e-3, 1e-8], 3, 1
    system = ConjugateGradientRuns(n=12, c=4.0, eps=eps, max_steps=300, chunk_size=4, rhs="uniform", start="rhs")
    times, censored = system.run("bernoulli", ensemble_index, 10, seed)
    expected = []
    for chunk, size in enumerate([4, 4, 2]):  # each chunk's generator: (seed, ensemble, chunk), as the study seeds
        generator = torch.Generator().manual_seed(seed * 1_000_003 + ensemble_index * 10_007 + chunk)
        a, b = wishart_systems(size, 12, 12 + 13, "bernoulli", generator, rhs="uniform")  # M = 12 + floor(sqrt(48))
        expected += [numpy_cg(a[k].numpy(), b[k].numpy(), eps, 300, x0=b[k].numpy())[0] for k in range(size)]
    assert times.tolist() == expected and not censored.any()
    assert (np.abs(b.numpy()) <= 1).all() and b.abs().max() > 0.5  # U(-1, 1), not a unit vector


def _row(c: float, ensemble: str, index: int, times: list[list[int]], censored_runs: list[list[int]]) -> dict:
    init = {"n": 20, "c": c, "eps": [1e-8], "rhs": "uniform", "start": "rhs"}
    config = json.dumps({"init_args": init, "n_runs": len(times[0]), "system": "ConjugateGradientRuns"})
    return {
        "study": "s", "config": config, "config_digest": f"c{c}", "overrides": [f"--ensembles=[{ensemble}]"],
        "params": {"system": "ConjugateGradientRuns", "n": 20, "ensemble": ensemble, "ensemble_index": index},
        "seed": 0, "status": "finished",
        "metrics": {"threshold_name": "eps", "thresholds": [1e-8], "times": times, "censored_runs": censored_runs},
    }  # fmt: skip


def test_the_widths_table_gives_n_m_and_censored_runs_per_block_from_hand_written_rows():
    rng = np.random.default_rng(0)  # one threshold: the permutation tests take 1-3 s per line
    raw = {(c, e): rng.normal(40 if c else 90, 3 if c else 15, size=(60, 1)).round().astype(int)
           for c in (1.0, 0.0) for e in ("gaussian", "bernoulli")}  # fmt: skip
    rows = [
        _row(c, e, i, raw[c, e].T.tolist(), [[5, 9]] if (c, e) == (0.0, "bernoulli") else [[]])
        for c in (0.0, 1.0) for i, e in enumerate(("gaussian", "bernoulli"))
    ]  # fmt: skip
    lines = cg_widths_table(rows, n_resamples=100).splitlines()
    assert lines[0].startswith("| N | M | eps | mean T (std) Gaussian / Bernoulli |") and lines[0].endswith(
        "| censored |"
    )
    assert lines[1] == "|---" * (lines[0].count("|") - 1) + "|"
    assert [line.split(" | ")[:3] for line in lines[2:]] == [["| 20", "28", "1e-08"], ["| 20", "20", "1e-08"]]
    # the critical width (20 + floor(sqrt(80)) = 28) first, then M = N
    assert [line.rsplit(" | ", 1)[1] for line in lines[2:]] == ["0 |", "2 |"]
    gaussian = raw[1.0, "gaussian"][:, 0]  # numpy, not the report
    bernoulli = raw[1.0, "bernoulli"][:, 0]
    cells = lines[2].split(" | ")
    assert cells[3] == f"{gaussian.mean():.1f} ({gaussian.std(ddof=1):.1f}) / {bernoulli.mean():.1f} " \
                       f"({bernoulli.std(ddof=1):.1f})"  # fmt: skip
    assert cg_table(rows, n_resamples=100) == "\n".join(lines)  # several widths: cg_table draws this table
    assert cg_widths_table([]) == "(no finished runs)"
