"""FitStudy's evaluations: one fit validated and tested several ways (here BatchNorm statistics of the test images
with Torch7's momentum, as the fit config says, and exact statistics of the training images). Each evaluation's
numbers must be those of a fresh Trainer that carries that callback and evaluates the same final weights, and the
fit must be the one a study without evaluations makes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from iclr17.callbacks import BatchNormStatistics
from iclr17.studies.fit_study import FitStudy, evaluate, evaluation_callbacks, seeds_table
from iclr17.studies.ledger import digest, per_evaluation, run_key
from tests.ddp_helpers import cpu_trainer
from tests.studies.study_configs import BN_CLASSIFIER_CONFIG, shipped_study

EVALUATIONS = {"bn_test": {}, "bn_train": {"BatchNormStatistics": {"source": "train"}}}


def _study(tmp_path, evaluations=None) -> FitStudy:
    config = tmp_path / "bn_classifier.yaml"
    config.write_text(BN_CLASSIFIER_CONFIG)
    return FitStudy(fit_config=str(config), seeds=[3], evaluations=evaluations, ledger_dir=str(tmp_path / "ledgers"),
                    runs_dir=str(tmp_path / "runs"))  # fmt: skip


def _evaluated_by_a_fresh_trainer(fit, callback) -> dict[str, float]:
    trainer = cpu_trainer([callback])
    metrics = {}
    for stage in (trainer.validate, trainer.test):
        metrics |= {k: float(v) for k, v in stage(fit.model, datamodule=fit.datamodule, verbose=False)[0].items()}
    return metrics


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One fit of the study with both evaluations: the fitted CLI, its outcome and its weights right after."""
    study = _study(tmp_path_factory.mktemp("evaluated"), EVALUATIONS)
    fit, outcome = study.fit_and_evaluate(study.planned()[0], Path(study.runs_dir) / "run")
    return fit, outcome, {k: v.clone() for k, v in fit.model.state_dict().items()}


def test_each_evaluation_is_a_fresh_trainer_with_its_callbacks_on_the_same_fit(evaluated):
    fit, outcome, weights = evaluated
    by_name = outcome.metrics["evaluations"]
    assert list(by_name) == ["bn_test", "bn_train"] and outcome.metrics["epochs"] == 3
    references = {
        "bn_test": BatchNormStatistics(source="test", momentum=0.1, batch_size=16),
        "bn_train": BatchNormStatistics(source="train"),
    }
    for name, callback in references.items():
        expected = _evaluated_by_a_fresh_trainer(fit, callback)
        assert set(by_name[name]) == set(expected) >= {"val/acc", "val/loss", "test/acc", "test/loss"}
        assert by_name[name] == pytest.approx(expected, rel=1e-6), name
    assert by_name["bn_train"]["test/loss"] != pytest.approx(by_name["bn_test"]["test/loss"])  # the swap took
    fitted = [c for c in fit.trainer.callbacks if isinstance(c, BatchNormStatistics)]
    assert len(fitted) == 1 and fitted[0].source == "test" and fitted[0].momentum == 0.1  # put back
    assert all(torch.equal(weights[k], v) for k, v in fit.model.state_dict().items())  # buffers untouched


def test_evaluations_are_part_of_a_runs_identity(tmp_path):
    plain = _study(tmp_path).planned()[0]
    content = json.dumps(yaml.safe_load((tmp_path / "bn_classifier.yaml").read_text()), sort_keys=True)
    assert plain.key == run_key(digest(content), plain.overrides, 3)
    keys = {
        _study(tmp_path, evaluations).planned()[0].key
        for evaluations in (None, EVALUATIONS, {"bn_train": {"BatchNormStatistics": {"source": "train"}}})
    }
    assert len(keys) == 3
    assert "under each evaluation" in _study(tmp_path, EVALUATIONS).command(plain)


@pytest.mark.parametrize(
    ("evaluations", "message"),
    [
        ({"x": {"NoSuchCallback": {}}}, "evaluations.x: 'NoSuchCallback' is not a callback class"),
        ({"x": {"torch.nn.Linear": {}}}, "evaluations.x: 'torch.nn.Linear' is not a callback class"),
        ({"y": {"BatchNormStatistics": {"source": "val"}}}, "evaluations.y.BatchNormStatistics: .*source must be"),
        ({"y": {"BatchNormStatistics": {"sorce": "train"}}}, "evaluations.y.BatchNormStatistics: .*sorce"),
    ],
)
def test_a_bad_evaluation_is_refused_at_construction_naming_it(tmp_path, evaluations, message):
    with pytest.raises(ValueError, match=message):
        _study(tmp_path, evaluations)


def test_an_evaluation_replacing_a_callback_the_fit_lacks_is_an_error(evaluated):
    monitor = evaluation_callbacks("m", {"pytorch_lightning.callbacks.LearningRateMonitor": {}})
    with pytest.raises(ValueError, match=r"replaces \['LearningRateMonitor'\].*has no such callback"):
        evaluate(evaluated[0], monitor)


def _row(seed, metrics, variant="v"):
    return {"params": {"variant": variant}, "seed": seed, "status": "finished", "metrics": metrics,
            "config_digest": "d", "overrides": [f"--seed_everything={seed}"]}  # fmt: skip


def test_per_evaluation_splits_rows_and_the_generic_table_shows_each_evaluation():
    rows = [
        _row(1, {"epochs": 3, "evaluations": {"a": {"test/acc": 0.5}, "b": {"test/acc": 0.7}}}),
        _row(2, {"epochs": 3, "evaluations": {"a": {"test/acc": 0.6}, "b": {"test/acc": 0.9}}}),
        _row(1, {"epochs": 3, "test/acc": 0.25}, variant="w"),
    ]
    split = per_evaluation(rows)
    assert [(r["params"], r["metrics"]) for r in split[:2]] == [
        ({"variant": "v", "evaluation": "a"}, {"epochs": 3, "test/acc": 0.5}),
        ({"variant": "v", "evaluation": "b"}, {"epochs": 3, "test/acc": 0.7}),
    ]
    assert split[4] is rows[2] and rows[0]["params"] == {"variant": "v"}  # the ledger's rows are not changed
    table = seeds_table(rows)
    assert '| {"evaluation": "a", "variant": "v"} | finished | 2 | 0.55 +- 0.07071 |' in table
    assert '| {"evaluation": "b", "variant": "v"} | finished | 2 | 0.8 +- 0.1414 |' in table
    assert '| {"variant": "w"} | finished | 1 | 0.25 |' in table


@pytest.mark.parametrize("optimizer", ["adam", "entropy"])
def test_the_lua_lenet_study_configs_evaluate_one_fit_both_ways(optimizer):
    study = shipped_study(FitStudy, f"entropy_sgd_table1_lenet_lua_{optimizer}", arxiv="1611.01838")
    assert study.evaluations == EVALUATIONS
    assert [r.params for r in study.planned()] == [{"variant": f"lenet_lua_t7init_{optimizer}"}] * 5
