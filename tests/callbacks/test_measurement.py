"""The callbacks' shared plumbing: measurement mode, the loss contract, reductions, the logging step, media."""

import copy
import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from iclr17.callbacks import HaltingTime, HessianSpectrum
from iclr17.callbacks.measurement import (
    LoggingStep,
    check_loss_contract,
    log_histogram,
    log_image,
    measurement_mode,
    module_loss,
    reduce_over_processes,
)
from iclr17.cli import cli
from tests.callbacks.user_models import LossAttribute, LossHelper, UserClassifier, WithLoss, cross_entropy


def _half_in_eval() -> nn.Module:
    """A model whose submodules' train flags differ: dropout in train mode inside an eval-mode block."""
    model = nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.Dropout(0.5), nn.BatchNorm1d(3)), nn.Dropout(0.5))
    model[1].eval()
    model[1][0].train()
    return model


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


class Failure(Exception):
    pass


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("fail", [False, True])
def test_measurement_mode_restores_every_train_flag_and_the_rng_exactly(train, fail):
    model = _half_in_eval()
    flags = _flags(model)
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    inside = []
    try:
        with measurement_mode(model, train=train):
            inside.append(_flags(model))
            torch.randn(100)  # the measurement draws (dropout, probes)
            if fail:
                raise Failure
    except Failure:
        assert fail
    assert inside == [[train] * len(flags)]
    assert _flags(model) == flags
    assert torch.equal(torch.get_rng_state(), rng)


def test_measurement_mode_sets_the_gradient_mode_and_restores_it():
    model = nn.Linear(2, 1)
    with measurement_mode(model):
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    with torch.inference_mode():
        with measurement_mode(model, grad=True):  # a Hessian needs gradients even in an inference-mode trainer
            assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
            model(torch.ones(2)).backward()
        assert torch.is_inference_mode_enabled()
    assert model.weight.grad is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_measurement_mode_restores_the_gpu_rng_of_the_models_device():
    model = nn.Linear(2, 2).cuda()
    rng = torch.cuda.get_rng_state()
    with measurement_mode(model):
        torch.randn(100, device="cuda")
    assert torch.equal(torch.cuda.get_rng_state(), rng)


# ---- the loss contract ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [UserClassifier, LossAttribute, LossHelper])
def test_a_model_without_loss_batch_is_refused_with_the_fix_named(cls):
    name = cls.__name__
    with pytest.raises(TypeError) as error:
        check_loss_contract("HessianSpectrum", cls(), module_loss)
    message = str(error.value)
    assert message.startswith(f"HessianSpectrum: {name} ")
    assert f"Define {name}.loss(self, batch) -> scalar Tensor" in message and "loss_fn=" in message
    check_loss_contract("HessianSpectrum", cls(), cross_entropy)  # a user loss: accepted
    check_loss_contract("HessianSpectrum", WithLoss(), module_loss)


def test_the_message_says_what_the_loss_attribute_is():
    with pytest.raises(TypeError, match="loss attribute that is a CrossEntropyLoss"):
        check_loss_contract("HaltingTime", LossAttribute(), module_loss)
    with pytest.raises(TypeError, match=r"loss\(logits, y\) method that does not take the batch alone"):
        check_loss_contract("HaltingTime", LossHelper(), module_loss)


def test_module_loss_requires_a_scalar():
    model = WithLoss()
    batch = (torch.randn(4, 2), torch.tensor([0, 1, 2, 0]))
    torch.testing.assert_close(module_loss(model, batch), cross_entropy(model, batch))
    model.loss = lambda batch: torch.ones(2)
    with pytest.raises(TypeError, match=r"WithLoss.loss\(batch\) must return a scalar tensor.*shape \(2,\)"):
        module_loss(model, batch)


# ---- reductions -----------------------------------------------------------------------------------------------


def test_reduce_on_one_process_returns_the_value_and_leaves_the_input_alone():
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False)
    value = torch.tensor([1.0, 2.0])
    for op in ("mean", "sum"):
        reduced = reduce_over_processes(trainer, value, op)
        assert torch.equal(reduced, value) and reduced is not value


# ---- the logging step -----------------------------------------------------------------------------------------


class StepsLogged(Logger):
    """Records the step of every ``loss`` that Lightning logs."""

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[int] = []

    name, version, experiment = "steps", 0, None

    def log_metrics(self, metrics, step=None):
        if "loss" in metrics:
            self.steps.append(step)

    def log_hyperparams(self, params, *args, **kwargs):
        pass


