"""HaltingTime against independent plain training loops: same seed, same data, same first step."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, IterableDataset, RandomSampler, TensorDataset

from iclr17.callbacks import HaltingTime
from iclr17.datamodules import GaussianMixtureDataModule
from iclr17.modules import MLP, Classifier
from tests.callbacks.user_models import LossAttribute, LossHelper, UserClassifier, cross_entropy

LR = 0.5


def _data() -> GaussianMixtureDataModule:
    dm = GaussianMixtureDataModule(num_classes=3, dim=2, n_samples=90, batch_size=None, seed=1)
    dm.setup("fit")
    return dm


def _model() -> Classifier:
    pl.seed_everything(0)
    return Classifier(MLP([2, 6, 3]), num_classes=3, optimizer=lambda p: torch.optim.SGD(p, lr=LR))


def _fit(callback, model=None, ckpt_path=None, **trainer_kwargs):
    model = model or _model()
    kwargs = {"max_steps": 200, "limit_val_batches": 0, **trainer_kwargs}
    trainer = pl.Trainer(
        logger=False, enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[callback], **kwargs,
    )  # fmt: skip
    trainer.fit(model, _data(), ckpt_path=ckpt_path)
    return trainer, model


def _plain_trajectory(steps: int) -> tuple[list[float], list[float]]:
    """Full-batch gradient descent written out by hand: the loss and gradient norm at each step t (before
    step t's update)."""
    torch.manual_seed(0)
    net = MLP([2, 6, 3])
    x, y = _data().train_set.tensors
    losses, grad_norms = [], []
    for _ in range(steps):
        loss = F.cross_entropy(net(x), y)
        grads = torch.autograd.grad(loss, list(net.parameters()))
        losses.append(loss.item())
        grad_norms.append(torch.cat([g.flatten() for g in grads]).norm().item())
        with torch.no_grad():
            for p, g in zip(net.parameters(), grads, strict=True):
                p -= LR * g
    return losses, grad_norms


def _first(values, threshold):
    return next(t for t, v in enumerate(values) if v < threshold)


def test_full_data_loss_rule_halts_where_a_plain_loop_does():
    losses, _ = _plain_trajectory(200)
    thresholds = [0.9, 0.6, 0.4]
    callback = HaltingTime("train_loss_below", thresholds, loss_source="full_data")
    trainer, _ = _fit(callback)
    expected = [_first(losses, t) for t in thresholds]
    assert expected[0] < expected[1] < expected[2] < 200
    assert [r["step"] for r in callback.record] == expected
    assert callback.halting_step == expected[-1] == trainer.global_step  # stopped right there
    assert not any(r["censored"] for r in callback.record)
    assert all(r["value"] < r["threshold"] for r in callback.record)
    assert callback.record[0]["wall_time"] <= callback.record[-1]["wall_time"]


def test_full_data_every_n_steps_rounds_up_to_the_next_evaluation():
    losses, _ = _plain_trajectory(200)
    callback = HaltingTime("train_loss_below", 0.6, every_n_steps=7)
    _fit(callback)
    expected = next(t for t in range(0, 200, 7) if losses[t] < 0.6)
    assert callback.halting_step == expected


def test_grad_norm_rule_halts_where_a_plain_loop_does():
    _, grad_norms = _plain_trajectory(200)
    t0 = next(t for t in range(100, 200) if grad_norms[t] < min(grad_norms[:t]))
    threshold = (grad_norms[t0] + min(grad_norms[:t0])) / 2  # away from a float32 tie
    callback = HaltingTime("grad_norm_below", threshold)
    trainer, _ = _fit(callback)
    assert callback.halting_step == _first(grad_norms, threshold)
    assert trainer.global_step == callback.halting_step + 1  # the step in progress is finished


def test_epoch_mean_and_ema_rules_match_the_plain_loop():
    losses, _ = _plain_trajectory(200)
    epoch_mean = HaltingTime("train_loss_below", 0.6, loss_source="epoch_mean")
    _fit(epoch_mean)
    assert epoch_mean.halting_step == _first(losses, 0.6) + 1  # full batch: epoch t's mean is loss t, read after it
    ema = HaltingTime("train_loss_below", 0.6, loss_source="ema", ema_decay=0.5)
    _fit(ema)
    average, smoothed = None, []
    for loss in losses:
        average = loss if average is None else 0.5 * average + 0.5 * loss
        smoothed.append(average)
    assert ema.halting_step == _first(smoothed, 0.6) + 1


def test_metric_rule_reads_validation_metrics():
    callback = HaltingTime("metric_at_least", 0.9, monitor="val/acc")
    trainer, _ = _fit(callback, limit_val_batches=1.0, val_check_interval=1, check_val_every_n_epoch=5)
    assert callback.halting_step is not None and callback.halting_step % 5 == 0
    assert callback.record[0]["value"] >= 0.9


def test_unreached_threshold_is_censored_not_dropped():
    callback = HaltingTime("train_loss_below", [0.9, 1e-6])
    trainer, _ = _fit(callback, max_steps=30)
    reached, censored = callback.record
    assert not reached["censored"] and reached["step"] < 30
    assert censored["censored"] and censored["step"] == 30 == trainer.global_step
    assert callback.halting_step is None
    assert callback.halting_steps == {0.9: reached["step"], 1e-6: None}


def test_resume_from_checkpoint_finds_the_same_halting_steps(tmp_path):
    thresholds = [0.9, 0.4]
    uninterrupted = HaltingTime("train_loss_below", thresholds)
    _fit(uninterrupted)
    first = HaltingTime("train_loss_below", thresholds)
    trainer, model = _fit(first, max_steps=uninterrupted.record[0]["step"] + 3)
    assert first.record[1]["censored"]
    trainer.save_checkpoint(tmp_path / "halfway.ckpt")
    resumed = HaltingTime("train_loss_below", thresholds)
    _fit(resumed, model=_model(), ckpt_path=tmp_path / "halfway.ckpt")
    assert [r["step"] for r in resumed.record] == [r["step"] for r in uninterrupted.record]
    assert not resumed.record[1]["censored"]
    assert resumed.record[1]["wall_time"] >= first.record[0]["wall_time"]


def test_state_dict_round_trip_and_state_key():
    a = HaltingTime("train_loss_below", [0.5, 0.1])
    a.record[0].update(step=3, epoch=3, wall_time=0.1, value=0.4)
    b = HaltingTime("train_loss_below", [0.5, 0.1])
    b.load_state_dict(a.state_dict())
    assert b.record == a.record and b.halting_steps == {0.5: 3, 0.1: None}
    assert a.state_key != HaltingTime("grad_norm_below", [0.5, 0.1]).state_key


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="monitor"):
        HaltingTime("metric_at_least", 0.5)
    with pytest.raises(ValueError, match="every_n_steps"):
        HaltingTime(every_n_steps=0)


