"""The spin glass's math against autograd and a plain one-instance loop; the LightningModule against both."""

import math

import pytest
import pytorch_lightning as pl
import torch

from iclr17.callbacks import HaltingTime
from iclr17.datamodules import SpinGlassDataModule
from iclr17.functional.spin_glass import (
    COUPLING_ENSEMBLES,
    descend_until_halted,
    energy,
    random_sphere_points,
    sample_couplings,
    sphere_gradient,
    symmetrize,
)
from iclr17.modules import SpinGlass


@pytest.mark.parametrize("ensemble", COUPLING_ENSEMBLES)
def test_coupling_ensembles_have_mean_zero_and_variance_one(ensemble):
    x = sample_couplings(4, 40, ensemble, torch.Generator().manual_seed(0), torch.float64)
    assert x.shape == (4, 40, 40, 40)
    assert abs(x.mean().item()) < 0.01 and x.var().item() == pytest.approx(1.0, abs=0.01)
    if ensemble == "bernoulli":
        assert set(x.unique().tolist()) == {-1.0, 1.0}
    if ensemble == "uniform":
        assert x.abs().max().item() <= math.sqrt(3)
    if ensemble == "exponential":
        assert x.min().item() >= -1.0 and x.mean().item() < x.median().item() + 0.5


def _raw_energy(x, w):
    """H(w) = (1/N) sum x_ijk w_i w_j w_k written as nested contractions (no symmetrisation)."""
    n = w.shape[0]
    return ((x * w[:, None, None] * w[None, :, None] * w[None, None, :]).sum()) / n


def test_energy_and_projected_gradient_match_autograd():
    generator = torch.Generator().manual_seed(1)
    x = sample_couplings(3, 7, "exponential", generator, torch.float64)
    w = random_sphere_points(3, 7, generator, torch.float64)
    h, projected = sphere_gradient(symmetrize(x), w)
    for k in range(3):
        wk = w[k].clone().requires_grad_(True)
        (euclidean,) = torch.autograd.grad(_raw_energy(x[k], wk), wk)
        tangent = euclidean - (euclidean @ w[k]) / 7 * w[k]
        torch.testing.assert_close(projected[k], tangent)
        assert h[k].item() == pytest.approx(_raw_energy(x[k], w[k]).item(), rel=1e-12)
        # and it is the gradient of the energy of the point projected onto the sphere
        v = w[k].clone().requires_grad_(True)
        (on_sphere,) = torch.autograd.grad(_raw_energy(x[k], v * math.sqrt(7) / v.norm()), v)
        torch.testing.assert_close(projected[k], on_sphere)
    torch.testing.assert_close(energy(x, w), h)
    assert w.norm(dim=1).allclose(torch.full((3,), math.sqrt(7), dtype=torch.float64))


def _plain_loop(x, w, eps, lr, max_steps):
    """The Lua loop for one instance: autograd gradient, projection, step, rescale; first step below eps."""
    n, first = w.shape[0], [-1] * len(eps)
    for step in range(max_steps + 1):
        v = w.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_raw_energy(x, v), v)
        g = g - (g @ w) / n * w
        for e, threshold in enumerate(eps):
            if first[e] < 0 and g.norm().item() < threshold:
                first[e] = step
        if min(first) >= 0:
            break
        w = w - lr * g
        w = w * math.sqrt(n) / w.norm()
    return first


def test_vectorised_descent_equals_one_instance_at_a_time():
    generator = torch.Generator().manual_seed(2)
    x = sample_couplings(5, 8, "gaussian", generator, torch.float64)
    w = random_sphere_points(5, 8, generator, torch.float64)
    eps = [1.0, 0.1, 0.01]
    first, last, _ = descend_until_halted(symmetrize(x), w, torch.tensor(eps, dtype=torch.float64), 0.2, 0.0, 500)
    expected = [_plain_loop(x[k], w[k], eps, 0.2, 500) for k in range(5)]
    assert first.tolist() == expected
    assert last == max(max(row) for row in expected)


def test_censored_instances_are_marked():
    generator = torch.Generator().manual_seed(3)
    x, w = sample_couplings(4, 6, "bernoulli", generator), random_sphere_points(4, 6, generator)
    first, last, _ = descend_until_halted(symmetrize(x), w, torch.tensor([1e-12]), max_steps=5)
    assert last == 5 and (first == -1).all()


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
