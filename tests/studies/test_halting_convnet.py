"""The paper's convnet variant of the MNIST halting study (arXiv:1511.06444: "a convnet" on MNIST, same plateau
rule; its layers are ours, ``docs/papers/halting_time.md``): the vmapped ensemble trains each member as a
from-scratch ``nn.Conv2d`` loop over its own sample does (same losses, same halting steps, same accuracies), the MLP
path is unchanged, and the shipped config plans the paper's setup into its own ledger."""

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from iclr17.modules.nets import MLP, ConvNet
from iclr17.studies import mlp_ensemble
from iclr17.studies.halting import RESULTS_TABLES, HaltingStudy, MLPRuns, experiments, mlp_table
from iclr17.studies.ledger import read
from iclr17.studies.mlp_ensemble import init_ensemble, train_until_halted
from iclr17.studies.runner import record_run
from tests.conftest import REPO_ROOT
from tests.studies.reference_sgd import reference_halting, rule_cases, rule_value

N, SAMPLE, CLASSES = 90, 40, 4
WIDTHS, SEEDS, ORDER_SEEDS = [2, 3, 8, CLASSES], [11, 12, 13], [21, 22, 23]
LR, BATCH, EVERY, WINDOW, MAX_STEPS = 0.1, 16, 2, 3, 80  # 40 // 16 = 2 steps an epoch, the remainder dropped
THRESHOLDS = {
    "train_loss_below": [1.35, 1.3, 1.2, 1.1, 1.0],
    "loss_plateau": [0.02, 0.01, 0.005, 0.002, 0.001],
    "grad_norm_below": [0.4, 0.3, 0.2, 0.15],
}
REFERENCE = {"seeds": SEEDS, "order_seeds": ORDER_SEEDS, "window": WINDOW, "sample_size": SAMPLE, "lr": LR,
             "batch_size": BATCH, "every": EVERY, "max_steps": MAX_STEPS}  # fmt: skip


class _LeNet(nn.Module):
    """The reference: the layers written out on (B, 1, 28, 28) images, built in the order that draws the same
    initialisation as :class:`ConvNet` under one seed."""

    def __init__(self, c1: int, c2: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, c1, 5), nn.Conv2d(c1, c2, 5)
        self.fc1, self.fc2 = nn.Linear(c2 * 4 * 4, hidden), nn.Linear(hidden, classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x.view(-1, 1, 28, 28))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _data(seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 784, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, CLASSES, (N,), generator=generator)