class CountBatches(pl.Callback):
    def __init__(self) -> None:
        self.per_epoch: list[int] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.per_epoch.append(0)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.per_epoch[-1] += 1


def test_full_data_evaluation_leaves_a_loader_with_workers_alone():
    """The full-data pass must not iterate the training loader itself: with persistent workers that resets the
    training iterator mid-epoch and silently skips batches."""
    pl.seed_everything(0)
    dm = GaussianMixtureDataModule(num_classes=3, dim=2, n_samples=90, batch_size=10, seed=1, num_workers=1)
    count = CountBatches()
    halting = HaltingTime("train_loss_below", [1e-9], loss_source="full_data", stop=False)
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, limit_val_batches=0, callbacks=[halting, count],
    )  # fmt: skip
    trainer.fit(_model(), dm)
    assert count.per_epoch == [9, 9] and trainer.global_step == 18


class EpochLosses(pl.Callback):
    def __init__(self) -> None:
        self.after_epoch: list[tuple[int, int, float]] = []  # (epoch, step, train/loss_epoch) as finally logged

    def on_train_epoch_start(self, trainer, pl_module):
        if "train/loss_epoch" in trainer.callback_metrics:
            value = float(trainer.callback_metrics["train/loss_epoch"])
            self.after_epoch.append((trainer.current_epoch - 1, trainer.global_step, value))


