"""The paper's MNIST setup in the vmapped MLP ensemble (arXiv:1511.06444: "each run samples 30,000 of the training
images"): every member draws its own seeded sample and trains on it alone, halting (under each rule) and measuring
its accuracy at halting where a from-scratch single-model loop over that sample says it does."""

import pytest
import torch

from iclr17.modules.nets import MLP
from iclr17.studies.halting import HaltingStudy, MLPRuns, experiments, mlp_table
from iclr17.studies.ledger import digest, read
from iclr17.studies.mlp_ensemble import draw_samples, init_ensemble, train_until_halted
from iclr17.studies.runner import record_run
from tests.conftest import REPO_ROOT
from tests.studies.reference_sgd import reference_halting, rule_cases

N, SAMPLE, DIM, CLASSES = 90, 40, 5, 3
WIDTHS, SEEDS, ORDER_SEEDS = [DIM, 8, CLASSES], [11, 12, 13], [21, 22, 23]
LR, BATCH, EVERY, WINDOW, MAX_STEPS = 0.3, 16, 2, 3, 120  # 40 // 16 = 2 steps an epoch, the remainder dropped
THRESHOLDS = {
    "train_loss_below": [1.05, 1.0, 0.95, 0.9, 0.85],
    "loss_plateau": [0.01, 0.003, 0.001, 0.0003],
    "grad_norm_below": [0.5, 0.3, 0.2, 0.1, 0.05],
}
REFERENCE = {"seeds": SEEDS, "order_seeds": ORDER_SEEDS, "window": WINDOW, "sample_size": SAMPLE, "lr": LR,
             "batch_size": BATCH, "every": EVERY, "max_steps": MAX_STEPS}  # fmt: skip
SUBSET_THRESHOLDS = {"loss_plateau": THRESHOLDS["loss_plateau"], "grad_norm_below": [0.24, 0.2, 0.16, 0.14]}


def _data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(N, DIM, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, CLASSES, (N,), generator=generator)


