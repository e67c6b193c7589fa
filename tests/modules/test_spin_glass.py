"""The SpinGlass module and its datamodule against the functions (``tests/functional/test_spin_glass.py`` checks
those against autograd and a plain loop) and against the HaltingTime callback."""

import math

import pytest
import pytorch_lightning as pl
import torch

from iclr17.callbacks import HaltingTime
from iclr17.datamodules import SpinGlassDataModule
from iclr17.functional.spin_glass import (
    descend_until_halted,
    sphere_gradient,
    symmetrize,
)
from iclr17.modules import SpinGlass


def _trainer(max_steps, callbacks=()):
    return pl.Trainer(
        max_steps=max_steps, logger=False, enable_progress_bar=False, enable_checkpointing=False,
        enable_model_summary=False, callbacks=list(callbacks),
    )  # fmt: skip


def test_module_records_the_same_halting_steps_as_the_functions_and_the_callback():
    dm = SpinGlassDataModule(n_spins=8, n_instances=1, ensemble="uniform", seed=4, steps_per_epoch=50)
    model = SpinGlass(n_spins=8, n_instances=1, eps=[0.5, 0.05], init_seed=5)
    w0 = model.w.detach().clone()
    callback = HaltingTime("grad_norm_below", [0.5, 0.05])
    trainer = _trainer(1000, [callback])
    trainer.fit(model, dm)
    first, _, _ = descend_until_halted(symmetrize(dm.couplings), w0, torch.tensor([0.5, 0.05]))
    assert model.first_hits.tolist() == first.tolist()
    assert [r["step"] for r in callback.record] == first[0].tolist()
    assert trainer.global_step == first.max().item() + 1  # stopped once halted
    assert "train/loss_step" in trainer.callback_metrics


def test_module_runs_k_instances_and_refuses_a_mismatched_datamodule():
    dm = SpinGlassDataModule(n_spins=6, n_instances=3, seed=0, steps_per_epoch=5)
    model = SpinGlass(n_spins=6, n_instances=3, eps=1e-9)
    trainer = _trainer(7)
    trainer.fit(model, dm)
    assert trainer.global_step == 7 and (model.first_hits == -1).all()
    assert model.w.norm(dim=1).allclose(torch.full((3,), math.sqrt(6)))
    with pytest.raises(ValueError, match="n_instances"):
        _trainer(1).fit(SpinGlass(n_spins=6, n_instances=2), dm)


def test_loss_is_the_mean_energy_per_spin_without_side_effects(monkeypatch):
    def refuse_logging(*args, **kwargs):
        raise AssertionError("loss(couplings) logged")

    dm = SpinGlassDataModule(n_spins=6, n_instances=3, seed=0, steps_per_epoch=5)
    dm.setup("fit")
    model = SpinGlass(n_spins=6, n_instances=3)
    monkeypatch.setattr(model, "log", refuse_logging)
    monkeypatch.setattr(model, "log_dict", refuse_logging)
    couplings = symmetrize(dm.couplings)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = model.loss(couplings)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    h, _ = sphere_gradient(couplings, model.w.detach())
    torch.testing.assert_close(loss, h.mean() / 6)
    torch.testing.assert_close(model.loss(dm.couplings), loss)  # raw couplings have the same energy
    loss.backward()  # a function of w: the measurement callbacks differentiate it
    assert model.w.grad is not None and model.w.grad.abs().sum() > 0