def test_metric_rule_on_a_training_epoch_metric_is_not_one_epoch_late():
    losses = EpochLosses()
    halting = HaltingTime("metric_below", [0.6], monitor="train/loss_epoch", stop=False)
    trainer = pl.Trainer(
        max_steps=40, limit_val_batches=0, logger=False, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, callbacks=[halting, losses],
    )  # fmt: skip
    trainer.fit(_model(), _data())
    epoch, step, _ = next(entry for entry in losses.after_epoch if entry[2] < 0.6)
    assert (halting.record[0]["epoch"], halting.record[0]["step"]) == (epoch, step)


def test_full_data_loss_on_a_plain_train_loader_without_a_datamodule():
    """``trainer.fit(model, loader)``: the full-data loss reads the trainer's own training loader."""
    losses, _ = _plain_trajectory(200)
    x, y = _data().train_set.tensors
    callback = HaltingTime("train_loss_below", [0.9, 0.6], loss_source="full_data")
    trainer = pl.Trainer(
        max_steps=200, logger=False, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, callbacks=[callback],
    )  # fmt: skip
    trainer.fit(_model(), DataLoader(TensorDataset(x, y), batch_size=len(x)))
    assert [r["step"] for r in callback.record] == [_first(losses, 0.9), _first(losses, 0.6)]


class PreBatched(IterableDataset):
    """Ten batches of five Gaussian-mixture samples, yielded already batched (as a BPTT stream is)."""

    def __init__(self) -> None:
        self.x, self.y = _data().train_set.tensors

    def __iter__(self):
        for i in range(10):
            yield self.x[5 * i : 5 * i + 5], self.y[5 * i : 5 * i + 5]

    def __len__(self) -> int:
        return 10


def test_full_data_evaluation_leaves_a_pre_batched_loader_with_workers_alone():
    """A loader of ready-made batches (``batch_size=None``) with a persistent worker must not be iterated by the
    full-data pass either: that would restart the training iterator mid-epoch and end the epoch early."""
    count = CountBatches()
    halting = HaltingTime("train_loss_below", [1e-9], loss_source="full_data", stop=False)
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, callbacks=[halting, count],
    )  # fmt: skip
    trainer.fit(_model(), DataLoader(PreBatched(), batch_size=None, num_workers=1, persistent_workers=True))
    assert count.per_epoch == [10, 10] and trainer.global_step == 20