def test_samples_are_seeded_of_the_right_size_without_repeats_and_distinct_across_runs():
    def generators(seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    samples = draw_samples(60_000, 30_000, generators(range(5)))
    assert samples.shape == (5, 30_000) and samples.dtype == torch.int64
    assert all(len(set(row.tolist())) == 30_000 for row in samples) and samples.min() >= 0 and samples.max() < 60_000
    assert torch.equal(samples, draw_samples(60_000, 30_000, generators(range(5))))  # seeded
    assert len({tuple(row[:50].tolist()) for row in samples}) == 5  # each run its own
    overlap = len(set(samples[0].tolist()) & set(samples[1].tolist()))
    assert 14_000 < overlap < 16_000  # independent halves of 60,000 share about 15,000
    for bad in (0, 60_001, 1.5, True):
        with pytest.raises(ValueError, match="sample_size"):
            draw_samples(60_000, bad, generators([0]))


@pytest.mark.parametrize("rule, eval_size", rule_cases(THRESHOLDS))
def test_each_member_trains_on_its_own_sample_as_a_from_scratch_loop_does(rule, eval_size, monkeypatch):
    monkeypatch.setattr("iclr17.studies.mlp_ensemble.EVAL_ROWS", 7)  # the full loss in blocks of 7, 7, ..., 5
    x, y = _data()
    x_held, y_held = _data(seed=1)
    thresholds = THRESHOLDS[rule] if eval_size is None else SUBSET_THRESHOLDS[rule]
    base, params = init_ensemble(WIDTHS, SEEDS)
    params = {k: v.double() for k, v in params.items()}
    first, last, accuracy = train_until_halted(
        base, params, x, y, torch.tensor(thresholds, dtype=torch.float64), ORDER_SEEDS, lr=LR, batch_size=BATCH,
        every_n_steps=EVERY, max_steps=MAX_STEPS, rule=rule, window=WINDOW, sample_size=SAMPLE, eval_size=eval_size,
        accuracy_on=(x_held, y_held),
    )  # fmt: skip
    _, expected, expected_accuracy = reference_halting(
        lambda: MLP(WIDTHS), (x, y, x_held, y_held), rule, thresholds, eval_size=eval_size, **REFERENCE
    )
    assert first.tolist() == expected
    for name in ("train", "held_out"):
        torch.testing.assert_close(accuracy[name], expected_accuracy[name], rtol=0, atol=1e-12)
    halted = first[first >= 0]
    assert len(set(halted.tolist())) > 2 and last == (MAX_STEPS if (first < 0).any() else halted.max())


def test_a_member_never_sees_the_samples_outside_its_own():
    x, y = _data()
    generator = torch.Generator().manual_seed(5)
    own = draw_samples(N, SAMPLE, [torch.Generator().manual_seed(ORDER_SEEDS[0])])[0]
    outside = torch.ones(N, dtype=torch.bool)
    outside[own] = False
    x_changed, y_changed = x.clone(), y.clone()
    x_changed[outside] = torch.randn(int(outside.sum()), DIM, generator=generator, dtype=torch.float64) * 5
    y_changed[outside] = (y[outside] + 1) % CLASSES
    thresholds = torch.tensor(THRESHOLDS["train_loss_below"], dtype=torch.float64)
    results = []
    for data in ((x, y), (x_changed, y_changed)):
        base, params = init_ensemble(WIDTHS, SEEDS)
        params = {k: v.double() for k, v in params.items()}
        results.append(train_until_halted(base, params, *data, thresholds, ORDER_SEEDS, lr=LR, batch_size=BATCH,
                                          every_n_steps=EVERY, max_steps=MAX_STEPS, sample_size=SAMPLE)[0])  # fmt: skip
    assert torch.equal(results[0][0], results[1][0])  # member 0 alone is blind to the change
    assert not torch.equal(results[0][1:], results[1][1:])  # the others' samples overlap it


def test_without_a_sample_the_ensemble_is_unchanged_and_accuracy_is_only_returned_on_request():
    x, y = _data()
    thresholds = torch.tensor(THRESHOLDS["train_loss_below"], dtype=torch.float64)
    base, params = init_ensemble(WIDTHS, SEEDS)
    params = {k: v.double() for k, v in params.items()}
    args = (base, params, x, y, thresholds, ORDER_SEEDS)
    kwargs = {"lr": LR, "batch_size": BATCH, "every_n_steps": EVERY, "max_steps": MAX_STEPS}
    plain = train_until_halted(*args, **kwargs)
    first, last, accuracy = train_until_halted(*args, **kwargs, accuracy_on=(x, y))
    assert len(plain) == 2 and torch.equal(plain[0], first) and plain[1] == last
    assert ((accuracy["train"] == accuracy["held_out"]) | (first < 0)).all()  # held-out = training set here
    with pytest.raises(ValueError, match="batch_size=16 is larger than the 10 training samples"):
        train_until_halted(*args, **kwargs, sample_size=10)
    with pytest.raises(ValueError, match="eval_size must be an int between 1 and the 90 training samples"):
        train_until_halted(*args, **kwargs, eval_size=91)
    with pytest.raises(ValueError, match="rule must be one of"):
        train_until_halted(*args, rule="grad_norm")


def test_the_shipped_studys_digest_is_unchanged_and_new_switches_are_validated():
    import yaml

    config = yaml.safe_load((REPO_ROOT / "configs/studies/halting_mlp_mnist_vs_random.yaml").read_text())
    system = MLPRuns(**config["system"]["init_args"])
    (row, *_) = read(REPO_ROOT / "results/ledgers/halting_mlp.jsonl")
    assert digest(system.description(config["n_runs"])) == row["config_digest"]
    paper = MLPRuns(sample_size=30_000, pool="all", accuracy_at_halting=True, rule="grad_norm_below").arguments()
    assert (paper["sample_size"], paper["pool"], paper["accuracy_at_halting"]) == (30_000, "all", True)
    for bad in ({"sample_size": 0}, {"eval_size": 0}, {"pool": "train"}, {"rule": "grad_norm"}):
        with pytest.raises(ValueError, match=f"MLPRuns: {next(iter(bad))}"):
            MLPRuns(**bad)


@pytest.mark.filterwarnings("ignore::scipy.stats.DegenerateDataWarning")  # 5 runs: degenerate bootstrap samples
@pytest.mark.filterwarnings("ignore:Precision loss occurred in moment calculation:RuntimeWarning")
def test_a_tiny_paper_setup_study_records_accuracies_and_its_table_shows_them(tmp_path, mnist_fixture_dir):
    system = MLPRuns(widths=[784, 6, 10], theta=[0.05, 0.01], lr=0.05, batch_size=50, every_n_steps=3,
                     subset_size=None, data_dir=str(mnist_fixture_dir), max_steps=60, chunk_size=3,
                     rule="loss_plateau", window=2, sample_size=300, pool="all", accuracy_at_halting=True)  # fmt: skip
    study = HaltingStudy(system, n_runs=5, n_resamples=50, name="tiny", ledger_dir=str(tmp_path),
                         runs_dir=str(tmp_path))  # fmt: skip
    for run in study.planned():
        record_run(study, run, threads=1, machine="test")
    rows = read(study.ledger)
    times, censored, measured = system.run("random", 1, 5, 0)
    assert rows[1]["metrics"]["times"] == times.T.tolist()
    torch.testing.assert_close(torch.tensor(rows[1]["metrics"]["test_accuracy"], dtype=torch.float64),
                               torch.tensor(measured["test_accuracy"].T), rtol=0, atol=1e-6)  # fmt: skip
    assert set(rows[0]["metrics"]) == {"threshold_name", "thresholds", "times", "censored_runs", "train_accuracy",
                                       "test_accuracy"}  # fmt: skip
    (x,) = experiments(rows)
    assert x["measured"]["train_accuracy"]["mnist"].shape == (5, 2)
    table = mlp_table(rows, n_resamples=50).splitlines()
    assert table[0].endswith("| test accuracy % at halting, MNIST / random |") and len(table) == 4
    mnist = 100 * x["measured"]["test_accuracy"]["mnist"][~x["censored"]["mnist"][:, 0], 0]
    if len(mnist) > 1:
        assert table[2].split(" | ")[-1].startswith(f"{mnist.mean():.1f} ({mnist.std(ddof=1):.1f}) / ")


def test_the_paper_setup_config_asks_for_the_papers_network_data_and_rule():
    import yaml

    config = yaml.safe_load((REPO_ROOT / "configs/studies/halting_mlp_paper.yaml").read_text())
    system = MLPRuns(**config["system"]["init_args"])
    assert system.widths == [784, 500, 300, 10] and system.batch_size == 100 and system.rule == "loss_plateau"
    assert (system.sample_size, system.pool, system.subset_size, system.accuracy_at_halting) == (30_000, "all", None,
                                                                                                 True)  # fmt: skip
    assert system.theta == sorted(system.theta, reverse=True) and config["n_runs"] == 100
    header = (REPO_ROOT / "configs/studies/halting_mlp_paper.yaml").read_text()
    assert "for seed in 0 1 2 3 4" in header and "--seed=$seed run" in header  # 5 x 100 runs per ensemble, pooled
    assert HaltingStudy(system, n_runs=config["n_runs"], name=config["name"]).ensembles == ["mnist", "random"]
