"""EBGAN-LN (EBGANLadder): at margin 0 it is the plain Ladder Network exactly; each step moves only its network;
the margin schedule; the generator's images; side-effect-free loss; exact checkpoint resume; argument checks."""

import copy

import pytest
import pytorch_lightning as pl
import torch

from iclr17.datamodules import SemiSupervisedMNISTDataModule
from iclr17.functional.ebgan import discriminator_loss
from iclr17.functional.ladder import ladder_loss
from iclr17.modules import EBGANLadder, Ladder, MNISTGenerator
from iclr17.modules.ladder import LadderNetwork

WIDTHS = [784, 12, 6, 10]


def _generator() -> MNISTGenerator:
    return MNISTGenerator(z_dim=8, n_layers=2, size=16, init_std=0.05)


def _model(**kwargs) -> EBGANLadder:
    defaults = dict(denoising_weights=[1.0, 0.0, 0.0, 0.0], margin=1.0)
    return EBGANLadder(LadderNetwork(WIDTHS), _generator(), **{**defaults, **kwargs})


def _trainer(**kwargs) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0
    )
    return pl.Trainer(**{**defaults, **kwargs})


def _data(root) -> SemiSupervisedMNISTDataModule:
    return SemiSupervisedMNISTDataModule(data_dir=str(root), num_labelled=20, batch_size=8)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(6, 784, generator=g), torch.randint(10, (6,), generator=g), torch.rand(6, 784, generator=g)


def test_at_margin_zero_the_discriminator_loss_is_the_plain_ladder_loss():
    network = LadderNetwork(WIDTHS)
    weights = [3.0, 0.5, 0.0, 0.1]
    ebgan_ln = EBGANLadder(copy.deepcopy(network), _generator(), denoising_weights=weights, margin=2.0)
    plain = Ladder(copy.deepcopy(network), denoising_weights=weights)
    batch = _batch()
    loss_d = ebgan_ln.discriminator_terms(batch, 0.0, torch.Generator().manual_seed(5))[0]
    logits, _, energy = plain.ladder_terms(*batch, torch.Generator().manual_seed(5))
    assert torch.equal(loss_d, ladder_loss(logits, batch[1], energy))
    # above 0 the same real terms plus EBGAN's hinge on the fakes' energies (drawn after the real halves' noise)
    rng = torch.Generator().manual_seed(5)
    loss_d, _, energy_real, z, energy_fake = ebgan_ln.discriminator_terms(batch, 2.0, rng)
    assert torch.equal(energy_real, energy)
    expected = torch.nn.functional.cross_entropy(logits, batch[1]) + discriminator_loss(energy, energy_fake, 2.0)
    assert torch.equal(loss_d, expected) and z.shape == (6, 8)


def test_training_at_margin_zero_is_training_the_plain_ladder(mnist_fixture_dir):
    """Same initial weights, same seed: after a fit at m = 0 the Ladder Networks agree bit for bit and G never moved."""
    network = LadderNetwork(WIDTHS)
    ebgan_ln = EBGANLadder(copy.deepcopy(network), _generator(), denoising_weights=[1.0, 0, 0, 0], margin=0.0)
    plain = Ladder(copy.deepcopy(network), denoising_weights=[1.0, 0, 0, 0])
    g_before = copy.deepcopy(ebgan_ln.generator.state_dict())
    for model in (ebgan_ln, plain):
        pl.seed_everything(0)
        _trainer(max_epochs=1, limit_train_batches=3, enable_checkpointing=False).fit(model, _data(mnist_fixture_dir))
    plain_state = plain.network.state_dict()
    assert all(torch.equal(plain_state[k], v) for k, v in ebgan_ln.network.state_dict().items())
    assert all(torch.equal(g_before[k], v) for k, v in ebgan_ln.generator.state_dict().items())


class RecordingEBGANLadder(EBGANLadder):
    """Records, around every backward pass, which network's gradients changed."""

    def manual_backward(self, loss, *args, **kwargs):
        snapshot = lambda module: [None if p.grad is None else p.grad.clone() for p in module.parameters()]  # noqa: E731
        g_before, d_before = snapshot(self.generator), snapshot(self.network)
        super().manual_backward(loss, *args, **kwargs)
        changed = lambda before, module: any(  # noqa: E731
            (b is None) != (p.grad is None) or (b is not None and not torch.equal(b, p.grad))
            for b, p in zip(before, module.parameters(), strict=True)
        )
        self.records.append((changed(g_before, self.generator), changed(d_before, self.network)))