class SeenBatches(pl.Callback):
    def __init__(self) -> None:
        self.targets: list[list[int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.targets.append(batch[1].tolist())


def _shuffled_batches(*callbacks) -> list[list[int]]:
    x, y = _data().train_set.tensors
    y = torch.arange(len(y)) % 3  # the sample order, readable from the targets
    sampler = BatchSampler(RandomSampler(range(len(x)), generator=torch.Generator().manual_seed(0)), 30, False)
    seen = SeenBatches()
    trainer = pl.Trainer(
        max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, callbacks=[*callbacks, seen],
    )  # fmt: skip
    trainer.fit(_model(), DataLoader(TensorDataset(x, y), batch_sampler=sampler))
    return seen.targets


def test_full_data_evaluation_does_not_advance_the_training_samplers_generator():
    """A batch sampler that shuffles with its own generator gives training the same batches with the callback."""
    halting = HaltingTime("train_loss_below", [1e-9], loss_source="full_data", stop=False)
    assert _shuffled_batches(halting) == _shuffled_batches()


class DoubledLoss(Classifier):
    """A module whose ``loss(batch)`` is twice the cross-entropy: the callback measures what ``loss`` returns."""

    def loss(self, batch):
        return 2 * F.cross_entropy(self(batch[0]), batch[1])


@pytest.mark.parametrize(("cls", "factor"), [(DoubledLoss, 2.0), (Classifier, 1.0)])
def test_full_data_default_loss_is_the_modules_loss_method(cls, factor):
    losses, _ = _plain_trajectory(1)
    callback = HaltingTime("train_loss_below", 100.0, loss_source="full_data")
    pl.seed_everything(0)
    _fit(callback, model=cls(MLP([2, 6, 3]), num_classes=3, optimizer=lambda p: torch.optim.SGD(p, lr=LR)))
    assert callback.record[0]["step"] == 0
    assert callback.record[0]["value"] == pytest.approx(factor * losses[0], rel=1e-6)


def test_a_user_model_without_loss_method_halts_through_loss_fn_where_a_plain_loop_does():
    losses, _ = _plain_trajectory(200)
    torch.manual_seed(0)
    model = UserClassifier(MLP([2, 6, 3]), lr=LR)  # the plain loop's initial weights
    callback = HaltingTime("train_loss_below", [0.9, 0.6], loss_source="full_data", loss_fn=cross_entropy)
    _fit(callback, model=model)
    assert [r["step"] for r in callback.record] == [_first(losses, 0.9), _first(losses, 0.6)]


@pytest.mark.parametrize("cls", [UserClassifier, LossAttribute, LossHelper])
def test_full_data_refuses_a_model_without_loss_method_or_loss_fn(cls):
    name = cls.__name__
    with pytest.raises(TypeError, match=rf"^HaltingTime.*: {name} .*Define {name}\.loss\(self, batch\).*loss_fn="):
        _fit(HaltingTime("train_loss_below", 0.5), model=cls())
    for accepted in (HaltingTime("train_loss_below", 0.5, loss_fn=cross_entropy), HaltingTime("grad_norm_below", 0.5)):
        accepted.setup(pl.Trainer(logger=False), cls(), "fit")
    HaltingTime("train_loss_below", 0.5, loss_source="ema").setup(pl.Trainer(logger=False), cls(), "fit")


# ---- the plateau rule (arXiv:1511.06444: stop "when the average of successive differences in cost values goes
# below a prescribed value") ---------------------------------------------------------------------------------------


def _plateau_first_hit(costs, window, threshold):
    """A plain loop: the first index t whose last ``window`` differences ``costs[i - 1] - costs[i]`` average below
    ``threshold``."""
    for t in range(window, len(costs)):
        if sum(costs[i - 1] - costs[i] for i in range(t - window + 1, t + 1)) / window < threshold:
            return t
    return None


def _plateau_thresholds(costs, window, targets):
    """Thresholds first met at the ``targets`` indices, each halfway between the plateau value there and the
    smallest before it (away from a float32 tie)."""
    values = [sum(costs[i - 1] - costs[i] for i in range(t - window + 1, t + 1)) / window for t in range(len(costs))
              if t >= window]  # fmt: skip
    thresholds = []
    for target in targets:
        t0 = next(t for t in range(target, len(costs)) if values[t - window] < min(values[: t - window]))
        thresholds.append((values[t0 - window] + min(values[: t0 - window])) / 2)
    return thresholds


def test_plateau_rule_halts_where_a_plain_loop_does():
    losses, _ = _plain_trajectory(200)
    thresholds = _plateau_thresholds(losses, 5, [40, 120])
    callback = HaltingTime("loss_plateau", thresholds, loss_source="full_data", window=5)
    trainer, _ = _fit(callback)
    expected = [_plateau_first_hit(losses, 5, t) for t in thresholds]
    assert 40 <= expected[0] < expected[1] < 200
    assert [r["step"] for r in callback.record] == expected
    assert callback.halting_step == expected[-1] == trainer.global_step  # stopped right there
    for r, t in zip(callback.record, expected, strict=True):  # the recorded value is the mean decrease
        assert r["value"] == pytest.approx((losses[t - 5] - losses[t]) / 5, rel=1e-4) and r["value"] < r["threshold"]


def test_plateau_rule_reads_the_ema_and_every_n_steps_evaluations():
    losses, _ = _plain_trajectory(200)
    average, smoothed = None, []
    for loss in losses:
        average = loss if average is None else 0.5 * average + 0.5 * loss
        smoothed.append(average)
    (threshold,) = _plateau_thresholds(smoothed, 3, [60])
    ema = HaltingTime("loss_plateau", threshold, loss_source="ema", ema_decay=0.5, window=3)
    _fit(ema)
    assert ema.halting_step == _plateau_first_hit(smoothed, 3, threshold) + 1  # the EMA of step t is read after it
    every = list(range(0, 200, 7))
    (threshold,) = _plateau_thresholds([losses[t] for t in every], 2, [8])
    sparse = HaltingTime("loss_plateau", threshold, every_n_steps=7, window=2)  # differences 7 steps apart
    _fit(sparse)
    assert sparse.halting_step == every[_plateau_first_hit([losses[t] for t in every], 2, threshold)]


def test_plateau_resume_from_checkpoint_halts_at_the_same_step(tmp_path):
    """The window of recent costs is checkpointed: stopped two steps before halting, a resumed run halts where the
    uninterrupted one did (an empty window would need 5 more costs; the resumed run's first evaluation, at the
    checkpoint's step, replaces that step's cost instead of adding a zero difference)."""
    losses, _ = _plain_trajectory(200)
    thresholds = _plateau_thresholds(losses, 5, [30, 90])
    uninterrupted = HaltingTime("loss_plateau", thresholds, window=5)
    _fit(uninterrupted)
    halting = uninterrupted.halting_step
    first = HaltingTime("loss_plateau", thresholds, window=5)
    trainer, _ = _fit(first, max_steps=halting - 2)
    assert first.record[1]["censored"] and not first.record[0]["censored"]
    trainer.save_checkpoint(tmp_path / "halfway.ckpt")
    state = torch.load(tmp_path / "halfway.ckpt", weights_only=False)["callbacks"][first.state_key]
    assert state["recent_costs"] == pytest.approx(losses[halting - 7 : halting - 1], rel=1e-6)
    resumed = HaltingTime("loss_plateau", thresholds, window=5)
    _fit(resumed, model=_model(), ckpt_path=tmp_path / "halfway.ckpt")
    assert [r["step"] for r in resumed.record] == [r["step"] for r in uninterrupted.record]
    assert resumed.record[1]["value"] == pytest.approx(uninterrupted.record[1]["value"], rel=1e-9)


def test_plateau_state_dict_round_trip_and_state_key():
    a = HaltingTime("loss_plateau", [0.01], window=2)
    a.recent_costs, a._cost_step = torch.tensor([1.0, 0.9, 0.85], dtype=torch.float64), 7
    b = HaltingTime("loss_plateau", [0.01], window=2)
    b.load_state_dict(a.state_dict())
    assert b.recent_costs.tolist() == [1.0, 0.9, 0.85] and b._cost_step == 7
    with pytest.raises(ValueError, match="window=3"):
        HaltingTime("loss_plateau", [0.01], window=3).load_state_dict(a.state_dict())
    keys = {HaltingTime("loss_plateau", [0.01], window=w).state_key for w in (2, 3)}
    assert len(keys) == 2 and a.state_key != HaltingTime("train_loss_below", [0.01]).state_key


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rule": "plateau"}, r"rule must be one of .*loss_plateau.*got rule='plateau'"),
        ({"loss_source": "full"}, r"loss_source must be one of .*got loss_source='full'"),
        ({"rule": "loss_plateau", "window": 0}, r"window .* int >= 1, got window=0"),
        ({"rule": "loss_plateau", "window": 2.5}, r"window .* int >= 1, got window=2.5"),
    ],
)
def test_plateau_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HaltingTime(**kwargs)


