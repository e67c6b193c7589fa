import copy
import gc
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from iclr17.callbacks import HessianSpectrum
from iclr17.callbacks.hessian import callback as hessian_callback
from iclr17.datamodules import GaussianMixtureDataModule
from iclr17.modules import MLP, Classifier
from tests.callbacks.user_models import LossAttribute, LossHelper, UserClassifier, WithLoss, cross_entropy


def _fit(callback, epochs=3, net=None, callbacks_extra=(), ckpt_path=None, **trainer_kwargs):
    pl.seed_everything(0)
    dm = GaussianMixtureDataModule(num_classes=3, dim=2, n_samples=90, batch_size=None, seed=1)
    model = Classifier(net or MLP([2, 6, 3]), num_classes=3, optimizer=lambda p: torch.optim.SGD(p, lr=0.5))
    trainer = pl.Trainer(
        max_epochs=epochs, logger=False, enable_progress_bar=False, enable_checkpointing=False,
        callbacks=[callback, *callbacks_extra], **trainer_kwargs,
    )  # fmt: skip
    trainer.fit(model, dm, ckpt_path=ckpt_path)
    return trainer, model, dm


def _independent_hessian(model, x, y, train=False, seed=0):
    """Dense Hessian of the cross-entropy by double backward, one row per parameter, in the order of
    ``model.net.parameters()``. ``train``: batch statistics and the dropout mask drawn right after
    ``torch.manual_seed(seed)`` (the callback's promise for ``mode="train"``)."""
    model = model.double().train(train)
    params = list(model.net.parameters())
    if train:
        torch.manual_seed(seed)
    loss = F.cross_entropy(model(x.double()), y)
    grads = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params, create_graph=True)])
    rows = [torch.cat([r.reshape(-1) for r in torch.autograd.grad(g, params, retain_graph=True)]) for g in grads]
    return torch.stack(rows)


def _independent_hessian_eigenvalues(model, x, y, train=False):
    return torch.linalg.eigvalsh(_independent_hessian(model, x, y, train))


def test_before_and_after_records_match_an_independent_hessian():
    callback = HessianSpectrum(method="exact", n_samples=90, num_classes=3)
    trainer, model, dm = _fit(callback)
    assert [r["when"] for r in callback.history] == ["start", "end"]
    end = callback.history[-1]
    assert end["n_params"] == sum(p.numel() for p in model.parameters()) and end["n_samples"] == 90
    x, y = dm.train_set.tensors
    expected = _independent_hessian_eigenvalues(model, x, y)
    torch.testing.assert_close(end["eigenvalues"], expected, rtol=1e-6, atol=1e-9)
    assert end["stats"]["lambda_max"] == pytest.approx(expected.max().item(), rel=1e-6)


def test_lanczos_and_slq_agree_with_exact():
    exact = HessianSpectrum(method="exact", n_samples=90, at_fit_start=False)
    _fit(exact)
    lanczos = HessianSpectrum(method="lanczos", n_samples=90, top_k=3, lanczos_steps=60, at_fit_start=False)
    _fit(lanczos)
    slq = HessianSpectrum(method="slq", n_samples=90, lanczos_steps=40, slq_probes=5, at_fit_start=False)
    _fit(slq)
    truth = exact.history[-1]["eigenvalues"]
    torch.testing.assert_close(lanczos.history[-1]["eigenvalues"][:3], truth.flip(0)[:3], rtol=1e-6, atol=1e-9)
    assert slq.history[-1]["stats"]["lambda_max"] == pytest.approx(truth.max().item(), rel=1e-4)
    assert slq.history[-1]["density"]["density"].shape == slq.history[-1]["density"]["grid"].shape


