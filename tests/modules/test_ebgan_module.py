"""The EBGAN LightningModule: gradient routing, the two optimizers' separation, fits, resume and DDP."""

import math
from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

import iclr17.modules.ebgan.module as ebgan_module
from iclr17.datamodules import MNISTDataModule
from iclr17.functional.ebgan import discriminator_loss, gan_discriminator_loss, generator_loss, reconstruction_energy
from iclr17.modules import EBGAN, ConvDiscriminator, DCGANGenerator, MNISTDiscriminator, MNISTGenerator
from iclr17.modules.ebgan.module import LOSS_NOISE_SEED


def _tiny(loss="ebgan", **kwargs) -> EBGAN:
    head = "autoencoder" if loss == "ebgan" else "binary"
    return EBGAN(
        MNISTGenerator(z_dim=8, n_layers=2, size=32, init_std=0.02),
        MNISTDiscriminator(n_layers=3, size=16, head=head, init_std=0.02),
        loss=loss,
        **kwargs,
    )


def _trainer(**kwargs) -> pl.Trainer:
    defaults = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(**{**defaults, **kwargs})


def _mnist(root, batch_size=32) -> MNISTDataModule:
    return MNISTDataModule(data_dir=str(root), val_size=100, batch_size=batch_size, normalization="tanh")


def test_generator_gradient_flows_through_both_sides_of_the_reconstruction():
    """d||D(g) - g|| / dg = (J_D - I)^T r / ||r||: detaching the target removes exactly the -r/||r|| term."""
    torch.manual_seed(0)
    model = _tiny().eval()
    fake = torch.randn(3, 1, 28, 28)
    grads = {}
    for detach in (False, True):
        g = fake.clone().requires_grad_(True)
        model.energy_and_code(g, detach_target=detach)[0].sum().backward()
        grads[detach] = g.grad
    r = model.discriminator(fake)[0] - fake
    unit_residual = r / r.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(grads[False] - grads[True], -unit_residual, atol=1e-5, rtol=1e-4)
    assert grads[True].abs().sum() > 0  # and the AE path carries gradient too


def test_energy_matches_the_functional_definition():
    model = _tiny(energy="sse").eval()
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    expected = reconstruction_energy(x, model.discriminator(x)[0], "sse")
    torch.testing.assert_close(model.energy(x), expected)


class RecordingEBGAN(EBGAN):
    """Snapshots the other network's gradients around every optimizer step."""

    def _step(self, optimizer, loss):
        opt_g, _ = self.optimizers()
        other = self.discriminator if optimizer is opt_g else self.generator
        mine = self.generator if optimizer is opt_g else self.discriminator
        before = [None if p.grad is None else p.grad.clone() for p in other.parameters()]
        super()._step(optimizer, loss)
        after = [None if p.grad is None else p.grad.clone() for p in other.parameters()]
        self.records.append((optimizer is opt_g, before, after, [p.grad is not None for p in mine.parameters()]))


@pytest.mark.parametrize("loss", ["ebgan", "gan"])
def test_each_step_leaves_the_other_networks_gradients_alone(loss, mnist_fixture_dir):
    model = RecordingEBGAN(
        MNISTGenerator(z_dim=8, n_layers=2, size=32, init_std=0.02),
        MNISTDiscriminator(n_layers=2, size=16, head="autoencoder" if loss == "ebgan" else "binary"),
        loss=loss,
        pt_weight=0.1 if loss == "ebgan" else 0.0,
    )
    model.records = []
    _trainer(max_steps=6, limit_val_batches=0).fit(model, _mnist(mnist_fixture_dir))
    assert [is_g for is_g, *_ in model.records] == [False, True] * 3  # D first, then G
    for _, before, after, mine in model.records:
        assert all(m for m in mine)
        for b, a in zip(before, after, strict=True):
            assert (b is None and a is None) or torch.equal(b, a)


