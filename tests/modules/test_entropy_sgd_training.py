"""EntropyClassifier under Lightning: fresh minibatches per Langevin step, outer-step counting, refusals."""

import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning import LightningDataModule, LightningModule
from torch import nn

from iclr17 import (
    Classifier,
    EntropyClassifier,
    EntropyLanguageModel,
    EntropySGD,
    GaussianMixtureDataModule,
    HessianSpectrum,
    LanguageModel,
)
from iclr17.cli import ICLR17CLI, cli, resolve_config_args, resolve_config_path, shipped_configs
from iclr17.modules.entropy_sgd.training import refuse_unsupported, split_minibatches


def _shipped(name: str) -> dict:
    return yaml.safe_load(Path(resolve_config_path(name)).read_text())


ENTROPY_CONFIGS = [name for name in shipped_configs() if "EntropySGD" in str(_shipped(name).get("model"))]


class RecordingNet(nn.Module):
    """A linear classifier that remembers the inputs of every training forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        if self.training and torch.is_grad_enabled():
            self.seen.append(x.clone())
        return self.linear(x)


class RecordBatches(pl.Callback):
    def __init__(self) -> None:
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append(batch[0].clone())


def _fit(model, dm, **kwargs):
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
    trainer.fit(model, dm)
    return trainer


def test_each_langevin_step_sees_the_next_fresh_minibatch_and_global_step_counts_outer_steps():
    dm = GaussianMixtureDataModule(n_samples=60, batch_size=5, batches_per_step=4)
    net = RecordingNet()
    model = EntropyClassifier(net, num_classes=2, optimizer=lambda p: EntropySGD(p, L=3, eps=0.0))
    record = RecordBatches()
    trainer = _fit(model, dm, max_epochs=1, limit_val_batches=0, callbacks=[record])
    assert trainer.global_step == 60 // 20
    assert len(net.seen) == 3 * 4
    for step, batch in enumerate(record.batches):
        for i, minibatch in enumerate(batch.chunk(4)):
            assert torch.equal(net.seen[4 * step + i], minibatch)


def test_same_mode_reuses_one_minibatch():
    dm = GaussianMixtureDataModule(n_samples=20, batch_size=5)
    net = RecordingNet()
    model = EntropyClassifier(net, num_classes=2, optimizer=lambda p: EntropySGD(p, L=2), inner_batches="same")
    _fit(model, dm, max_steps=1, limit_val_batches=0)
    assert len(net.seen) == 3 and all(torch.equal(s, net.seen[0]) for s in net.seen)


class CheckFirstValidationSeesMu(pl.Callback):
    """With lr 1 and no momentum the outer step sets x <- mu: validation must see exactly that, not x'."""

    checked = 0

    def on_validation_start(self, trainer, pl_module):
        if trainer.sanity_checking or self.checked:
            return
        optimizer = pl_module.entropy_optimizer()
        for p in pl_module.parameters():
            torch.testing.assert_close(p.detach(), optimizer.state[p]["mu"], rtol=0, atol=1e-6)
        self.checked += 1


def test_validation_sees_the_outer_weights_and_the_epoch_schedule_steps():
    dm = GaussianMixtureDataModule(n_samples=40, batch_size=5, batches_per_step=4)
    model = EntropyClassifier(
        RecordingNet(),
        num_classes=2,
        optimizer=lambda p: EntropySGD(p, lr=1.0, L=3, momentum=0.0),
        lr_scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5),
    )
    check = CheckFirstValidationSeesMu()
    trainer = _fit(model, dm, max_epochs=2, callbacks=[check])
    assert check.checked == 1
    assert model.entropy_optimizer().param_groups[0]["lr"] == pytest.approx(0.25)
    assert trainer.callback_metrics["train/effective_epoch_xL1"] == pytest.approx(2.0)
    assert trainer.callback_metrics["train/effective_epoch_xL"] == pytest.approx(2.0 * 3 / 4)