def test_trace_method_matches_exact_and_every_n_steps_measures_on_those_steps():
    exact = HessianSpectrum(method="exact", n_samples=90, at_fit_start=False)
    _fit(exact)
    trace = HessianSpectrum(method="trace", n_samples=90, trace_matvecs=45, at_fit_start=False, every_n_steps=2)
    _fit(trace)  # the net has 39 parameters: 15 sketch columns nearly exhaust the outliers
    assert [r["step"] for r in trace.history] == [2, 3] and [r["when"] for r in trace.history] == ["step", "end"]
    truth = exact.history[-1]["eigenvalues"].sum().item()
    assert trace.history[-1]["stats"]["trace"] == pytest.approx(truth, rel=1e-2)
    assert trace.history[-1]["eigenvalues"] is None and trace.history[-1]["density"] is None


def test_leaves_training_state_untouched_under_inference_mode():
    net = MLP([2, 6, 3], batchnorm=True, dropout=0.3)
    callback = HessianSpectrum(method="exact", n_samples=40, every_n_epochs=1, mode="train")
    pl.seed_everything(0)
    dm = GaussianMixtureDataModule(num_classes=3, n_samples=90, batch_size=30, seed=1)
    model = Classifier(net, num_classes=3)
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_checkpointing=False, inference_mode=True
    )
    trainer.fit(model, dm)
    bn = net.layers[2]
    before = (bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone())
    state = [p.detach().clone() for p in model.parameters()]
    optimizer_state = {k: {kk: vv.clone() for kk, vv in v.items()} for k, v in trainer.optimizers[0].state.items()}
    model.train()
    callback.batch = next(iter(dm.train_dataloader()))
    callback.n_subset = 30
    rng = torch.get_rng_state()
    with torch.inference_mode():
        record = callback.measure(trainer, model, "manual")
    assert record["eigenvalues"].dtype == torch.float64 and model.training and net.layers[4].training
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert torch.equal(bn.num_batches_tracked, before[2])
    assert all(torch.equal(a, b) and a.dtype == torch.float32 for a, b in zip(model.parameters(), state, strict=True))
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in trainer.optimizers[0].state.items():
        assert all(torch.equal(vv, optimizer_state[k][kk]) for kk, vv in v.items())


def test_auto_is_exact_up_to_exact_max_params_and_every_n_epochs_measures_after_those_epochs():
    """MLP([2, 6, 3]) has 39 parameters: exact_max_params=39 measures them exactly, 38 by Lanczos (39 steps exhaust
    the Krylov space, so its extremes are exact too). Full-batch training: one optimizer step per epoch."""
    exact = HessianSpectrum(n_samples=90, exact_max_params=39, top_k=2, every_n_epochs=2, save_files=False)
    iterative = HessianSpectrum(n_samples=90, exact_max_params=38, top_k=2, save_files=False, name="iterative")
    _, model, dm = _fit(exact, epochs=3, callbacks_extra=[iterative])
    assert [(r["when"], r["epoch"], r["step"]) for r in exact.history] == [
        ("start", 0, 0),
        ("epoch", 1, 2),
        ("end", 3, 3),
    ]
    assert [r["method"] for r in exact.history] == ["exact"] * 3
    assert [(r["when"], r["method"]) for r in iterative.history] == [("start", "lanczos"), ("end", "lanczos")]
    assert {r["n_params"] for r in exact.history + iterative.history} == {39}
    truth = _independent_hessian_eigenvalues(model, *dm.train_set.tensors)
    torch.testing.assert_close(exact.history[-1]["eigenvalues"], truth, rtol=1e-6, atol=1e-9)
    expected_extremes = torch.cat([truth.flip(0)[:2], truth[:2].flip(0)])  # top descending, then bottom
    torch.testing.assert_close(iterative.history[-1]["eigenvalues"], expected_extremes, rtol=1e-6, atol=1e-9)