class StepsCounted(pl.Callback):
    def __init__(self) -> None:
        self.counter, self.steps = LoggingStep(), []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append((batch_idx, self.counter.batch_end(trainer)))

    def on_train_epoch_end(self, trainer, pl_module):
        self.counter.epoch_end(trainer)


@pytest.mark.parametrize(("accumulate", "batches"), [(1, 5), (3, 7), (2, 6)])
def test_logging_step_is_the_step_lightning_logs_each_batchs_scalars_at(accumulate, batches):
    """Lightning sends the scalars logged in ``training_step`` to the loggers once per optimizer step, after the
    batch that ends it; they arrive at the step the counter gives that batch, also when gradient accumulation
    ends an epoch early (7 batches in threes: the last step takes one batch)."""
    pl.seed_everything(0)
    x, y = torch.randn(40, 2), torch.randint(0, 3, (40,))
    logger, counted = StepsLogged(), StepsCounted()
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=3, limit_train_batches=batches, accumulate_grad_batches=accumulate,
        log_every_n_steps=1, logger=logger, callbacks=[counted], enable_progress_bar=False,
        enable_checkpointing=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(UserClassifier(), DataLoader(TensorDataset(x, y), batch_size=4))
    stepping = [step for i, step in counted.steps if (i + 1) % accumulate == 0 or i + 1 == batches]
    assert stepping == logger.steps and len(stepping) == 3 * -(-batches // accumulate)
    resumed = LoggingStep()
    resumed.load_state_dict(counted.counter.state_dict())
    assert resumed.value == counted.counter.value == 3 * -(-batches // accumulate)


# ---- media ----------------------------------------------------------------------------------------------------


class FakeTensorBoard(TensorBoardLogger):
    """TensorBoard's logger interface (tensorboard itself is not installed here), writing nothing."""

    def __init__(self, root, sent) -> None:
        self.root, self.sent = str(root), sent

    @property
    def experiment(self):
        def record(kind):
            return lambda name, value, global_step, **kwargs: self.sent.append(("tb", kind, name, global_step))

        return SimpleNamespace(add_image=record("image"), add_figure=record("figure"), add_histogram=record("hist"))

    save_dir = property(lambda self: self.root)
    name = property(lambda self: "tb")
    version = property(lambda self: 0)


def _wandb(tmp_path, monkeypatch, sent) -> WandbLogger:
    logger = WandbLogger(save_dir=str(tmp_path), offline=True)

    def log_image(key, images, step):
        sent.append(("wandb", type(images[0]).__name__, key, step))

    monkeypatch.setattr(logger, "log_image", log_image)
    monkeypatch.setattr(
        logger, "log_metrics", lambda metrics, step: sent.extend(("wandb", "hist", k, step) for k in metrics)
    )
    return logger


def _trainer(tmp_path, loggers, rank_zero=True):
    return SimpleNamespace(loggers=loggers, is_global_zero=rank_zero, default_root_dir=str(tmp_path))


def _figure():
    figure, ax = plt.subplots()
    ax.plot([0, 1])
    return figure


def test_media_go_to_wandb_and_tensorboard_without_files(tmp_path, monkeypatch):
    sent = []
    trainer = _trainer(tmp_path, [_wandb(tmp_path, monkeypatch, sent), FakeTensorBoard(tmp_path, sent)])
    image, figure = torch.rand(3, 8, 8), _figure()
    assert log_image(trainer, "images/samples", image, 4, "grids") is None
    assert log_image(trainer, "hessian/end", figure, 5, "hessian") is None
    log_histogram(trainer, "images/energy", torch.rand(10), 6)
    plt.close(figure)
    assert sent == [
        ("wandb", "Tensor", "images/samples", 4), ("tb", "image", "images/samples", 4),
        ("wandb", "Figure", "hessian/end", 5), ("tb", "figure", "hessian/end", 5),
        ("wandb", "hist", "images/energy", 6), ("tb", "hist", "images/energy", 6),
    ]  # fmt: skip
    assert not list(tmp_path.rglob("*.png"))


def test_without_a_media_logger_images_become_files_in_the_run_folder(tmp_path):
    trainer = _trainer(tmp_path, [])
    file = log_image(trainer, "images/samples", torch.rand(3, 8, 8), 4, "grids")
    figure = _figure()
    assert file == tmp_path / "grids" / "samples_step4.png" and file.stat().st_size > 0
    assert log_image(trainer, "hessian/end", figure, 5, "hessian") == tmp_path / "hessian" / "end_step5.png"
    plt.close(figure)
    log_histogram(trainer, "images/energy", torch.rand(10), 6)  # no logger, no file: the caller draws histograms


def test_always_file_writes_the_file_and_wandb_uploads_it(tmp_path, monkeypatch):
    sent = []
    tensorboard = FakeTensorBoard(tmp_path, sent)
    trainer = _trainer(tmp_path, [tensorboard, _wandb(tmp_path, monkeypatch, sent)])
    file = log_image(trainer, "images/samples", torch.rand(3, 8, 8), 4, "grids", always_file=True)
    assert file == tmp_path / "tb" / "version_0" / "grids" / "samples_step4.png" and file.is_file()
    assert sent == [("tb", "image", "images/samples", 4), ("wandb", "str", "images/samples", 4)]


def test_other_ranks_send_and_write_nothing(tmp_path, monkeypatch):
    sent = []
    for loggers in ([], [_wandb(tmp_path, monkeypatch, sent)]):
        trainer = _trainer(tmp_path, loggers, rank_zero=False)
        assert log_image(trainer, "images/samples", torch.rand(3, 8, 8), 4, "grids", always_file=True) is None
        log_histogram(trainer, "images/energy", torch.rand(10), 6)
    assert sent == [] and not list(tmp_path.rglob("*.png"))


# ---- the callbacks use them -----------------------------------------------------------------------------------


def _reference_loss_and_hessian_spectrum(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """The mean cross-entropy of ``model`` on ``(x, y)`` and all eigenvalues of its Hessian in the parameters
    (float64, ``torch.autograd.functional.hessian`` of a from-scratch forward over the flat parameter vector)."""
    twin = copy.deepcopy(model).double()
    shapes = {name: p.shape for name, p in twin.named_parameters()}
    theta = torch.cat([p.detach().flatten() for p in twin.parameters()])

    def loss_of(flat):
        params = dict(zip(shapes, flat.split([shape.numel() for shape in shapes.values()]), strict=True))
        params = {name: params[name].view(shape) for name, shape in shapes.items()}
        return F.cross_entropy(torch.func.functional_call(twin, params, (x.double(),)), y)

    with torch.no_grad():
        loss = float(loss_of(theta))
    return loss, np.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, theta).numpy())


def test_callbacks_take_a_user_loss_fn_through_the_cli_path():
    """``loss_fn`` is a plain callable, so the LightningCLI takes one by its import path: a user's model without a
    ``loss(batch)`` method (which both callbacks would refuse without it) is measured through the function named
    in ``--trainer.callbacks``. lr=0 keeps the weights at their initial values, where both measurements are made
    (step 0), so the fitted model gives the references: the full-data mean cross-entropy and the exact Hessian's
    eigenvalues."""
    callbacks = [
        {"class_path": "HaltingTime", "init_args": {
            "thresholds": [100.0], "loss_source": "full_data", "stop": False,
            "loss_fn": "tests.callbacks.user_models.cross_entropy"}},
        {"class_path": "HessianSpectrum", "init_args": {
            "method": "exact", "n_samples": 90, "at_fit_end": False, "save_files": False,
            "loss_fn": "tests.callbacks.user_models.cross_entropy"}},
    ]  # fmt: skip
    run = cli([
        "fit", "--seed_everything=0", "--model=tests.callbacks.user_models.UserClassifier", "--model.lr=0.0",
        "--data=GaussianMixtureDataModule", "--data.num_classes=3", "--data.n_samples=90", "--data.batch_size=30",
        "--data.seed=1", "--trainer.max_steps=2", "--trainer.limit_val_batches=0", "--trainer.logger=false",
        "--trainer.enable_progress_bar=false", "--trainer.enable_checkpointing=false",
        "--trainer.enable_model_summary=false", f"--trainer.callbacks={json.dumps(callbacks)}",
    ])  # fmt: skip
    (halting,) = [c for c in run.trainer.callbacks if isinstance(c, HaltingTime)]
    (spectrum,) = [c for c in run.trainer.callbacks if isinstance(c, HessianSpectrum)]
    assert halting.loss_fn is cross_entropy and spectrum.loss_fn is cross_entropy
    assert isinstance(run.model, UserClassifier) and not hasattr(run.model, "loss")
    assert run.trainer.global_step == 2
    x, y = run.datamodule.train_set.tensors
    loss, eigenvalues = _reference_loss_and_hessian_spectrum(run.model, x, y)
    assert halting.record[0]["step"] == 0 and halting.record[0]["value"] == pytest.approx(loss, rel=1e-6)
    (measured,) = spectrum.history
    assert measured["step"] == 0 and measured["when"] == "start"
    np.testing.assert_allclose(measured["eigenvalues"].numpy(), eigenvalues, rtol=1e-6, atol=1e-9)
    assert HessianSpectrum().loss_fn is module_loss and HaltingTime().loss_fn is module_loss