def test_a_batch_that_does_not_hold_l_plus_one_minibatches_is_refused():
    dm = GaussianMixtureDataModule(n_samples=20, batch_size=5)  # batches_per_step left at 1
    model = EntropyClassifier(RecordingNet(), num_classes=2, optimizer=lambda p: EntropySGD(p, L=3))
    with pytest.raises(ValueError, match="batches_per_step: 4"):
        _fit(model, dm, max_steps=1, limit_val_batches=0)


def test_split_minibatches_keeps_structure_and_order():
    batch = {"x": torch.arange(12).view(6, 2), "y": (torch.arange(6), torch.arange(6) * 10)}
    parts = split_minibatches(batch, 3)
    assert torch.equal(parts[1]["x"], torch.tensor([[4, 5], [6, 7]]))
    assert torch.equal(parts[2]["y"][1], torch.tensor([40, 50]))


def test_fp16_mixed_precision_and_accumulation_are_refused():
    with pytest.raises(ValueError, match="16-mixed"):
        refuse_unsupported(SimpleNamespace(precision="16-mixed", accumulate_grad_batches=1))
    with pytest.raises(ValueError, match="accumulate_grad_batches"):
        refuse_unsupported(SimpleNamespace(precision="32-true", accumulate_grad_batches=2))
    refuse_unsupported(SimpleNamespace(precision="bf16-mixed", accumulate_grad_batches=1))
    dm = GaussianMixtureDataModule(n_samples=20, batch_size=5, batches_per_step=3)
    model = EntropyClassifier(RecordingNet(), num_classes=2, optimizer=lambda p: EntropySGD(p, L=2))
    with pytest.raises(Exception, match="accumulat"):
        _fit(model, dm, max_steps=1, accumulate_grad_batches=2)


def test_hessian_spectrum_measures_an_entropy_classifier_through_its_loss():
    """A manual-optimization module with ``loss(batch)`` needs no ``loss_fn``: the callback measures that loss, at
    the weights EntropySGD left, on the whole training set (the subset asks for more than there is). Reference: the
    closed-form Hessian of the mean softmax cross-entropy of a linear layer, mean_i (diag p_i - p_i p_i^T) (x) z_i
    z_i^T with z_i = (x_i, 1)."""
    dm = GaussianMixtureDataModule(n_samples=20, batch_size=5, batches_per_step=3)
    model = EntropyClassifier(RecordingNet(), num_classes=2, optimizer=lambda p: EntropySGD(p, L=2))
    spectrum = HessianSpectrum(method="exact", n_samples=1000, at_fit_start=False)
    trainer = _fit(model, dm, max_steps=2, callbacks=[spectrum])
    dataset = trainer.train_dataloader.dataset
    x = torch.stack([dataset[i][0] for i in range(len(dataset))]).double()
    linear = model.net.linear
    z = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    p = torch.softmax(z @ torch.cat([linear.weight, linear.bias[:, None]], dim=1).double().T, dim=1)
    covariance = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    hessian = torch.stack([torch.kron(s, zi[:, None] * zi[None, :]) for s, zi in zip(covariance, z, strict=True)])
    record = spectrum.history[-1]
    assert record["when"] == "end" and record["n_samples"] == len(dataset) and record["n_params"] == 6
    torch.testing.assert_close(record["eigenvalues"], torch.linalg.eigvalsh(hessian.mean(0)), rtol=1e-6, atol=1e-10)


def test_stacked_training_batches_drop_the_short_last_group():
    dm = GaussianMixtureDataModule(n_samples=50, batch_size=5, batches_per_step=4)
    dm.setup("fit")
    assert [len(x) for x, _ in dm.train_dataloader()] == [20, 20]
    assert sum(len(x) for x, _ in dm.val_dataloader()) == 100  # evaluation splits are whole


def test_same_mode_refuses_stacked_batches():
    dm = GaussianMixtureDataModule(n_samples=40, batch_size=5, batches_per_step=3)
    model = EntropyClassifier(
        RecordingNet(), num_classes=2, optimizer=lambda p: EntropySGD(p, L=2), inner_batches="same"
    )
    with pytest.raises(ValueError, match="batches_per_step: 1"):
        _fit(model, dm, max_steps=1, limit_val_batches=0)