def test_param_filter_gives_the_spectrum_of_the_matching_block_of_the_full_hessian():
    """The full Hessian's parameters in order: layers.1.weight (12), layers.1.bias (6), layers.3.weight (18),
    layers.3.bias (3). One filter selects the output layer, one both weights (a block that is not contiguous)."""
    quiet = {"method": "exact", "n_samples": 90, "at_fit_start": False, "save_files": False}
    layer = HessianSpectrum(param_filter=r"layers\.3\.", **quiet)
    weights = HessianSpectrum(param_filter=r"weight$", name="weights", **quiet)
    _, model, dm = _fit(layer, epochs=2, callbacks_extra=[weights])
    full = _independent_hessian(model, *dm.train_set.tensors).numpy()
    for callback, rows in [(layer, np.r_[18:39]), (weights, np.r_[0:12, 18:36])]:
        expected = np.linalg.eigvalsh(full[np.ix_(rows, rows)])
        assert callback.history[-1]["n_params"] == len(rows)
        np.testing.assert_allclose(callback.history[-1]["eigenvalues"].numpy(), expected, rtol=1e-6, atol=1e-9)


def test_train_mode_measures_batch_statistics_and_the_dropout_mask_of_the_seed():
    """mode="train": BatchNorm uses the subset's statistics and dropout one mask, the one the RNG draws after
    manual_seed(seed), for every evaluation; exact and Lanczos (35 steps: exhausted) both see that function."""
    net = MLP([2, 4, 3], batchnorm=True, dropout=0.3)
    quiet = {"n_samples": 90, "mode": "train", "seed": 3, "at_fit_start": False, "save_files": False}
    exact = HessianSpectrum(method="exact", **quiet)
    iterative = HessianSpectrum(method="lanczos", top_k=3, name="lanczos", **quiet)
    _, model, dm = _fit(exact, epochs=1, net=net, callbacks_extra=[iterative])
    x, y = exact.batch  # the seeded subset, in the order the callback collated it: dropout rows follow it
    truth = torch.linalg.eigvalsh(_independent_hessian(model, x, y, train=True, seed=3))
    torch.testing.assert_close(exact.history[-1]["eigenvalues"], truth, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(
        iterative.history[-1]["eigenvalues"], torch.cat([truth.flip(0)[:3], truth[:3].flip(0)]), rtol=1e-6, atol=1e-9
    )
    eval_mode = _independent_hessian_eigenvalues(model, x, y)
    assert (truth - eval_mode).abs().max() > 1e-2  # train mode is a different function here


def test_float32_measures_in_float32_and_agrees_with_float64_to_its_precision():
    """dtype="float32": the loss sees float32 parameters and data; eigenvalues agree with a float64 Hessian to
    16 float32 ulps of lambda_max (rounding of P = 39 entries per row, a few ulps each; measured: a quarter of one),
    and are not float64 results (dtype="float64" agrees to 1e-15)."""
    seen = set()

    def spy(module, batch):
        seen.add((next(module.parameters()).dtype, batch[0].dtype))
        return F.cross_entropy(module(batch[0]), batch[1])

    quiet = {"n_samples": 90, "dtype": "float32", "loss_fn": spy, "at_fit_start": False, "save_files": False}
    exact = HessianSpectrum(method="exact", **quiet)
    iterative = HessianSpectrum(method="lanczos", top_k=3, name="lanczos", **quiet)
    _, model, dm = _fit(exact, epochs=2, callbacks_extra=[iterative])
    assert seen == {(torch.float32, torch.float32)}
    truth = _independent_hessian_eigenvalues(model, *dm.train_set.tensors)
    tolerance = 16 * torch.finfo(torch.float32).eps * truth.abs().max().item()
    measured = exact.history[-1]["eigenvalues"]
    torch.testing.assert_close(measured, truth, rtol=0, atol=tolerance)
    assert (measured - truth).abs().max() > 1e-12 * truth.abs().max()
    extremes = torch.cat([truth.flip(0)[:3], truth[:3].flip(0)])
    torch.testing.assert_close(iterative.history[-1]["eigenvalues"], extremes, rtol=0, atol=tolerance)


def _hv_warnings(loss_fn):
    quiet = {"n_samples": 90, "at_fit_start": False, "save_files": False}
    callback = HessianSpectrum(method="lanczos", top_k=2, lanczos_steps=5, mode="train", loss_fn=loss_fn, **quiet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(callback, epochs=1, net=MLP([2, 6, 3], dropout=0.3))
    return [w for w in caught if "H v differs between two evaluations" in str(w.message)]


def test_a_loss_with_noise_outside_the_seeded_rng_warns_and_one_from_torchs_rng_does_not():
    """Each evaluation of the loss starts from manual_seed(seed): noise from torch's global RNG (and the train-mode
    dropout) is one fixed function, noise from a generator of the loss's own differs between the two evaluations
    the callback compares, once per measurement."""
    own = torch.Generator().manual_seed(1)

    def global_noise(module, batch):
        x, y = batch
        return F.cross_entropy(module(x + 0.3 * torch.randn_like(x)), y)

    def own_noise(module, batch):
        x, y = batch
        return F.cross_entropy(module(x + 0.3 * torch.randn(x.shape, generator=own, dtype=x.dtype)), y)

    assert len(_hv_warnings(own_noise)) == 1
    assert _hv_warnings(global_noise) == []


class Failure(Exception):
    pass


def test_a_measurement_that_fails_leaves_the_model_as_it_was():
    """dtype, values, train flags and the RNG come back even when the loss raises mid-measurement."""
    callback = HessianSpectrum(method="exact", n_samples=30, at_fit_start=False, at_fit_end=False, mode="train")
    trainer, model, _ = _fit(callback, epochs=1, net=MLP([2, 6, 3], dropout=0.3))
    model.net.layers[1].eval()  # a model half in eval mode stays so
    flags = [m.training for m in model.modules()]
    weights = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()

    def failing(module, batch):
        torch.randn(10)
        assert next(module.parameters()).dtype == torch.float64 and module.training
        raise Failure

    callback.loss_fn = failing
    with pytest.raises(Failure):
        callback.measure(trainer, model, "manual")
    assert [m.training for m in model.modules()] == flags and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(a, b) and a.dtype == torch.float32 for a, b in zip(model.parameters(), weights, strict=True))


def test_history_resumes_from_a_checkpoint(tmp_path):
    callback = HessianSpectrum(method="exact", n_samples=90)
    trainer, model, _ = _fit(callback, epochs=1)
    path = tmp_path / "c.ckpt"
    trainer.save_checkpoint(path)
    resumed = HessianSpectrum(method="exact", n_samples=90)
    pl.seed_everything(0)
    dm = GaussianMixtureDataModule(num_classes=3, dim=2, n_samples=90, batch_size=None, seed=1)
    model = Classifier(MLP([2, 6, 3]), num_classes=3, optimizer=lambda p: torch.optim.SGD(p, lr=0.5))
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_checkpointing=False, callbacks=[resumed]
    )
    trainer.fit(model, dm, ckpt_path=path)
    assert [r["when"] for r in resumed.history] == ["start", "end", "end"]  # no second "start" on resume
    assert resumed.history[0]["eigenvalues"].shape == callback.history[0]["eigenvalues"].shape


