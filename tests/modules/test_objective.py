"""ObjectiveModule, the shared base: injected optimizer and scheduler, the epoch loss, and the ``loss(batch)``
contract of every module built on it."""

import functools

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from iclr17.modules import MLP, Classifier, EntropyClassifier, EntropyLanguageModel, EntropySGD, LanguageModel
from iclr17.modules.objective import ObjectiveModule, WeightedMean


class Regression(ObjectiveModule):
    """Least squares on a linear model: the smallest ObjectiveModule."""

    default_optimizer = functools.partial(torch.optim.SGD, lr=0.125)

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.linear = nn.Linear(2, 1)

    def loss(self, batch):
        x, y = batch
        return F.mse_loss(self.linear(x).squeeze(-1), y)


def _data(n: int = 10, batch_size: int = 4) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 2, generator=generator), torch.randn(n, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def _fit(model: pl.LightningModule, loader: DataLoader, **kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer = pl.Trainer(**defaults, enable_model_summary=False, **kwargs)
    trainer.fit(model, loader)
    return trainer


def test_default_optimizer_is_used_when_none_is_given():
    default = Regression().configure_optimizers()
    assert isinstance(default, torch.optim.SGD) and default.param_groups[0]["lr"] == 0.125
    injected = Regression(optimizer=lambda p: torch.optim.Adam(p, lr=0.5)).configure_optimizers()
    assert isinstance(injected, torch.optim.Adam) and injected.param_groups[0]["lr"] == 0.5


def test_a_module_without_default_optimizer_asks_for_one():
    class NoDefault(ObjectiveModule):
        pass

    with pytest.raises(TypeError, match="NoDefault has no default_optimizer: pass optimizer="):
        NoDefault()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lr_scheduler_interval": "batch"}, ValueError, "lr_scheduler_interval must be 'epoch' or 'step'"),
        ({"lr_scheduler_frequency": 0}, ValueError, "lr_scheduler_frequency must be >= 1, got 0"),
        ({"lr_scheduler_frequency": 1.5}, TypeError, "lr_scheduler_frequency must be an int"),
    ],
)
def test_bad_interval_or_frequency_is_refused(kwargs, error, message):
    with pytest.raises(error, match=message):
        Regression(**kwargs)


@pytest.mark.parametrize(
    ("interval", "frequency", "epochs", "halvings"),
    [("step", 2, 2, 2), ("step", 1, 2, 6), ("epoch", 2, 3, 1), ("epoch", 1, 3, 3)],  # 3 batches an epoch
)
def test_scheduler_interval_and_frequency_reach_lightning(interval, frequency, epochs, halvings):
    scheduler = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    model = Regression(lr_scheduler=scheduler, lr_scheduler_interval=interval, lr_scheduler_frequency=frequency)
    trainer = _fit(model, _data(n=10, batch_size=4), max_epochs=epochs)
    (config,) = trainer.lr_scheduler_configs
    assert (config.interval, config.frequency) == (interval, frequency)
    assert isinstance(config.scheduler, torch.optim.lr_scheduler.StepLR)
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.125 * 0.5**halvings


def test_without_scheduler_configure_optimizers_returns_the_optimizer_alone():
    assert isinstance(Regression().configure_optimizers(), torch.optim.SGD)


class RecordEpochLoss(pl.Callback):
    """Each epoch's ``train/loss_epoch`` (callbacks' epoch-end hooks run before the module logs it)."""

    def __init__(self) -> None:
        self.values = []

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch > 0:
            self.values.append(float(trainer.callback_metrics["train/loss_epoch"]))

    def on_train_end(self, trainer, pl_module):
        self.values.append(float(trainer.callback_metrics["train/loss_epoch"]))