@pytest.mark.parametrize("rule, eval_size", rule_cases(THRESHOLDS))
def test_each_convnet_trains_and_halts_as_a_from_scratch_conv2d_loop_does(rule, eval_size, monkeypatch):
    monkeypatch.setattr(mlp_ensemble, "EVAL_ROWS", 7)  # the full loss in blocks of 7, 7, ..., 5
    seen, update = [], mlp_ensemble.update_first_hits

    def recording(first, values, thresholds, step):  # the rule's value of each active member, at each evaluation
        seen.append((step, values.clone()))
        return update(first, values, thresholds, step)

    monkeypatch.setattr(mlp_ensemble, "update_first_hits", recording)
    x, y = _data()
    x_held, y_held = _data(seed=1)
    thresholds = THRESHOLDS[rule]
    base, params = init_ensemble(WIDTHS, SEEDS, model="convnet")
    params = {k: v.double() for k, v in params.items()}
    first, last, accuracy = train_until_halted(
        base, params, x, y, torch.tensor(thresholds, dtype=torch.float64), ORDER_SEEDS, lr=LR, batch_size=BATCH,
        every_n_steps=EVERY, max_steps=MAX_STEPS, rule=rule, window=WINDOW, sample_size=SAMPLE, eval_size=eval_size,
        accuracy_on=(x_held, y_held),
    )  # fmt: skip
    traces, expected, expected_accuracy = reference_halting(
        lambda: _LeNet(*WIDTHS), (x, y, x_held, y_held), rule, thresholds, eval_size=eval_size, **REFERENCE
    )
    assert first.tolist() == expected
    for name in ("train", "held_out"):
        torch.testing.assert_close(accuracy[name], expected_accuracy[name], rtol=0, atol=1e-12)
    stops = [max(member) if min(member) >= 0 else MAX_STEPS for member in expected]
    assert [step for step, _ in seen] == list(range(0, max(stops) + 1, EVERY))
    for step, values in seen:  # the losses (norms, mean decreases) of the members still running, in order
        running = [trace for trace, stop in zip(traces, stops, strict=True) if stop >= step]
        reference = [rule_value(trace, step // EVERY, rule, WINDOW) for trace in running]
        torch.testing.assert_close(values.double(), torch.tensor(reference, dtype=torch.float64), rtol=1e-9,
                                   atol=1e-12, equal_nan=True)  # fmt: skip
    halted = first[first >= 0]
    assert len(set(halted.tolist())) > 2 and last == (MAX_STEPS if (first < 0).any() else halted.max())


def test_the_convnet_is_the_documented_lenet_and_the_mlp_path_is_unchanged():
    torch.manual_seed(5)
    reference, x = _LeNet(20, 50, 500, 10), torch.randn(3, 784)
    base, params = init_ensemble([20, 50, 500, 10], [5], model="convnet")
    assert sum(v[0].numel() for v in params.values()) == 20 * 26 + 50 * (20 * 25 + 1) + 801 * 500 + 501 * 10
    logits = torch.func.functional_call(base, {k: v[0] for k, v in params.items()}, (x,))
    torch.testing.assert_close(logits, reference(x))
    widths, seeds = [784, 30, 10], [3, 4]
    members = []
    for seed in seeds:  # the MLP ensemble, default model: MLP(widths) right after each seed, as before
        torch.manual_seed(seed)
        members.append(MLP(widths))
    for model in ({}, {"model": "mlp"}):
        _, stacked = init_ensemble(widths, seeds, **model)
        for name, _ in members[0].named_parameters():
            assert torch.equal(stacked[name], torch.stack([dict(m.named_parameters())[name] for m in members]))
    with pytest.raises(ValueError, match="model must be one of mlp, convnet"):
        init_ensemble(widths, seeds, model="lenet")
    with pytest.raises(ValueError, match=r"ConvNet: widths must be \[c1, c2, hidden, classes\]"):
        ConvNet([20, 50, 10])


def test_mlp_runs_keep_the_mlp_configs_digests_and_name_the_convnet_only_when_asked():
    for name in ("halting_mlp_mnist_vs_random", "halting_mlp_paper"):
        spec = yaml.safe_load((REPO_ROOT / "configs" / "studies" / f"{name}.yaml").read_text())
        system = MLPRuns(**spec["system"]["init_args"])
        assert system.model == "mlp" and '"model"' not in system.description(spec["n_runs"])
    (row, *_) = read(REPO_ROOT / "results" / "ledgers" / "halting_mlp.jsonl")
    spec = yaml.safe_load((REPO_ROOT / "configs" / "studies" / "halting_mlp_mnist_vs_random.yaml").read_text())
    assert row["config"] == MLPRuns(**spec["system"]["init_args"]).description(spec["n_runs"])
    convnet = MLPRuns(model="convnet")
    assert convnet.widths == [20, 50, 500, 10] and convnet.arguments()["model"] == "convnet"
    assert MLPRuns().widths == [784, 500, 300, 10]
    for bad in ({"model": "lenet"}, {"model": "convnet", "widths": [784, 500, 10]}):
        with pytest.raises(ValueError, match=f"MLPRuns: {next(iter(reversed(bad)))}"):
            MLPRuns(**bad)


def test_the_convnet_config_plans_the_papers_setup_with_the_mlp_studys_rule_into_its_own_ledger():
    spec = yaml.safe_load((REPO_ROOT / "configs" / "studies" / "halting_convnet_paper.yaml").read_text())
    mlp = yaml.safe_load((REPO_ROOT / "configs" / "studies" / "halting_mlp_paper.yaml").read_text())
    assert spec["system"]["class_path"] == "iclr17.studies.halting.MLPRuns"
    system = MLPRuns(**spec["system"]["init_args"])
    assert (system.model, system.widths, system.batch_size, system.rule) == ("convnet", [20, 50, 500, 10], 100,
                                                                             "loss_plateau")  # fmt: skip
    assert (system.sample_size, system.pool, system.subset_size, system.accuracy_at_halting) == (30_000, "all", None,
                                                                                                 True)  # fmt: skip
    same = ("theta", "window", "every_n_steps", "eval_size", "lr", "normalization", "max_steps")
    assert {k: spec["system"]["init_args"][k] for k in same} == {k: mlp["system"]["init_args"][k] for k in same}
    study = HaltingStudy(system, n_runs=spec["n_runs"], seed=spec["seed"], name=spec["name"])
    assert (study.n_runs, study.name, study.ensembles) == (500, "halting_convnet_paper", ["mnist", "random"])
    runs = study.planned()
    assert [r.params for r in runs] == [
        {"system": "MLPRuns", "widths": [20, 50, 500, 10], "ensemble": "mnist", "ensemble_index": 0},
        {"system": "MLPRuns", "widths": [20, 50, 500, 10], "ensemble": "random", "ensemble_index": 1},
    ]
    paper = MLPRuns(**mlp["system"]["init_args"]).description(mlp["n_runs"])
    assert len({r.config_digest for r in runs}) == 1 and runs[0].config != paper
    assert '"model": "convnet"' in study.command(runs[0])
    assert RESULTS_TABLES["halting-convnet-paper"] == ("halting_convnet_paper", mlp_table)


@pytest.mark.filterwarnings("ignore::scipy.stats.DegenerateDataWarning")  # 4 runs: degenerate bootstrap samples
@pytest.mark.filterwarnings("ignore:Precision loss occurred in moment calculation:RuntimeWarning")
def test_a_tiny_convnet_study_records_times_and_accuracies_and_its_table_shows_them(tmp_path, mnist_fixture_dir):
    system = MLPRuns(widths=[2, 3, 8, 10], theta=[0.05, 0.01], lr=0.05, batch_size=50, every_n_steps=3,
                     subset_size=None, data_dir=str(mnist_fixture_dir), max_steps=30, chunk_size=3,
                     rule="loss_plateau", window=2, sample_size=300, eval_size=100, pool="all",
                     accuracy_at_halting=True, model="convnet")  # fmt: skip
    study = HaltingStudy(system, n_runs=4, n_resamples=50, name="tiny", ledger_dir=str(tmp_path),
                         runs_dir=str(tmp_path))  # fmt: skip
    for run in study.planned():
        record_run(study, run, threads=1, machine="test")
    rows = read(study.ledger)
    times, censored, measured = system.run("mnist", 0, 4, 0)
    assert rows[0]["metrics"]["times"] == times.T.tolist() and len(set(times[:, 1].tolist())) > 1
    torch.testing.assert_close(torch.tensor(rows[0]["metrics"]["test_accuracy"], dtype=torch.float64),
                               torch.tensor(measured["test_accuracy"].T), rtol=0, atol=1e-6)  # fmt: skip
    (x,) = experiments(rows)
    assert x["params"]["widths"] == [2, 3, 8, 10] and x["measured"]["train_accuracy"]["random"].shape == (4, 2)
    table = mlp_table(rows, n_resamples=50).splitlines()
    assert table[0].endswith("| test accuracy % at halting, MNIST / random |") and len(table) == 4