def test_contract_errors():
    with pytest.raises(ValueError, match="param_filter"):
        _fit(HessianSpectrum(param_filter="no_such_layer"), epochs=1)
    with pytest.raises(ValueError, match="positive"):
        HessianSpectrum(n_samples=0)


@pytest.mark.parametrize("cls", [UserClassifier, LossAttribute, LossHelper])
def test_a_model_without_loss_method_is_refused_in_setup_unless_given_loss_fn(cls):
    name = cls.__name__
    with pytest.raises(TypeError, match=rf"^HessianSpectrum: {name} .*Define {name}\.loss\(self, batch\).*loss_fn="):
        HessianSpectrum().setup(pl.Trainer(logger=False), cls(), "fit")
    HessianSpectrum(loss_fn=cross_entropy).setup(pl.Trainer(logger=False), cls(), "fit")
    HessianSpectrum().setup(pl.Trainer(logger=False), WithLoss(), "fit")


def test_a_user_model_measured_through_loss_fn_matches_an_independent_hessian():
    """A model of the user's own, trained by its own training_step, measured through the loss_fn it is given."""
    pl.seed_everything(0)
    dm = GaussianMixtureDataModule(num_classes=3, dim=2, n_samples=90, batch_size=None, seed=1)
    model = UserClassifier(MLP([2, 6, 3]))
    callback = HessianSpectrum(method="exact", n_samples=90, loss_fn=cross_entropy, save_files=False)
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_checkpointing=False, callbacks=[callback]
    )
    trainer.fit(model, dm)
    x, y = dm.train_set.tensors
    expected = _independent_hessian_eigenvalues(model, x, y)
    torch.testing.assert_close(callback.history[-1]["eigenvalues"], expected, rtol=1e-6, atol=1e-9)