@pytest.mark.parametrize("kwargs", [{}, {"loss": "gan"}, {"pt_weight": 0.1, "energy": "mse", "margin": 0.5}])
def test_fit_logs_finite_values(kwargs, mnist_fixture_dir):
    model = _tiny(**kwargs)
    trainer = _trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=1, log_every_n_steps=1)
    trainer.fit(model, _mnist(mnist_fixture_dir))
    metrics = trainer.callback_metrics
    for key in ("train/loss_d", "train/loss_g", "train/energy_real", "train/energy_fake", "val/energy_fake"):
        assert torch.isfinite(metrics[key]), key
    if kwargs.get("loss") != "gan":
        assert 0.0 <= metrics["train/margin_active"] <= 1.0
    if kwargs.get("pt_weight"):
        assert 0.0 <= metrics["train/pt"] <= 1.0
    assert trainer.global_step == 8  # two optimizer steps per batch


def test_margin_schedule_is_applied_per_batch(mnist_fixture_dir):
    model = _tiny(margin=8.0, margin_schedule="linear", final_margin=0.0, margin_decay_epochs=2.0)
    trainer = _trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=0, log_every_n_steps=1)
    trainer.fit(model, _mnist(mnist_fixture_dir))
    # last batch: epoch 1 + 3/4 of the way, so m = 8 * (1 - 1.75 / 2)
    assert float(trainer.callback_metrics["train/margin"]) == pytest.approx(1.0)


def test_mnist_score_and_fid_are_logged_in_validation(mnist_fixture_dir):
    model = _tiny(mnist_score=True, fid=True)
    (metrics,) = _trainer().validate(model, _mnist(mnist_fixture_dir, batch_size=50))
    assert math.isfinite(metrics["val/mnist_score"]) and metrics["val/fid"] > 0.0  # I' is >= 0 by construction


def test_checkpoint_resume_continues_steps_optimizers_and_noise(mnist_fixture_dir, tmp_path):
    pl.seed_everything(0)
    first = _tiny()
    trainer = _trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(first, _mnist(mnist_fixture_dir))
    path = tmp_path / "one.ckpt"
    trainer.save_checkpoint(path)
    noise_after_first = first.sample_noise(4)

    resumed = _tiny()
    trainer = _trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, default_root_dir=tmp_path)

    class CheckAtStart(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                torch.testing.assert_close(pl_module.sample_noise(4), noise_after_first)
                self.seen = True

    check = CheckAtStart()
    trainer.callbacks.append(check)
    trainer.fit(resumed, _mnist(mnist_fixture_dir), ckpt_path=path)
    assert check.seen and trainer.global_step == 12
    assert all(state["step"] == 6 for state in trainer.optimizers[0].state_dict()["state"].values())


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="pt_weight"):
        _tiny(loss="gan", pt_weight=0.1)
    with pytest.raises(ValueError, match="d_steps_per_g"):
        _tiny(d_steps_per_g=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": "wgan"}, "loss must be one of ebgan, gan; got 'wgan'"),
        ({"energy": "l1"}, "energy must be one of l2, sse, mse; got 'l1'"),
        ({"margin_schedule": "cosine"}, "margin_schedule must be one of constant, linear, exponential, step"),
        ({"hinge_reduction": "sum"}, "hinge_reduction must be one of per_sample, batch_mean; got 'sum'"),
        ({"z_distribution": "gaussian"}, "z_distribution must be one of normal, uniform; got 'gaussian'"),
        ({"metric_features": "clip"}, "metric_features must be one of mnist, inception; got 'clip'"),
        ({"margin": 0.0}, "margin must be > 0; got 0.0"),
        ({"margin": -10.0}, "margin must be > 0; got -10.0"),
        ({"final_margin": -1.0}, "final_margin must be >= 0; got -1.0"),
        ({"margin_decay_epochs": 0.0}, "margin_decay_epochs must be > 0; got 0.0"),
        ({"margin_step_every": -1.0}, "margin_step_every must be > 0; got -1.0"),
        ({"pt_weight": -0.1}, "pt_weight must be >= 0; got -0.1"),
        ({"gradient_clip_val": 0.0}, "gradient_clip_val must be > 0 or None; got 0.0"),
    ],
)
def test_every_switch_and_range_is_checked_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=f"EBGAN: {message}"):
        _tiny(**kwargs)