# ---- epoch_mean and ema over minibatches (several batches per epoch, gradient accumulation) -----------------------


def _plain_minibatch_losses(epochs: int, batch_size: int, accumulate: int = 1) -> list[list[float]]:
    """Minibatch SGD written out by hand, batches in order: each epoch's list of batch losses (the loss of each
    batch before the update it takes part in). With ``accumulate > 1`` the gradients of ``loss / accumulate`` of
    ``accumulate`` successive batches are summed before one update."""
    torch.manual_seed(0)
    net = MLP([2, 6, 3])
    x, y = _data().train_set.tensors
    starts = list(range(0, len(x), batch_size))
    assert len(starts) % accumulate == 0
    per_epoch = []
    for _ in range(epochs):
        losses, summed = [], None
        for i, start in enumerate(starts):
            loss = F.cross_entropy(net(x[start : start + batch_size]), y[start : start + batch_size])
            grads = torch.autograd.grad(loss / accumulate, list(net.parameters()))
            losses.append(loss.item())
            summed = grads if summed is None else [s + g for s, g in zip(summed, grads, strict=True)]
            if (i + 1) % accumulate == 0:
                with torch.no_grad():
                    for p, g in zip(net.parameters(), summed, strict=True):
                        p -= LR * g
                summed = None
        per_epoch.append(losses)
    return per_epoch