def test_writes_npz_and_png_per_snapshot(tmp_path):
    import numpy as np

    callback = HessianSpectrum(method="exact", n_samples=90)
    _fit(callback, epochs=2, default_root_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / "hessian").iterdir())
    assert files == ["end_step2.npz", "end_step2.png", "start_step0.npz", "start_step0.png"]
    saved = np.load(tmp_path / "hessian" / "end_step2.npz")
    np.testing.assert_array_equal(saved["eigenvalues"], callback.history[-1]["eigenvalues"].numpy())
    assert float(saved["lambda_max"]) == callback.history[-1]["stats"]["lambda_max"]

    slq = HessianSpectrum(method="slq", n_samples=90, lanczos_steps=20, slq_probes=2, at_fit_start=False)
    _fit(slq, epochs=1, default_root_dir=tmp_path / "slq")
    assert {p.suffix for p in (tmp_path / "slq" / "hessian").iterdir()} == {".npz", ".png"}


class NoisyDataset(TensorDataset):
    """A dataset that draws from torch's global RNG on every item, as a random augmentation does."""

    def __getitem__(self, index):
        x, y = super().__getitem__(index)
        return x + 0.1 * torch.randn_like(x), y


def _weights_after_a_fit(callbacks) -> list:
    pl.seed_everything(0)
    x = torch.randn(60, 2)
    y = (x[:, 0] > 0).long()
    model = Classifier(MLP([2, 5, 3]), num_classes=3, optimizer=lambda p: torch.optim.SGD(p, lr=0.5))
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_checkpointing=False, callbacks=callbacks
    )
    trainer.fit(model, DataLoader(NoisyDataset(x, y), batch_size=20, shuffle=True))
    return [p.detach().clone() for p in model.parameters()]


def test_drawing_the_subset_from_a_random_dataset_leaves_training_as_it_would_be():
    callback = HessianSpectrum(method="exact", n_samples=30, at_fit_start=False, at_fit_end=False)
    for with_callback, without in zip(_weights_after_a_fit([callback]), _weights_after_a_fit([]), strict=True):
        assert torch.equal(with_callback, without)


def test_a_plain_dataloader_fit_draws_the_subset_from_the_trainers_loader():
    """No datamodule: ``trainer.fit(model, loader)``; the subset is the loader's dataset (all of it here)."""
    pl.seed_everything(0)
    x = torch.randn(60, 2)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    model = Classifier(MLP([2, 5, 3]), num_classes=3, optimizer=lambda p: torch.optim.SGD(p, lr=0.5))
    callback = HessianSpectrum(method="exact", n_samples=60)
    trainer = pl.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_checkpointing=False, callbacks=[callback]
    )
    trainer.fit(model, DataLoader(TensorDataset(x, y), batch_size=20, shuffle=True))
    assert [r["when"] for r in callback.history] == ["start", "end"] and callback.history[-1]["n_samples"] == 60
    torch.testing.assert_close(
        callback.history[-1]["eigenvalues"], _independent_hessian_eigenvalues(model, x, y), rtol=1e-6, atol=1e-9
    )


