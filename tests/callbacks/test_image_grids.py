"""ImageGrids: fixed-z grids, reconstructions and energy histograms reach each kind of logger or PNG files."""

from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import wandb
from pytorch_lightning.loggers import TensorBoardLogger, WandbLogger

from iclr17.callbacks import ImageGrids
from iclr17.datamodules import MNISTDataModule
from iclr17.modules import EBGAN, MNISTDiscriminator, MNISTGenerator


def _model(loss="ebgan") -> EBGAN:
    head = "autoencoder" if loss == "ebgan" else "binary"
    return EBGAN(MNISTGenerator(z_dim=8, n_layers=2, size=16), MNISTDiscriminator(2, 16, head=head), loss=loss)


def _fit(callback, root, tmp_path, **kwargs):
    dm = MNISTDataModule(data_dir=str(root), val_size=100, batch_size=32, normalization="tanh")
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=4,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[callback],
        **kwargs,
    )
    trainer.fit(_model(), dm)


def test_png_fallback_writes_every_grid_and_the_histogram(mnist_fixture_dir, tmp_path):
    callback = ImageGrids(every_n_batches=2, n_images=16)
    _fit(callback, mnist_fixture_dir, tmp_path, logger=False)
    names = sorted(p.name for p in (tmp_path / "image_grids").glob("*.png"))
    # at the step the scalars of the same batch get (one per batch; global_step counts G and D steps: 4, 8)
    assert names == [f"{kind}_step{s}.png" for kind in ("energy", "reconstructions", "samples") for s in (1, 3)]
    assert callback.batches_seen == 4 and callback.logging_step.value == 4
    resumed = ImageGrids()
    resumed.load_state_dict(callback.state_dict())
    assert resumed.batches_seen == 4 and resumed.logging_step.state_dict() == callback.logging_step.state_dict()


def test_grids_use_fixed_noise_and_restore_train_mode():
    model = _model()
    callback = ImageGrids(n_images=9, seed=3)
    callback.setup(None, model, "fit")
    callback.real = torch.rand(4, 1, 28, 28) * 2 - 1
    first, second = callback._media(model), callback._media(model)
    torch.testing.assert_close(first["samples"], second["samples"])
    assert first["samples"].shape == (3, 3 * 30 + 2, 3 * 30 + 2)  # 3 x 3 grid of 28 px with 2 px padding
    assert first["reconstructions"].shape[0] == 3 and first["energy_real"].shape == (4,)
    assert all(m.training for m in model.modules())


def test_gan_models_get_samples_but_no_reconstructions():
    model = _model("gan")
    callback = ImageGrids(n_images=4)
    callback.setup(None, model, "fit")
    callback.real = torch.zeros(2, 1, 28, 28)
    assert set(callback._media(model)) == {"samples", "energy_real", "energy_fake"}


def test_media_go_to_wandb_and_tensorboard(monkeypatch, tmp_path):
    sent = []
    wandb_logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    monkeypatch.setattr(wandb_logger, "log_image", lambda key, images, step: sent.append(("wandb", key)))
    monkeypatch.setattr(wandb_logger, "log_metrics", lambda metrics, step: sent.extend(("wandb", k) for k in metrics))
    experiment = SimpleNamespace(
        add_image=lambda name, image, global_step: sent.append(("tb", name)),
        add_histogram=lambda name, values, global_step: sent.append(("tb", name)),
    )
    tensorboard = TensorBoardLogger.__new__(TensorBoardLogger)  # tensorboard itself is not installed here
    monkeypatch.setattr(TensorBoardLogger, "experiment", property(lambda self: experiment))
    trainer = SimpleNamespace(
        log_dir=str(tmp_path), default_root_dir=str(tmp_path), is_global_zero=True, global_step=7,
        loggers=[wandb_logger, tensorboard],
    )  # fmt: skip
    model = _model()
    callback = ImageGrids(n_images=4)
    callback.setup(None, model, "fit")
    callback.real = torch.zeros(2, 1, 28, 28)
    callback.log_grids(trainer, model)
    keys = ["images/samples", "images/reconstructions", "images/energy_fake", "images/energy_real"]
    assert sorted(sent) == sorted([(kind, key) for kind in ("wandb", "tb") for key in keys])
    assert not (tmp_path / "image_grids").exists()  # an image logger is present: no PNG fallback


def test_contract_is_checked():
    with pytest.raises(TypeError, match="sample_noise"):
        ImageGrids().setup(None, pl.LightningModule(), "fit")


def test_png_files_of_two_wandb_runs_land_in_each_runs_own_folder(mnist_fixture_dir, tmp_path, monkeypatch):
    """wandb's save_dir is shared by every run; the PNG files go to the run's own folder, as its checkpoints."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    for _ in range(2):
        logger = WandbLogger(save_dir=str(tmp_path), offline=True)
        _fit(ImageGrids(every_n_batches=0, n_images=4, save_png=True), mnist_fixture_dir, tmp_path, logger=logger)
        wandb.finish()
    folders = sorted(p.parent for p in tmp_path.rglob("image_grids"))
    assert len(folders) == 2 and all((folder / "checkpoints").is_dir() for folder in folders)
    assert all(len(list((folder / "image_grids").glob("samples_step*.png"))) == 1 for folder in folders)