def _fit_in_order(callback, epochs: int, batch_size: int, accumulate: int = 1) -> pl.Trainer:
    x, y = _data().train_set.tensors
    trainer = pl.Trainer(
        max_epochs=epochs, accumulate_grad_batches=accumulate, logger=False, enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False, callbacks=[callback],
    )  # fmt: skip
    trainer.fit(_model(), DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False))
    return trainer


def _first_or_none(values, threshold):
    return next((t for t, v in enumerate(values) if v < threshold), None)


def test_epoch_mean_is_the_mean_of_the_epochs_batch_losses_not_the_last_one():
    """Three batches per epoch: the cost read at epoch e's end (step 3(e + 1)) is the mean of its three batch
    losses, as a plain minibatch loop averages them; the last (or first) batch's loss alone halts elsewhere."""
    epochs, thresholds = 12, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.35, 0.2]
    per_epoch = _plain_minibatch_losses(epochs, batch_size=30)
    means = [sum(losses) / len(losses) for losses in per_epoch]
    callback = HaltingTime("train_loss_below", thresholds, loss_source="epoch_mean", stop=False)
    trainer = _fit_in_order(callback, epochs, batch_size=30)
    assert trainer.global_step == 3 * epochs

    def steps(costs):
        return [None if (e := _first_or_none(costs, t)) is None else 3 * (e + 1) for t in thresholds]

    expected = steps(means)
    assert sum(s is not None for s in expected) >= 6  # most thresholds are reached within the run
    assert expected != steps([losses[-1] for losses in per_epoch])  # the data tell the mean from the last batch
    assert expected != steps([losses[0] for losses in per_epoch])
    assert list(callback.halting_steps.values()) == expected
    for r, step in zip(callback.record, expected, strict=True):
        if step is not None:
            assert r["epoch"] == step // 3 - 1
            assert r["value"] == pytest.approx(means[step // 3 - 1], rel=1e-5)


def test_ema_under_gradient_accumulation_averages_each_batchs_own_loss():
    """``accumulate_grad_batches=3``: the EMA is updated after every batch with that batch's loss as training_step
    returned it (Lightning hands callbacks the loss divided by 3; the callback undoes that), starting from the
    first batch's loss, and a threshold's step is the number of optimizer steps taken when the EMA first went
    below it."""
    epochs, decay, thresholds = 12, 0.7, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.2]
    losses = [loss for epoch in _plain_minibatch_losses(epochs, batch_size=10, accumulate=3) for loss in epoch]
    average, smoothed = None, []
    for loss in losses:
        average = loss if average is None else decay * average + (1 - decay) * loss
        smoothed.append(average)
    callback = HaltingTime("train_loss_below", thresholds, loss_source="ema", ema_decay=decay, stop=False)
    trainer = _fit_in_order(callback, epochs, batch_size=10, accumulate=3)
    assert trainer.global_step == len(losses) // 3 == 3 * epochs  # nine batches, three optimizer steps per epoch
    first_batches = [_first_or_none(smoothed, t) for t in thresholds]
    assert sum(b is not None for b in first_batches) >= 5
    assert any(b is not None and (b + 1) % 3 for b in first_batches)  # some are crossed between optimizer steps
    expected = [None if b is None else (b + 1) // 3 for b in first_batches]
    assert list(callback.halting_steps.values()) == expected
    for r, b in zip(callback.record, first_batches, strict=True):
        if b is not None:
            assert r["value"] == pytest.approx(smoothed[b], rel=1e-5)
    assert callback.ema == pytest.approx(smoothed[-1], rel=1e-5)