class CountBatches(pl.Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches += 1

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self.batches += 1


def test_batches_per_step_that_disagrees_with_l_is_refused_before_any_batch():
    """12-row batches (2 x 6) would split silently into L + 1 = 4 minibatches of 3: refuse, naming both."""
    dm = GaussianMixtureDataModule(n_samples=60, batch_size=6, batches_per_step=2)
    model = EntropyClassifier(RecordingNet(), num_classes=2, optimizer=lambda p: EntropySGD(p, L=3))
    count = CountBatches()
    names_both = "L = 3 takes L \\+ 1 = 4 .* GaussianMixtureDataModule stacks batches_per_step = 2"
    with pytest.raises(ValueError, match=names_both):
        _fit(model, dm, max_epochs=1, callbacks=[count])
    assert count.batches == 0 and model.net.seen == []


class ParseOnly(ICLR17CLI):
    def instantiate_classes(self) -> None:
        """Parse (links included) without building anything."""


def _parsed(*args: str) -> tuple[int, int]:
    """The optimizer's L and the data's batches_per_step after the CLI parsed ``args``."""
    kwargs = dict(subclass_mode_model=True, subclass_mode_data=True, run=False, args=resolve_config_args(list(args)))
    config = ParseOnly(LightningModule, LightningDataModule, **kwargs).config
    return config.model.init_args.optimizer.init_args.L, config.data.init_args.batches_per_step


@pytest.mark.parametrize("name", ENTROPY_CONFIGS)
def test_each_entropy_config_stacks_l_plus_one_minibatches_and_follows_l_from_the_command_line(name):
    L = _shipped(name)["model"]["init_args"]["optimizer"]["init_args"]["L"]
    assert _parsed("--config", name) == (L, L + 1)
    assert _parsed("--config", name, "--model.init_args.optimizer.init_args.L=3") == (3, 4)


def test_same_mode_on_the_command_line_stacks_one_minibatch():
    same = ("--model.init_args.inner_batches=same", "--model.init_args.optimizer.init_args.L=3")
    assert _parsed("--config", "entropy_sgd/mnistfc_entropy.yaml", *same) == (3, 1)


def test_a_plain_module_stepping_entropy_sgd_takes_one_minibatch_per_step():
    """Lightning's closure for a module without EntropySGDTraining re-evaluates one batch: no stacking."""
    entropy = ("--model.init_args.optimizer=EntropySGD", "--model.init_args.optimizer.init_args.L=5")
    assert _parsed("--config", "entropy_sgd/lenet_adam.yaml", *entropy) == (5, 1)


@pytest.mark.parametrize(
    ("model", "data", "L"), [("EntropyClassifier", "MNISTDataModule", 20), ("EntropyLanguageModel", "PTBDataModule", 5)]
)
def test_a_module_left_on_its_default_optimizer_stacks_that_optimizers_l_plus_one(model, data, L):
    """No optimizer in the config: the link reads L from the class's default_optimizer (EntropySGD's default
    L = 20 for EntropyClassifier, Entropy-Adam's L = 5 for EntropyLanguageModel)."""
    args = resolve_config_args(
        [f"--model={model}", f"--data={data}"] + (["--model.net=MNISTFC"] if "Class" in model else [])
    )
    kwargs = dict(subclass_mode_model=True, subclass_mode_data=True, run=False, args=args)
    config = ParseOnly(LightningModule, LightningDataModule, **kwargs).config
    assert config.model.init_args.optimizer is None and config.data.init_args.batches_per_step == L + 1


def test_entropy_configs_are_found():
    assert {"entropy_sgd/mnistfc_entropy.yaml", "entropy_sgd/ptb_lstm_medium_entropy.yaml"} <= set(ENTROPY_CONFIGS)


def test_changing_l_on_the_command_line_trains(mnist_fixture_dir, monkeypatch):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(mnist_fixture_dir))
    args = ["--config", "entropy_sgd/mnistfc_entropy.yaml", "--data.init_args.val_size=100", "--trainer.logger=false"]
    result = cli(["fit", *args, "--model.init_args.optimizer.init_args.L=2", "--trainer.fast_dev_run=1"])
    assert result.datamodule.batches_per_step == 3 and result.trainer.global_step == 1