def test_each_step_moves_only_its_own_network(mnist_fixture_dir):
    model = RecordingEBGANLadder(LadderNetwork(WIDTHS), _generator(), denoising_weights=[1.0, 0, 0, 0], margin=50.0)
    model.records = []
    trainer = _trainer(max_epochs=1, limit_train_batches=2)
    trainer.fit(model, _data(mnist_fixture_dir))
    assert model.records == [(False, True), (True, False)] * 2  # D's backward, then G's
    opt_g, opt_d = trainer.optimizers
    assert {id(p) for g in opt_g.param_groups for p in g["params"]} == {id(p) for p in model.generator.parameters()}
    assert {id(p) for g in opt_d.param_groups for p in g["params"]} == {id(p) for p in model.network.parameters()}
    assert trainer.global_step == 4


def test_the_margin_decays_per_batch_and_g_stops_at_zero(mnist_fixture_dir):
    model = _model(margin=8.0, margin_schedule="linear", margin_decay_epochs=1.0)
    margins = []

    class RecordMargin(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            margins.append(pl_module.current_margin(batch_idx))

    trainer = _trainer(max_epochs=2, limit_train_batches=4, log_every_n_steps=1, callbacks=[RecordMargin()])
    trainer.fit(model, _data(mnist_fixture_dir))
    assert margins == pytest.approx([8.0, 6.0, 4.0, 2.0, 0.0, 0.0, 0.0, 0.0])
    assert trainer.global_step == 4 * 2 + 4  # two steps a batch while m > 0, then D's only
    assert float(trainer.callback_metrics["train/margin"]) == 0.0


def test_generated_images_are_flat_and_in_the_unit_interval():
    model = _model()
    z = torch.randn(5, 8) * 10
    images = model.generate(z)
    assert images.shape == (5, 784) and images.min() >= 0.0 and images.max() <= 1.0
    torch.testing.assert_close(images, (model.generator(z).flatten(1) + 1) / 2)


def test_loss_is_side_effect_free():
    model = _model(margin=5.0)
    before = copy.deepcopy(model.state_dict())
    rng = model._noise_generator().get_state()
    first, second = model.loss(_batch()), model.loss(_batch())
    assert torch.equal(first, second) and torch.equal(model._noise_generator().get_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # G's BatchNorm buffers too


def test_checkpoint_resume_is_exact(mnist_fixture_dir, tmp_path):
    fit = dict(limit_train_batches=3, default_root_dir=tmp_path, enable_checkpointing=False)
    args = dict(margin=20.0, margin_decay_epochs=3.0, lr_decay_start=0.5, lr_decay_end=4.0)
    pl.seed_everything(0)
    uninterrupted = _model(**args)
    _trainer(max_epochs=2, **fit).fit(uninterrupted, _data(mnist_fixture_dir))

    pl.seed_everything(0)
    first = _model(**args)
    trainer = _trainer(max_epochs=1, **fit)
    trainer.fit(first, _data(mnist_fixture_dir))
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    pl.seed_everything(7)
    resumed = _model(**args)
    trainer = _trainer(max_epochs=2, **fit)
    trainer.fit(resumed, _data(mnist_fixture_dir), ckpt_path=tmp_path / "one.ckpt")
    expected = uninterrupted.state_dict()
    assert all(torch.equal(expected[k], v) for k, v in resumed.state_dict().items())
    assert trainer.global_step == 12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"margin": -1.0}, "margin and final_margin must be >= 0"),
        ({"final_margin": -0.5}, "margin and final_margin must be >= 0"),
        ({"margin_schedule": "cosine"}, "margin_schedule must be constant, linear, exponential or step"),
        ({"margin_decay_epochs": 0.0}, "decay_epochs must be > 0"),
        ({"z_distribution": "cauchy"}, "z_distribution must be 'normal' or 'uniform'"),
        ({"denoising_weights": [0.0, 1.0, 0.0, 0.0]}, r"denoising_weights\[0\] must be > 0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _model(**kwargs)


def test_a_generator_that_does_not_fit_is_refused():
    with pytest.raises(TypeError, match="needs an integer z_dim attribute"):
        EBGANLadder(LadderNetwork(WIDTHS), torch.nn.Linear(8, 784), denoising_weights=[1.0, 0, 0, 0])
    model = EBGANLadder(LadderNetwork([100, 10]), _generator(), denoising_weights=[1.0, 0.0])
    with pytest.raises(ValueError, match="makes images of 784 values; the Ladder Network takes 100"):
        model.generate(torch.randn(2, 8))