def _tensors(value):
    """Every tensor inside a record (nested dicts and lists)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)


def _tensors_with_history() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor) and o.grad_fn is not None)


def test_train_mode_records_hold_no_graph_and_repeated_measurements_keep_none_alive():
    """A train-mode BatchNorm once tied every record to its autograd graph (memory grew with each measurement
    and the state could not be deep-copied)."""
    net = MLP([2, 6, 3], batchnorm=True)
    callback = HessianSpectrum(method="lanczos", n_samples=30, mode="train", top_k=2, lanczos_steps=8, save_files=False)
    trainer, model, _ = _fit(callback, epochs=1, net=net)
    alive = _tensors_with_history()
    for method in ("lanczos", "slq", "trace", "exact", "lanczos"):
        callback.method = method
        callback.measure(trainer, model, "manual")
    assert _tensors_with_history() == alive
    tensors = list(_tensors(callback.history))
    assert len(tensors) >= 7 and not any(t.requires_grad or t.grad_fn is not None for t in tensors)
    copied = copy.deepcopy(callback.state_dict())
    torch.testing.assert_close(copied["history"][-1]["eigenvalues"], callback.history[-1]["eigenvalues"])


def _two_spectra():
    return [
        HessianSpectrum(method="lanczos", n_samples=90, top_k=2, lanczos_steps=20, param_filter=r"layers\.1\."),
        HessianSpectrum(method="slq", n_samples=90, lanczos_steps=10, slq_probes=2, name="hessian_slq"),
    ]


def test_two_callbacks_share_a_trainer_and_each_resumes_its_own_history(tmp_path):
    first = _two_spectra()
    trainer, _, _ = _fit(first[0], epochs=1, callbacks_extra=first[1:], default_root_dir=tmp_path)
    assert [r["n_params"] for r in first[0].history] == [2 * 6 + 6] * 2  # the first layer only
    assert [r["method"] for r in first[1].history] == ["slq", "slq"]
    assert {p.parent.name for p in tmp_path.rglob("*.npz")} == {"hessian", "hessian_slq"}
    path = tmp_path / "two.ckpt"
    trainer.save_checkpoint(path)

    resumed = list(reversed(_two_spectra()))  # order in the Trainer does not matter
    _fit(resumed[0], epochs=2, callbacks_extra=resumed[1:], ckpt_path=path, default_root_dir=tmp_path)
    for before, after in zip(first, reversed(resumed), strict=True):
        assert [r["when"] for r in after.history] == ["start", "end", "end"]
        assert after.history[0]["stats"] == before.history[0]["stats"]
    with pytest.raises(ValueError, match="name"):
        _fit(HessianSpectrum(method="exact"), epochs=1, callbacks_extra=[HessianSpectrum(method="slq")])


@pytest.mark.parametrize("method", ["lanczos", "slq", "trace"])
def test_every_estimator_gets_the_parameters_device(method, monkeypatch):
    """The estimators draw their probes on the device they are given (tested with the meta device in
    test_hessian_functional.py); the callback must give them the parameters' device (SLQ once got the CPU)."""
    devices = []
    for name in ("lanczos_extremes", "slq_density", "hutchpp_trace", "hutchinson_trace"):
        real = getattr(hessian_callback, name)

        def recording(*args, real=real, **kwargs):
            devices.append(kwargs.get("device"))
            return real(*args, **kwargs)

        monkeypatch.setattr(hessian_callback, name, recording)
    callback = HessianSpectrum(method=method, n_samples=30, lanczos_steps=5, slq_probes=2, trace_matvecs=9)
    _, model, _ = _fit(callback, epochs=1)
    assert devices == [next(model.parameters()).device] * 2  # start and end