def test_a_negative_scoping_rate_on_the_command_line_is_refused(mnist_fixture_dir, monkeypatch):
    monkeypatch.setenv("ICLR17_DATA_DIR", str(mnist_fixture_dir))
    args = ["--config", "entropy_sgd/mnistfc_entropy.yaml", "--data.init_args.val_size=100", "--trainer.logger=false"]
    with pytest.raises(ValueError, match="EntropySGD: gamma1 must be >= 0; got -1.0"):
        cli(["fit", *args, "--model.init_args.optimizer.init_args.gamma1=-1", "--trainer.fast_dev_run=1"])


def _printed_model_arguments(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        cli(["fit", *args, "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]


def _arguments(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def test_the_cli_shows_every_argument_of_the_entropy_modules(capsys):
    """EntropyLanguageModel repeats none of its base's arguments, yet `--print_config` lists them all
    (EntropyClassifier declares its base's six, typed, beside its own inner_batches)."""
    language = _printed_model_arguments(capsys, "--model=EntropyLanguageModel", "--data=PTBDataModule")
    assert set(language) == _arguments(LanguageModel) and len(language) == 14
    assert language["vocab_size"] == 10_000 and language["optimizer"] is None
    classifier = _printed_model_arguments(
        capsys, "--model=EntropyClassifier", "--model.net=MNISTFC", "--data=MNISTDataModule"
    )
    assert set(classifier) == _arguments(Classifier) | {"inner_batches"}
    assert classifier["inner_batches"] == "fresh" and classifier["net"]["class_path"] == "iclr17.MNISTFC"


def test_the_mixin_owns_manual_optimization():
    model = EntropyLanguageModel(vocab_size=5, hidden_size=2)
    assert model.automatic_optimization is False
    model.automatic_optimization = False  # what a Lightning tutorial would write: harmless
    with pytest.raises(ValueError, match="EntropyLanguageModel steps EntropySGD itself"):
        model.automatic_optimization = True
    assert LanguageModel(vocab_size=5, hidden_size=2).automatic_optimization is True


def test_entropy_classifier_passes_classifier_arguments_through_and_saves_them():
    model = EntropyClassifier(RecordingNet(), 2, inner_batches="same", lr_scheduler_frequency=3)
    assert model.inner_batches == "same" and model.lr_scheduler_frequency == 3
    assert dict(model.hparams) == {
        "num_classes": 2,
        "lr_scheduler_interval": "epoch",
        "lr_scheduler_frequency": 3,
        "inner_batches": "same",
    }


class RecordWholeBatches(pl.Callback):
    def __init__(self) -> None:
        self.batches = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batches.append([t.clone() for t in batch])


def test_epoch_loss_weighs_each_step_by_its_first_minibatch():
    """With lr 0 the weights never move: train/loss_epoch is the mean loss at x of the steps' first minibatches
    (5 samples each), not of their whole stacked batches."""
    dm = GaussianMixtureDataModule(n_samples=60, batch_size=5, batches_per_step=4)
    model = EntropyClassifier(RecordingNet(), num_classes=2, optimizer=lambda p: EntropySGD(p, lr=0.0, L=3, eps=0.0))
    record = RecordWholeBatches()
    trainer = _fit(model, dm, max_epochs=1, limit_val_batches=0, callbacks=[record])
    with torch.no_grad():
        firsts = [model.loss(split_minibatches(batch, 4)[0]) for batch in record.batches]
        wholes = [model.loss(batch) for batch in record.batches]
    assert len(firsts) == 3 and float(sum(firsts)) != pytest.approx(float(sum(wholes)), rel=1e-3)
    assert float(trainer.callback_metrics["train/loss_epoch"]) == pytest.approx(float(sum(firsts) / 3), rel=1e-6)