@pytest.mark.parametrize(
    ("g_size", "d_size", "data_size"),
    [(16, 16, 8), (16, 16, 32), (8, 16, 16), (8, 16, 8)],  # a pair fed smaller / larger images; G and D disagree
)
def test_image_sizes_that_disagree_are_refused_naming_every_size(g_size, d_size, data_size):
    model = EBGAN(
        DCGANGenerator(z_dim=4, image_size=g_size, image_channels=1, width=2),
        ConvDiscriminator(image_channels=1, image_size=d_size, widths=[2]),
    )
    images = DataLoader(TensorDataset(torch.zeros(4, 1, data_size, data_size)), batch_size=2)
    sizes = f"images are 1x{data_size}x{data_size}, .* makes 1x{g_size}x{g_size} .* built for 1x{d_size}x{d_size}"
    with pytest.raises(ValueError, match=sizes):
        _trainer(max_epochs=1, limit_val_batches=0).fit(model, images)
    with pytest.raises(ValueError, match=sizes):
        _trainer().validate(model, images, verbose=False)


def test_matching_convolutional_sizes_train():
    model = EBGAN(
        DCGANGenerator(z_dim=4, image_size=8, image_channels=1, width=2),
        ConvDiscriminator(image_channels=1, image_size=8, widths=[2]),
    )
    images = DataLoader(TensorDataset(torch.zeros(4, 1, 8, 8)), batch_size=2)
    trainer = _trainer(max_epochs=1)
    trainer.fit(model, images, images)
    assert trainer.global_step == 4


def test_metric_nets_stay_out_of_checkpoints_and_noise_state_is_device_independent():
    """The shipped score net is not training state: turning I'/FID on must not change the state dict, so a
    checkpoint loads either way. The noise generator lives on the CPU, so its saved state resumes anywhere."""
    plain, scored = _tiny(), _tiny(mnist_score=True, fid=True)
    assert set(scored.state_dict()) == set(plain.state_dict())
    scored.load_state_dict(plain.state_dict())
    z = scored.sample_noise(4)
    assert z.shape == (4, scored.z_dim) and scored._noise_generator().device.type == "cpu"
    checkpoint: dict = {}
    scored.on_save_checkpoint(checkpoint)
    torch.Generator().set_state(checkpoint["ebgan_noise_rng"])  # a CPU state, whatever device trained


def test_the_score_net_refuses_images_that_are_not_28_by_28():
    from iclr17.modules.ebgan.nets import MNISTScoreNet

    with pytest.raises(ValueError, match="28x28"):
        MNISTScoreNet()(torch.zeros(2, 1, 56, 56))
    assert MNISTScoreNet()(torch.zeros(2, 784)).shape == (2, 10)


def test_fid_and_kid_are_logged_on_the_offline_features(mnist_fixture_dir):
    model = _tiny(fid=True, kid=True, kid_subset_size=8)
    trainer = _trainer(limit_val_batches=2)
    metrics = trainer.validate(model, _mnist(mnist_fixture_dir, batch_size=16), verbose=False)[0]
    assert all(math.isfinite(metrics[k]) for k in ("val/fid", "val/kid", "val/kid_std"))


def test_inception_features_fail_clearly_without_torch_fidelity():
    try:
        import torch_fidelity  # noqa: F401
    except ModuleNotFoundError:
        with pytest.raises(RuntimeError, match="torch-fidelity"):
            _tiny(fid=True, metric_features="inception")
    else:
        pytest.skip("torch-fidelity is installed here")


