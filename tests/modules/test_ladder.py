"""LadderNetwork and the plain-LN LightningModule: shapes, running statistics, the supervised loss that never sees
unlabelled examples, a side-effect-free loss(batch), exact checkpoint resume and argument checks."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from iclr17.datamodules import SemiSupervisedMNISTDataModule
from iclr17.functional.ladder import encoder_pass
from iclr17.modules import Ladder
from iclr17.modules.ladder import LadderNetwork

WIDTHS = [784, 12, 6, 10]


def _trainer(**kwargs) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0
    )
    return pl.Trainer(**{**defaults, **kwargs})


def _data(root, **kwargs) -> SemiSupervisedMNISTDataModule:
    return SemiSupervisedMNISTDataModule(data_dir=str(root), **{"num_labelled": 20, "batch_size": 8, **kwargs})


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 784, generator=g), torch.randint(10, (n,), generator=g), torch.rand(n + 2, 784, generator=g)


def test_shapes_of_every_pass():
    net = LadderNetwork(WIDTHS)
    x = torch.rand(5, 784)
    corrupted = net.encode(x, corrupted=True, generator=torch.Generator().manual_seed(0))
    assert [tuple(z.shape) for z in corrupted.z] == [(5, 784), (5, 12), (5, 6), (5, 10)]
    assert corrupted.logits.shape == (5, 10) and net(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    costs = net.denoising_costs(x, [True, True, False, True], torch.Generator().manual_seed(0))
    assert costs.shape == (5, 4) and torch.equal(costs[:, 2], torch.zeros(5)) and (costs[:, [0, 1, 3]] > 0).all()
    assert net.num_layers == 3 and LadderNetwork().widths == [784, 1000, 500, 250, 250, 250, 10]


def test_running_statistics_follow_the_authors_capped_counter():
    """c = min(step, cap); running = new / c + (1 - 1 / c) old, with the unbiased variance (nn.py, ladder.py)."""
    net = LadderNetwork([784, 5, 10], running_average_cap=3)
    expected_mean, expected_var = np.zeros(5), np.ones(5)
    for step in range(1, 7):
        x = torch.rand(8, 784, dtype=torch.float32) * step
        clean = net.encode(x, corrupted=False)
        net.update_running_statistics(clean.mean[1:], clean.var[1:], len(x))
        pre = (x @ net.encoder_weights[0]).detach().double().numpy()
        c = min(step, 3)
        expected_mean = pre.mean(0) / c + (1 - 1 / c) * expected_mean
        expected_var = pre.var(0, ddof=1) / c + (1 - 1 / c) * expected_var
        np.testing.assert_allclose(net.running_mean_1.double().numpy(), expected_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(net.running_var_1.double().numpy(), expected_var, rtol=1e-5, atol=1e-6)


def test_evaluation_uses_the_running_statistics():
    net = LadderNetwork(WIDTHS)
    clean = net.encode(torch.rand(9, 784), corrupted=False)
    net.update_running_statistics(clean.mean[1:], clean.var[1:], 9)
    x = torch.rand(3, 784)
    net.eval()
    expected = encoder_pass(
        x, list(net.encoder_weights), list(net.betas), net.top_gamma, statistics=net.running_statistics()
    )
    torch.testing.assert_close(net(x), expected.logits)
    torch.testing.assert_close(net(x[:1]), expected.logits[:1])  # one example: no batch statistics involved


def test_unlabelled_examples_never_reach_the_supervised_loss():
    model = Ladder(LadderNetwork(WIDTHS), denoising_weights=[1.0, 0.5, 0.0, 0.1])
    x_labelled, y_labelled, x_unlabelled = _batch()
    x_unlabelled.requires_grad_(True)
    logits, _, energy = model.ladder_terms(x_labelled, y_labelled, x_unlabelled, torch.Generator().manual_seed(1))
    cross_entropy = torch.nn.functional.cross_entropy(logits, y_labelled)
    (grad,) = torch.autograd.grad(cross_entropy, x_unlabelled, allow_unused=True)
    assert grad is None or torch.equal(grad, torch.zeros_like(grad))
    other = torch.rand_like(x_unlabelled)  # other unlabelled images: the same labelled logits (same noise draws)
    logits_other = model.ladder_terms(x_labelled, y_labelled, other, torch.Generator().manual_seed(1))[0]
    assert torch.equal(logits, logits_other)
    (grad,) = torch.autograd.grad(energy.sum(), x_unlabelled)
    assert grad.abs().sum() > 0  # the unlabelled half does train the denoising cost


def test_loss_is_side_effect_free_and_matches_the_functional_loss():
    model = Ladder(LadderNetwork(WIDTHS))
    batch = _batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = model._noise_generator().get_state()
    first, second = model.loss(batch), model.loss(batch)
    assert torch.equal(first, second) and torch.equal(model._noise_generator().get_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    logits, _, energy = model.ladder_terms(*batch, torch.Generator().manual_seed(0))
    torch.testing.assert_close(first, torch.nn.functional.cross_entropy(logits, batch[1]) + energy.mean())


def test_fit_decays_the_learning_rate_and_logs_errors(mnist_fixture_dir):
    model = Ladder(LadderNetwork(WIDTHS), lr_decay_start=1.0, lr_decay_end=3.0)
    trainer = _trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=2, log_every_n_steps=1)
    lrs = []

    class RecordLr(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer.callbacks.append(RecordLr())
    trainer.fit(model, _data(mnist_fixture_dir, validation="train_split", val_size=100))
    assert lrs == pytest.approx([0.002, 0.002, 0.001])
    metrics = trainer.callback_metrics
    assert 0.0 <= metrics["val/error"] <= 100.0 and torch.isfinite(metrics["train/energy"])
    (tested,) = trainer.test(model, _data(mnist_fixture_dir), verbose=False)
    assert 0.0 <= tested["test/error"] <= 100.0


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_checkpoint_resume_is_exact(mnist_fixture_dir, tmp_path):
    """Two epochs in one go, or one epoch, a checkpoint, and a resumed second epoch: the same weights, bit for bit."""
    fit = dict(limit_train_batches=3, default_root_dir=tmp_path, enable_checkpointing=False)
    pl.seed_everything(0)
    uninterrupted = Ladder(LadderNetwork(WIDTHS), lr_decay_start=0.5, lr_decay_end=4.0)
    _trainer(max_epochs=2, **fit).fit(uninterrupted, _data(mnist_fixture_dir))

    pl.seed_everything(0)
    first = Ladder(LadderNetwork(WIDTHS), lr_decay_start=0.5, lr_decay_end=4.0)
    trainer = _trainer(max_epochs=1, **fit)
    trainer.fit(first, _data(mnist_fixture_dir))
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    pl.seed_everything(123)  # whatever the global state, the resumed run continues the saved one
    resumed = Ladder(LadderNetwork(WIDTHS), lr_decay_start=0.5, lr_decay_end=4.0)
    _trainer(max_epochs=2, **fit).fit(resumed, _data(mnist_fixture_dir), ckpt_path=tmp_path / "one.ckpt")
    expected = _state(uninterrupted)
    assert all(torch.equal(expected[k], v) for k, v in _state(resumed).items())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"denoising_weights": [1.0, 0.0]}, "denoising_weights needs 4 finite values >= 0"),
        ({"denoising_weights": [1.0, -1.0, 0.0, 0.0]}, "denoising_weights needs 4"),
        ({"lr_decay_start": 10.0, "lr_decay_end": 5.0}, "decay_start < decay_end"),
    ],
)
def test_bad_module_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Ladder(LadderNetwork(WIDTHS), **kwargs)


def test_bad_network_arguments_and_inputs_are_named():
    with pytest.raises(ValueError, match="widths must be at least two positive integers"):
        LadderNetwork([784])
    with pytest.raises(ValueError, match="input_noise_std and noise_std must be >= 0"):
        LadderNetwork(noise_std=-0.1)
    with pytest.raises(ValueError, match="running_average_cap"):
        LadderNetwork(running_average_cap=0)
    with pytest.raises(ValueError, match="layers_weighted needs 4 entries"):
        LadderNetwork(WIDTHS).denoising_costs(torch.rand(3, 784), [True])
    with pytest.raises(ValueError, match=r"flattened inputs \(N, 784\)"):
        LadderNetwork(WIDTHS).encode(torch.rand(2, 100), corrupted=False)
    with pytest.raises(ValueError, match=r"\(x_labelled, y_labelled, x_unlabelled\)"):
        Ladder(LadderNetwork(WIDTHS)).loss((torch.rand(2, 784), torch.zeros(2, dtype=torch.long)))
    clean = LadderNetwork(WIDTHS).encode(torch.rand(4, 784), corrupted=False)
    with pytest.raises(ValueError, match="a mean and a variance for each of the 3 layers, got 4 and 3"):
        LadderNetwork(WIDTHS).update_running_statistics(clean.mean, clean.var[1:], 4)
    with pytest.raises(ValueError, match="at least 2 examples, got 1"):
        LadderNetwork(WIDTHS).update_running_statistics(clean.mean[1:], clean.var[1:], 1)