@pytest.mark.parametrize("accumulate", [1, 2])
def test_epoch_loss_is_the_sample_weighted_mean_of_the_epoch(accumulate):
    """Batches of 4, 4 and 2 samples with the weights frozen (lr 0): the epoch loss is the loss of all 10
    samples, not the mean of the three batch means; each epoch starts afresh."""
    loader = _data(n=10, batch_size=4)
    model = Regression(optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    record = RecordEpochLoss()
    _fit(model, loader, max_epochs=2, accumulate_grad_batches=accumulate, callbacks=[record])
    with torch.no_grad():
        losses = [model.loss(batch) for batch in loader]
        sizes = [len(batch[1]) for batch in loader]
        weighted = sum(loss * size for loss, size in zip(losses, sizes, strict=True)) / sum(sizes)
        mean_of_means = sum(losses) / len(losses)
    assert float(weighted) != pytest.approx(float(mean_of_means), rel=1e-3)  # the weights matter here
    assert record.values == pytest.approx([float(weighted)] * 2, rel=1e-6)


def test_epoch_loss_weight_is_the_hook_that_weighs_it():
    class FirstBatchCounts(Regression):
        def epoch_loss_weight(self, batch):
            return 1  # every batch counts once: the mean of the batch means

    loader = _data(n=10, batch_size=4)
    model = FirstBatchCounts(optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    record = RecordEpochLoss()
    _fit(model, loader, max_epochs=1, callbacks=[record])
    with torch.no_grad():
        mean_of_means = sum(model.loss(batch) for batch in loader) / 3
    assert record.values == pytest.approx([float(mean_of_means)], rel=1e-6)


def test_weighted_mean_honours_the_weights_and_lets_a_nan_through():
    """What torchmetrics' MeanMetric(nan_strategy="disable") does not do (it replaces the weights by ones)."""
    mean = WeightedMean()
    mean.update(torch.tensor(3.0), 4)
    mean.update(torch.tensor(1.0), 2)
    assert mean.compute().item() == pytest.approx((3 * 4 + 1 * 2) / 6)
    mean.update(torch.tensor(float("nan")), 1)
    assert torch.isnan(mean.compute())
    mean.reset()
    mean.update(torch.tensor(5.0))
    assert mean.compute().item() == 5.0
    assert not any("train_loss_epoch" in key for key in Regression().state_dict())  # not in checkpoints


def test_training_step_returns_the_loss_and_logs_it_as_loss_step():
    loader = _data(n=8, batch_size=4)
    model = Regression(optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    trainer = _fit(model, loader, max_epochs=1, log_every_n_steps=1)
    with torch.no_grad():
        last = model.loss(list(loader)[-1])
    assert float(trainer.callback_metrics["train/loss_step"]) == pytest.approx(float(last), rel=1e-6)


# ---- the loss(batch) contract of every module built on ObjectiveModule ----


def _tokens(rows: int, columns: int) -> torch.Tensor:
    return torch.randint(0, 11, (rows, columns), generator=torch.Generator().manual_seed(0))


def _classifier(cls):
    return cls(MLP([4, 5, 3]), num_classes=3)


def _language_model(cls):
    return cls(vocab_size=11, hidden_size=6, dropout=0.2, init_range=0.3, train_loss="sum_over_time")


def _image_batch(rows: int = 6):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(rows, 4, generator=generator), torch.randint(0, 3, (rows,), generator=generator)


def _text_batch(rows: int = 4):
    tokens = _tokens(rows, 6)
    return tokens[:, :5], tokens[:, 1:]


CASES = {
    "Classifier": (functools.partial(_classifier, Classifier), _image_batch),
    "EntropyClassifier": (functools.partial(_classifier, EntropyClassifier), _image_batch),
    "LanguageModel": (functools.partial(_language_model, LanguageModel), _text_batch),
    "EntropyLanguageModel": (functools.partial(_language_model, EntropyLanguageModel), _text_batch),
}


def _snapshot(module: nn.Module) -> dict:
    """Every tensor (metric states included) and every plain attribute of every submodule."""
    state = {f"tensor {k}": v.clone() for k, v in module.state_dict(keep_vars=False).items()}
    for name, submodule in module.named_modules():
        for key, value in vars(submodule).items():
            if isinstance(value, torch.Tensor):
                state[f"attr {name}.{key}"] = value.clone()
            elif isinstance(value, (bool, int, float, str, type(None))):
                state[f"attr {name}.{key}"] = value
            elif isinstance(value, dict) and key == "_states":
                state[f"attr {name}.{key}"] = {k: tuple(t.clone() for t in v) for k, v in value.items()}
    return state


def _assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, after[key]), key
        elif isinstance(value, dict):
            assert value.keys() == after[key].keys(), key
            for k in value:
                assert all(torch.equal(a, b) for a, b in zip(value[k], after[key][k], strict=True)), key
        else:
            assert value == after[key], key


def _refuse(*args, **kwargs):
    raise AssertionError("loss(batch) must not log")


@pytest.mark.parametrize("name", CASES)
def test_loss_has_no_side_effects(name):
    """No logging, no write to any module state (weights, metrics, the carried BPTT state, flags), and in
    evaluation mode not a single draw from the global RNG."""
    build, batch = CASES[name]
    model = build()
    model.log = model.log_dict = _refuse
    if isinstance(model, LanguageModel):
        model._mean_nll("train", _text_batch())  # a carried training state that loss() must leave alone
    model.train_loss_epoch.update(torch.tensor(2.0), 3)  # a half-accumulated epoch loss
    before = _snapshot(model)
    loss = model.loss(batch())
    loss.backward()  # what a callback does with it; gradients are no module state
    assert loss.ndim == 0 and torch.isfinite(loss)
    _assert_same(before, _snapshot(model))
    model.eval()
    rng = torch.random.get_rng_state()
    first, second = model.loss(batch()), model.loss(batch())
    assert torch.equal(rng, torch.random.get_rng_state()) and torch.equal(first, second)


@pytest.mark.parametrize("name", ["Classifier", "EntropyClassifier"])
def test_classifier_loss_is_the_cross_entropy_of_the_net(name):
    build, batch = CASES[name]
    model = build().eval()
    x, y = batch()
    torch.testing.assert_close(model.loss((x, y)), F.cross_entropy(model.net(x), y), rtol=0, atol=0)


def test_every_module_defaults_to_its_papers_optimizer():
    assert isinstance(_classifier(Classifier).configure_optimizers(), torch.optim.Adam)
    sgd = _language_model(LanguageModel).configure_optimizers()
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["lr"] == 1.0
    entropy = _classifier(EntropyClassifier).configure_optimizers()
    assert isinstance(entropy, EntropySGD) and entropy.L == EntropySGD(nn.Linear(1, 1).parameters()).L
    adam = _language_model(EntropyLanguageModel).configure_optimizers()
    assert isinstance(adam, EntropySGD) and adam.L == 5 and adam.param_groups[0]["lr"] == 0.01