def _state(model: EBGAN) -> dict:
    """Everything loss(batch) could change: weights, BatchNorm statistics, both noise streams."""
    return {
        "tensors": {name: tensor.clone() for name, tensor in model.state_dict().items()},
        "global_rng": torch.random.get_rng_state(),
        "noise_rng": model.noise_rng.get_state(),
    }


def _refuse_logging(*args, **kwargs):
    raise AssertionError("loss(batch) logged")


@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_loss_is_the_discriminator_loss_on_fixed_noise_and_has_no_side_effects(dropout, monkeypatch):
    model = EBGAN(
        MNISTGenerator(z_dim=8, n_layers=3, size=32),  # BatchNorm: running statistics to keep
        MNISTDiscriminator(n_layers=3, size=16, dropout=dropout),  # dropout: global RNG draws to keep
        margin=3.0,
    ).train()
    model.noise_rng = torch.Generator().manual_seed(7)
    monkeypatch.setattr(model, "log", _refuse_logging)
    monkeypatch.setattr(model, "log_dict", _refuse_logging)
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    before = _state(model)
    first, second = model.loss([x, torch.zeros(6)]), model.loss(x)
    after = _state(model)
    assert before["tensors"].keys() == after["tensors"].keys()
    assert all(torch.equal(before["tensors"][k], after["tensors"][k]) for k in before["tensors"])
    assert torch.equal(before["global_rng"], after["global_rng"])
    assert torch.equal(before["noise_rng"], after["noise_rng"])
    assert torch.equal(first, second)  # the same noise (and dropout masks) at every call
    if dropout == 0.0:
        z = torch.randn(6, 8, generator=torch.Generator().manual_seed(LOSS_NOISE_SEED))
        with torch.no_grad():
            fake = model.generator(z)
        torch.testing.assert_close(first, discriminator_loss(model.energy(x), model.energy(fake), 3.0), rtol=0, atol=0)
    first.backward()  # the fakes are constants: D's gradient only, as in the D step
    assert all(p.grad is None for p in model.generator.parameters())
    assert all(p.grad is not None for p in model.discriminator.parameters())


def test_gan_loss_is_the_gan_discriminator_loss():
    model = _tiny("gan").eval()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(LOSS_NOISE_SEED))
    expected = gan_discriminator_loss(model.discriminator(x)[0], model.discriminator(model.generator(z))[0])
    torch.testing.assert_close(model.loss(x), expected, rtol=0, atol=0)


def test_generator_step_uses_the_functional_generator_loss_with_its_pt_term(monkeypatch):
    calls = []

    def recorded(fake_energy, codes=None, pt_weight=0.0):
        loss = generator_loss(fake_energy, codes, pt_weight)
        calls.append((codes is not None, pt_weight, loss.detach()))
        return loss

    monkeypatch.setattr(ebgan_module, "generator_loss", recorded)
    model = _tiny(pt_weight=0.1)
    loader = DataLoader(TensorDataset(torch.rand(16, 1, 28, 28) * 2 - 1), batch_size=8)
    trainer = _trainer(max_epochs=1, limit_train_batches=1, enable_checkpointing=False, log_every_n_steps=1)
    trainer.fit(model, loader)
    assert [(has_codes, weight) for has_codes, weight, _ in calls] == [(True, 0.1)]
    assert float(trainer.callback_metrics["train/loss_g"]) == float(calls[0][2])
    assert "train/pt" in trainer.callback_metrics


def test_default_and_injected_optimizers():
    opt_g, opt_d = _tiny().configure_optimizers()
    assert isinstance(opt_g, torch.optim.Adam) and isinstance(opt_d, torch.optim.Adam)
    assert opt_g.defaults["lr"] == opt_d.defaults["lr"] == 1e-3
    opt_g, opt_d = _tiny(optimizer_d=partial(torch.optim.SGD, lr=0.5)).configure_optimizers()
    assert isinstance(opt_g, torch.optim.Adam) and isinstance(opt_d, torch.optim.SGD) and opt_d.defaults["lr"] == 0.5
