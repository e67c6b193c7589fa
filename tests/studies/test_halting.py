"""The vmapped MLP ensemble against a plain one-run loop; the study command end to end. (Conjugate gradient, the
other system, is pure math: tests/functional/test_conjugate_gradient.py checks it against a numpy loop.)"""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iclr17.modules.nets import MLP
from iclr17.studies.halting import main as study_main
from iclr17.studies.mlp_ensemble import init_ensemble, train_until_halted


def test_ensemble_member_equals_a_plain_sgd_loop_with_its_seed_and_order():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(60, 5, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=generator)
    widths, seeds, order_seeds = [5, 8, 3], [11, 12, 13], [21, 22, 23]
    thresholds = [1.0, 0.8]
    base, params = init_ensemble(widths, seeds)
    params = {k: v.double() for k, v in params.items()}
    first, _ = train_until_halted(
        base, params, x, y, torch.tensor(thresholds, dtype=torch.float64), order_seeds, lr=0.2, batch_size=16,
        every_n_steps=2, max_steps=2000,
    )  # fmt: skip
    for k in range(3):
        torch.manual_seed(seeds[k])
        net = MLP(widths).double()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.2)
        order_generator, expected, step = torch.Generator().manual_seed(order_seeds[k]), [-1, -1], 0
        while min(expected) < 0:
            if step % 2 == 0:
                with torch.no_grad():
                    loss = F.cross_entropy(net(x), y).item()
                expected = [step if e < 0 and loss < t else e for e, t in zip(expected, thresholds, strict=True)]
            if step % 3 == 0:  # 60 // 16 = 3 steps an epoch
                order = torch.randperm(60, generator=order_generator)
            batch = order[(step % 3) * 16 : (step % 3 + 1) * 16]
            optimizer.zero_grad()
            F.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
            step += 1
        assert first[k].tolist() == expected
    assert len(set(first[:, 1].tolist())) > 1  # members differ: own seeds and orders


def test_study_command_writes_statistics_raw_times_and_figure(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text(
        "name: tiny\nn_runs: 60\nn_resamples: 100\n"
        f"out_dir: {tmp_path}\n"
        "system:\n  class_path: iclr17.studies.halting.ConjugateGradientRuns\n"
        "  init_args: {n: 20, eps: [1.0e-4, 1.0e-8], chunk_size: 25}\n"
    )
    result = study_main(["--config", str(config)])
    saved = json.loads((tmp_path / "tiny.json").read_text())
    assert saved["n_runs"] == 60 and set(saved["by_threshold"]) == {"0.0001", "1e-08"}
    report = saved["by_threshold"]["1e-08"]
    assert set(report["ensembles"]) == {"gaussian", "bernoulli"} and "gaussian vs bernoulli" in report["universality"]
    assert report["ensembles"]["gaussian"]["n"] == 60 and report["pooled"]["n"] == 120
    raw = np.load(tmp_path / "tiny_times.npz")
    assert raw["gaussian_times"].shape == (60, 2) and not raw["bernoulli_censored"].any()
    assert (tmp_path / "tiny.png").stat().st_size > 10_000
    assert result["by_threshold"]["1e-08"]["ensembles"]["bernoulli"]["mean"] == pytest.approx(
        raw["bernoulli_times"][:, 1].mean()
    )


@pytest.mark.slow
def test_spin_glass_and_cg_reproduce_the_papers_universality_findings(tmp_path):
    """arXiv:1511.06444 (``docs/papers/halting_time.md``): spin glass, Gaussian vs Bernoulli couplings, ~2,000 runs
    each: two-sample KS does not reject at 5%, skewness positive and closer to the Gumbel's 1.14 than to 0; CG at
    critical scaling: skewness near 0 (15-60 s)."""
    sg = study_main(
        ["--name=sg", "--n_runs=2000", f"--out_dir={tmp_path}", "--ensembles=[gaussian, bernoulli]",
         "--system=iclr17.studies.halting.SpinGlassRuns", "--system.n_spins=32", "--system.eps=[1.0]",
         "--system.max_steps=5000"]
    )  # fmt: skip
    report = sg["by_threshold"]["1"]
    assert report["universality"]["gaussian vs bernoulli"]["ks_pvalue"] > 0.05
    assert abs(report["pooled"]["skewness"] - 1.14) < report["pooled"]["skewness"]
    cg = study_main(
        ["--name=cg", "--n_runs=2000", f"--out_dir={tmp_path}",
         "--system=iclr17.studies.halting.ConjugateGradientRuns", "--system.n=100", "--system.eps=[1.0e-8]"]
    )  # fmt: skip
    assert abs(cg["by_threshold"]["1e-08"]["pooled"]["skewness"]) < 0.2
    assert cg["by_threshold"]["1e-08"]["universality"]["gaussian vs bernoulli"]["ks_pvalue"] > 0.05
