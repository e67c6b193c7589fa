import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from iclr17.datamodules import GaussianMixtureDataModule
from iclr17.modules import MLP, Classifier


def _trainer(**kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


def test_training_step_is_cross_entropy():
    model = Classifier(MLP([2, 3]), num_classes=3)
    x, y = torch.randn(8, 2), torch.randint(0, 3, (8,))
    model.log = lambda *a, **k: None
    torch.testing.assert_close(model.training_step((x, y), 0), F.cross_entropy(model.net(x), y))


def test_fits_separable_clusters_and_logs_every_key(tmp_path):
    pl.seed_everything(0)
    dm = GaussianMixtureDataModule(centers=[[-3.0, -3.0], [3.0, 3.0]], n_samples=200, batch_size=50)
    optimizer = lambda params: torch.optim.SGD(params, lr=0.5)  # noqa: E731
    model = Classifier(MLP([2, 16, 2]), num_classes=2, optimizer=optimizer)
    trainer = _trainer(max_epochs=20, default_root_dir=tmp_path)
    trainer.fit(model, dm)
    metrics = trainer.callback_metrics
    assert {"train/loss_step", "train/loss_epoch", "val/loss", "val/acc", "val/acc_best"} <= set(metrics)
    assert metrics["val/acc"] > 0.98
    assert metrics["val/acc_best"] >= metrics["val/acc"]
    (result,) = trainer.test(model, dm)
    assert result["test/acc"] > 0.98
    predictions = torch.cat(trainer.predict(model, dm))
    assert predictions.shape == (100,) and set(predictions.tolist()) <= {0, 1}


def _set_separator(net: MLP, sign: float) -> None:
    """Point ``net``'s single linear layer at the separator of clusters at -(3, 3) and (3, 3): ``sign`` +1 is always
    right, -1 always wrong."""
    with torch.no_grad():
        (linear,) = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
        linear.weight.copy_(sign * torch.tensor([[-1.0, -1.0], [1.0, 1.0]]))
        linear.bias.zero_()


def test_val_acc_best_covers_only_the_fit(tmp_path):
    dm = GaussianMixtureDataModule(centers=[[-3.0, -3.0], [3.0, 3.0]], n_samples=200, batch_size=50)
    optimizer = lambda params: torch.optim.SGD(params, lr=0.0)  # noqa: E731  (the weights stay as set)
    model = Classifier(MLP([2, 2]), num_classes=2, optimizer=optimizer)
    _set_separator(model.net, -1.0)
    trainer = _trainer(max_epochs=2, default_root_dir=tmp_path)
    trainer.fit(model, dm)
    assert trainer.callback_metrics["val/acc_best"] == 0.0
    _set_separator(model.net, +1.0)  # a later evaluation of other weights, e.g. with other BatchNorm statistics
    (result,) = trainer.validate(model, dm, verbose=False)
    assert result["val/acc"] == 1.0 and "val/acc_best" not in result
    assert model.val_acc_best.compute() == 0.0


def test_num_classes_mismatch_is_a_clear_error():
    model = Classifier(MLP([2, 3]), num_classes=3)
    with pytest.raises(ValueError, match="model.num_classes=3 but the datamodule has 2 classes"):
        _trainer(fast_dev_run=True).fit(model, GaussianMixtureDataModule())


def test_lr_scheduler_is_stepped_each_epoch(tmp_path):
    scheduler = lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)  # noqa: E731
    optimizer = lambda params: torch.optim.SGD(params, lr=1.0)  # noqa: E731
    model = Classifier(MLP([2, 2]), num_classes=2, optimizer=optimizer, lr_scheduler=scheduler)
    trainer = _trainer(max_epochs=3, default_root_dir=tmp_path)
    trainer.fit(model, GaussianMixtureDataModule())
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.125)


def test_checkpoint_round_trip(tmp_path):
    model = Classifier(MLP([2, 4, 2]), num_classes=2)
    trainer = _trainer(max_epochs=1, default_root_dir=tmp_path)
    trainer.fit(model, GaussianMixtureDataModule())
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    restored = Classifier.load_from_checkpoint(path, net=MLP([2, 4, 2]))
    assert restored.hparams.num_classes == 2
    for a, b in zip(model.state_dict().values(), restored.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_epoch_loss_is_the_mean_training_loss_with_and_without_accumulation(tmp_path, accumulate):
    dm = GaussianMixtureDataModule(n_samples=120, batch_size=30)
    model = Classifier(MLP([2, 3, 2]), num_classes=2, optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    trainer = _trainer(max_epochs=1, default_root_dir=tmp_path, accumulate_grad_batches=accumulate)
    trainer.fit(model, dm)
    x, y = dm.train_set.tensors
    with torch.no_grad():
        expected = F.cross_entropy(model(x), y)  # lr 0: the weights never moved
    assert float(trainer.callback_metrics["train/loss_epoch"]) == pytest.approx(float(expected), rel=1e-5)
