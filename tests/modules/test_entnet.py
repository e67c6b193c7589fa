import copy
import math
from functools import partial

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from scipy import stats

from iclr17.datamodules import BabiDataModule, CBTDataModule
from iclr17.modules import EntNet, EntNetCBT
from iclr17.modules.entnet.metrics import PerTaskError
from iclr17.modules.entnet.nets import (
    DynamicMemory,
    FeaturePReLU,
    OutputModule,
    SimpleMemory,
    normalize_slots,
    on_cpu_in_float32,
)

torch.set_default_dtype(torch.float32)


def reference_memory(mem, sentences, mask, keys, memory, prelu_slope):
    """Paper eqs. 2-5 written slot by slot and step by step, in float64."""
    b_size, steps, _ = sentences.shape
    h = memory.clone()
    for b in range(b_size):
        for t in range(steps):
            if not mask[b, t]:
                continue
            s = sentences[b, t]
            new = h[b].clone()
            for j in range(h.shape[1]):
                gate = torch.sigmoid(s @ h[b, j] + s @ keys[b, j] + mem.gate_bias[j])
                pre = mem.U.weight @ h[b, j] + mem.U.bias + mem.V.weight @ keys[b, j] + mem.W.weight @ s
                candidate = torch.where(pre >= 0, pre, prelu_slope * pre)
                updated = h[b, j] + gate * candidate
                new[j] = updated / updated.norm()
            h[b] = new
    return h


@pytest.mark.parametrize("fused", [True, False])
def test_memory_matches_the_equations_slot_by_slot(fused):
    torch.manual_seed(0)
    d, m = 6, 3
    prelu = FeaturePReLU(d).double()
    with torch.no_grad():
        prelu.slope.uniform_(0.1, 0.9)
    mem = DynamicMemory(d, m, prelu, fused=fused).double()
    with torch.no_grad():
        mem.gate_bias.normal_()
    sentences, keys = torch.randn(2, 4, d, dtype=torch.float64), torch.randn(2, m, d, dtype=torch.float64)
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    with torch.no_grad():
        ours, gates = mem(sentences, mask, keys, initial=keys)
        expected = reference_memory(mem, sentences, mask, keys, keys, prelu.slope)
    torch.testing.assert_close(ours, expected)
    assert gates.shape == (2, 4, m) and gates[1, 2:].eq(0).all()


def test_padded_steps_leave_the_memory_exactly_unchanged():
    torch.manual_seed(1)
    mem = DynamicMemory(8, 4, FeaturePReLU(8))
    sentences, keys = torch.randn(3, 5, 8), torch.randn(3, 4, 8)
    padded = torch.cat([sentences, torch.zeros(3, 7, 8)], dim=1)
    mask = torch.ones(3, 5, dtype=torch.bool)
    padded_mask = torch.cat([mask, torch.zeros(3, 7, dtype=torch.bool)], dim=1)
    assert torch.equal(mem(sentences, mask, keys, keys)[0], mem(padded, padded_mask, keys, keys)[0])


def test_simple_memory_adds_gated_sentences():
    torch.manual_seed(3)
    mem = SimpleMemory(2, gate_bias=False)
    s, keys = torch.randn(1, 2, 3), torch.randn(1, 2, 3)
    mask = torch.tensor([[True, False]])
    h, gates = mem(s, mask, keys, initial=keys)
    expected_gate = torch.sigmoid(keys[0] @ s[0, 0] + keys[0] @ s[0, 0])  # h = w at the start
    torch.testing.assert_close(h[0], keys[0] + expected_gate[:, None] * s[0, 0])
    assert gates[0, 1].eq(0).all()
    update = torch.randn(1, 2, 3)
    h_separate, _ = mem(s, mask, keys, initial=keys, update_sentences=update)
    torch.testing.assert_close(h_separate[0], keys[0] + expected_gate[:, None] * update[0, 0])


def test_output_module_matches_eq6():
    torch.manual_seed(2)
    prelu = FeaturePReLU(5)
    out = OutputModule(5, 7, prelu)
    q, memory = torch.randn(2, 5), torch.randn(2, 3, 5)
    p = torch.softmax((memory @ q.unsqueeze(-1)).squeeze(-1), dim=-1)
    u = (p.unsqueeze(-1) * memory).sum(1)
    torch.testing.assert_close(out(q, memory), out.R(prelu(q + out.H(u))))


def _eq6_with_hops(q, memory, H, R, slope, n_hops):
    """Paper eq. 6 in numpy, one question and one slot at a time, with the hop rule ``OutputModule`` documents
    (``q <- q + H u`` before each of the first ``n_hops - 1`` hops, MemN2N-style); the last hop gives
    ``y = R phi(q + H u)`` with phi the PReLU of per-feature slopes."""
    out = []
    for b in range(len(q)):
        query = q[b].copy()
        for hop in range(n_hops):
            scores = [float(query @ memory[b, j]) for j in range(memory.shape[1])]
            weights = [math.exp(s - max(scores)) for s in scores]
            p = [w / sum(weights) for w in weights]
            u = sum(p[j] * memory[b, j] for j in range(memory.shape[1]))
            if hop < n_hops - 1:
                query = query + H @ u
        pre = query + H @ u
        out.append(R @ np.where(pre >= 0, pre, slope * pre))
    return np.stack(out)


@pytest.mark.parametrize("n_hops", [1, 2, 3])
def test_output_module_with_several_hops_matches_eq6_hop_by_hop(n_hops):
    generator = torch.Generator().manual_seed(n_hops)
    d, m, n_out = 5, 4, 7
    prelu = FeaturePReLU(d).double()
    out = OutputModule(d, n_out, prelu, n_hops=n_hops).double()
    with torch.no_grad():
        prelu.slope.copy_(torch.rand(d, generator=generator, dtype=torch.float64) * 0.8 + 0.1)
        out.H.weight.copy_(torch.randn(d, d, generator=generator, dtype=torch.float64))
        out.R.weight.copy_(torch.randn(n_out, d, generator=generator, dtype=torch.float64))
        q = torch.randn(3, d, generator=generator, dtype=torch.float64)
        memory = torch.randn(3, m, d, generator=generator, dtype=torch.float64)
        ours = out(q, memory).numpy()
    params = [t.detach().numpy() for t in (q, memory, out.H.weight, out.R.weight, prelu.slope)]
    expected = _eq6_with_hops(*params, n_hops=n_hops)
    np.testing.assert_allclose(ours, expected, rtol=1e-10, atol=1e-12)
    others = [_eq6_with_hops(*params, n_hops=k) for k in (1, 2, 3) if k != n_hops]
    assert all(np.abs(ours - other).max() > 1e-3 for other in others)  # the hops really change the answer
    entnet = EntNet(embedding_dim=d, n_slots=m, vocab_size=4, sentence_length=2, query_length=2, n_hops=n_hops)
    assert entnet.output.n_hops == n_hops  # the module's argument reaches its output module


def test_normalize_and_prelu():
    h = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])
    torch.testing.assert_close(normalize_slots(h), torch.tensor([[[0.6, 0.8], [0.0, 0.0]]]))
    prelu = FeaturePReLU(2)
    with torch.no_grad():
        prelu.slope.copy_(torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(
        prelu(torch.tensor([[-2.0, -2.0], [3.0, 3.0]])), torch.tensor([[-1.0, -4.0], [3.0, 3.0]])
    )


def test_per_task_error_counts():
    metric = PerTaskError()
    metric.update(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3, 0]), torch.tensor([2, 2, 5, 5]))
    overall, per_task = metric.compute()
    assert float(overall) == 0.5 and {k: float(v) for k, v in per_task.items()} == {2: 0.5, 5: 0.5}


def _model_and_data(fixture_data_root, **kwargs):
    dm = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1], batch_size=16)
    dm.setup()
    model = EntNet(
        embedding_dim=16, n_slots=4, vocab_size=dm.vocab_size, sentence_length=dm.sentence_length,
        query_length=dm.query_length, **kwargs,
    )  # fmt: skip
    return model, dm


def test_shapes_and_gradient_reaches_every_parameter(fixture_data_root):
    model, dm = _model_and_data(fixture_data_root)
    batch = next(iter(dm.train_dataloader()))
    logits, diagnostics = model(batch["story"], batch["query"])
    assert logits.shape == (16, dm.vocab_size)
    assert diagnostics["memory"].shape == (16, 4, 16)
    torch.nn.functional.cross_entropy(logits, batch["answer"]).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_the_story_mask_starts_as_in_the_authors_code_by_default():
    """Default ``mask_init="official"``: the story mask ~ N(0, 0.1) (40,000 draws: the sample mean's standard error
    is 0.1 / 200 = 5e-4, the sample std's 0.1 / sqrt(80,000) = 3.5e-4); the question mask is ones either way."""
    torch.manual_seed(0)
    model = EntNet(embedding_dim=100, n_slots=2, vocab_size=5, sentence_length=400, query_length=3)
    mask = model.story_encoder.mask.detach().double().flatten()
    assert model.hparams.mask_init == "official" and mask.numel() == 40_000
    assert abs(float(mask.mean())) < 0.002 and abs(float(mask.std()) - 0.1) < 0.0015
    assert stats.kstest(mask.numpy(), stats.norm(scale=0.1).cdf).pvalue > 1e-3
    assert torch.equal(model.query_encoder.mask, torch.ones(3, 100))
    ones = EntNet(embedding_dim=100, n_slots=2, vocab_size=5, sentence_length=400, query_length=3, mask_init="ones")
    assert torch.equal(ones.story_encoder.mask, torch.ones(400, 100))
    assert torch.equal(ones.query_encoder.mask, torch.ones(3, 100))


def test_bad_arguments_are_refused_at_construction():
    with pytest.raises(ValueError, match="mask_init must be 'official'.*got 'gaussian'"):
        EntNet(mask_init="gaussian")
    with pytest.raises(ValueError, match="paper_exact"):
        EntNet(paper_exact=True, loss_reduction="mean")
    with pytest.raises(ValueError, match="paper_exact"):
        EntNet(paper_exact=True, mask_init="ones")
    with pytest.raises(ValueError, match="tied_keys"):
        EntNet(n_slots=3, tied_keys=["mary", "john"])


def test_paper_exact_builds_the_authors_initialisation(fixture_data_root):
    model, _ = _model_and_data(fixture_data_root, paper_exact=True)
    assert not torch.equal(model.story_encoder.mask, torch.ones_like(model.story_encoder.mask))
    assert torch.equal(model.query_encoder.mask, torch.ones_like(model.query_encoder.mask))
    assert model.embedding.weight[0].eq(0).all() and model.output.R.weight[0].eq(0).all()


def _trainer(tmp_path, **kwargs):
    defaults = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(default_root_dir=tmp_path, **{**defaults, **kwargs})


def test_learns_the_fixture_task_and_reports_errors(fixture_data_root, tmp_path):
    pl.seed_everything(0)
    dm = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1, 2], batch_size=16, epoch_sampling="permutation")
    model = EntNet(embedding_dim=20, n_slots=6)
    trainer = _trainer(tmp_path, max_epochs=15, enable_checkpointing=False)
    trainer.fit(model, dm)
    assert {"val/error_task1", "val/error_task2", "diag/grad_norm", "diag/gate_mean"} <= set(trainer.callback_metrics)
    (result,) = trainer.test(model, dm)
    assert result["test/error"] < 0.7  # guessing among the six places is 5/6 wrong; 15 epochs on 360 questions
    assert result["test/failed_tasks"] in (0.0, 1.0, 2.0)
    assert result["test/unknown_words"] == dm.unknown_words["test"]


def test_tied_keys_use_word_embeddings(fixture_data_root, tmp_path):
    dm = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1], batch_size=16)
    model = EntNet(embedding_dim=8, n_slots=2, tied_keys=["mary", "john"])
    trainer = _trainer(tmp_path, fast_dev_run=True)
    trainer.fit(model, dm)
    assert model.key_ids.tolist() == [dm.vocab.index("mary"), dm.vocab.index("john")]
    assert model.embedding.num_embeddings == dm.vocab_size
    trainer.save_checkpoint(tmp_path / "tied.ckpt")  # the key ids are in the state dict only
    restored = EntNet.load_from_checkpoint(tmp_path / "tied.ckpt")
    assert torch.equal(restored.key_ids, model.key_ids) and torch.equal(
        restored.embedding.weight, model.embedding.weight
    )


def test_checkpoint_restores_without_the_datamodule_and_resumes(fixture_data_root, tmp_path):
    pl.seed_everything(0)
    dm = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1], batch_size=16)
    model = EntNet(embedding_dim=8, n_slots=3)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path, max_epochs=1, callbacks=[checkpoint]).fit(model, dm)
    restored = EntNet.load_from_checkpoint(checkpoint.last_model_path)
    batch = next(iter(dm.val_dataloader()))
    model.eval(), restored.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            model(batch["story"], batch["query"])[0], restored(batch["story"], batch["query"])[0]
        )

    resumed = EntNet(embedding_dim=8, n_slots=3)
    trainer = _trainer(tmp_path, max_epochs=2)
    trainer.fit(resumed, dm, ckpt_path=checkpoint.last_model_path)
    assert trainer.current_epoch == 2 and trainer.global_step == 2 * (180 // 16)


def test_non_finite_loss_stops_with_a_clear_message(fixture_data_root, tmp_path):
    model, dm = _model_and_data(fixture_data_root)
    with torch.no_grad():
        model.output.R.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        _trainer(tmp_path, fast_dev_run=True).fit(model, dm)


def test_per_task_error_refuses_ids_beyond_its_size():
    with pytest.raises(ValueError, match="n_tasks"):
        PerTaskError(n_tasks=10).update(torch.tensor([1]), torch.tensor([1]), torch.tensor([11]))


class SetupLeavesTheLayersToConfigureModel(EntNet):
    def setup(self, stage):
        super().setup(stage)
        assert not hasattr(self, "embedding"), "EntNet built its layers in setup, not in configure_model"


def test_layers_are_built_in_configure_model(fixture_data_root, tmp_path):
    dm = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1], batch_size=16)
    model = SetupLeavesTheLayersToConfigureModel(embedding_dim=8, n_slots=3)
    assert not hasattr(model, "embedding")
    _trainer(tmp_path, fast_dev_run=True).fit(model, dm)
    assert model.embedding.num_embeddings == dm.vocab_size + 3 and model.hparams.vocab_size == dm.vocab_size


def test_layers_are_built_on_the_cpu_in_float32_whatever_the_context():
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.device("meta"), on_cpu_in_float32():
            made = torch.empty(2)
        assert made.device.type == "cpu" and made.dtype == torch.float32
        assert torch.get_default_dtype() == torch.float64  # restored on the way out
    finally:
        torch.set_default_dtype(dtype)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}, torch.random.get_rng_state()


def _refuse_logging(*args, **kwargs):
    raise AssertionError("loss(batch) logged")


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_loss_is_the_training_objective_without_side_effects(reduction, fixture_data_root, monkeypatch):
    model, dm = _model_and_data(fixture_data_root, loss_reduction=reduction)
    batch = next(iter(dm.train_dataloader()))
    monkeypatch.setattr(model, "log", _refuse_logging)
    monkeypatch.setattr(model, "log_dict", _refuse_logging)
    (tensors, rng), loss = _state(model), model.loss(batch)
    after, rng_after = _state(model)
    assert all(torch.equal(tensors[k], after[k]) for k in tensors) and torch.equal(rng, rng_after)
    logits, _ = model(batch["story"], batch["query"])
    expected = torch.nn.functional.cross_entropy(logits, batch["answer"], reduction=reduction)
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)


class RecordLosses(Callback):
    def __init__(self):
        self.losses, self.questions = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.questions.append(len(batch["answer"]))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_epoch_loss_is_the_mean_loss_per_question(reduction, fixture_data_root, tmp_path):
    dm = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1], batch_size=48)  # not a power of 2
    model = EntNet(embedding_dim=8, n_slots=3, loss_reduction=reduction)
    record = RecordLosses()
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=0, enable_checkpointing=False, callbacks=[record])
    trainer.fit(model, dm)
    assert len(record.losses) > 1
    summed = [loss if reduction == "sum" else loss * n for loss, n in zip(record.losses, record.questions, strict=True)]
    expected = sum(summed) / sum(record.questions)
    assert float(trainer.callback_metrics["train/loss_epoch"]) == pytest.approx(expected, rel=1e-6)


def test_default_optimizer_scheduler_and_interval(fixture_data_root):
    model, _ = _model_and_data(fixture_data_root)
    configured = model.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["lr"] == 0.01
    assert isinstance(scheduler["scheduler"], torch.optim.lr_scheduler.StepLR)
    assert (scheduler["scheduler"].step_size, scheduler["scheduler"].gamma, scheduler["interval"]) == (25, 0.5, "epoch")
    model, _ = _model_and_data(fixture_data_root, lr_scheduler_interval="step")
    assert model.configure_optimizers()["lr_scheduler"]["interval"] == "step"
    model, _ = _model_and_data(fixture_data_root, lr_scheduler=None, optimizer=partial(torch.optim.SGD, lr=0.5))
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.5


def test_cbt_builds_in_configure_model_trains_on_its_loss_and_logs_no_epoch_loss(fixture_data_root, tmp_path):
    dm = CBTDataModule(data_dir=str(fixture_data_root), word_type="NE", batch_size=8)
    model = EntNetCBT(embedding_dim=8)
    assert not hasattr(model, "embedding")
    optimizers = []

    class KeepOptimizer(Callback):
        def on_train_start(self, trainer, pl_module):
            optimizers.append(trainer.optimizers[0])

    trainer = _trainer(
        tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0, log_every_n_steps=1,
        enable_checkpointing=False, callbacks=[KeepOptimizer()],
    )  # fmt: skip
    trainer.fit(model, dm)
    assert isinstance(optimizers[0], torch.optim.SGD) and optimizers[0].defaults["lr"] == 0.001
    assert "train/loss_step" in trainer.callback_metrics and "train/loss_epoch" not in trainer.callback_metrics
    batch = next(iter(dm.val_dataloader()))
    model.eval()
    (tensors, rng), loss = _state(model), model.loss(batch)
    after, rng_after = _state(model)
    assert all(torch.equal(tensors[k], after[k]) for k in tensors) and torch.equal(rng, rng_after)
    log_p = model(batch["story"], batch["query"], batch["candidates"])
    torch.testing.assert_close(loss, torch.nn.functional.nll_loss(log_p, batch["answer"]), rtol=0, atol=0)


class RecordingAdam(torch.optim.Adam):
    """Adam (lr 0.01, EntNet's default) that records the global gradient norm it steps with: Lightning's closure
    (forward, backward and the module's gradient clipping) runs first, then the norm is read, then Adam steps."""

    def __init__(self, params, lr: float = 0.01) -> None:
        super().__init__(params, lr=lr)
        self.norms: list[float] = []

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad.flatten() for group in self.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.cat(grads)).item())
        super().step()
        return loss


class RawGradientNorms(Callback):
    """Before each batch, the unclipped global gradient norm of ``loss(batch)``, from a backward on a deep copy of
    the module (the trained module's gradients are left alone)."""

    def __init__(self) -> None:
        self.norms: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        twin = copy.deepcopy(pl_module)
        parameters = [p for p in twin.parameters() if p.requires_grad]
        grads = torch.autograd.grad(twin.loss(batch), parameters, allow_unused=True)
        self.norms.append(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads if g is not None])).item())


@pytest.mark.parametrize("clip", [{}, {"max_grad_norm": 25.0}, {"max_grad_norm": None}], ids=["paper-40", "25", "none"])
def test_the_optimizer_steps_with_the_gradient_norm_clipped_at_max_grad_norm(clip, fixture_data_root, tmp_path):
    """The global L2 norm of the gradients Adam steps with is ``min(raw norm, max_grad_norm)`` at every step: the
    direction is kept, only the length is cut (the paper's clip at 40 is the default); None never clips. Batches of
    60 summed losses put the raw norms on both sides of 40 and 25 within the 9 steps."""
    pl.seed_everything(0)
    dm = BabiDataModule(data_dir=str(fixture_data_root), tasks=[1], batch_size=60)
    dm.setup()
    model = EntNet(
        embedding_dim=16, n_slots=4, vocab_size=dm.vocab_size, sentence_length=dm.sentence_length,
        query_length=dm.query_length, optimizer=RecordingAdam, **clip,
    )  # fmt: skip
    raw = RawGradientNorms()
    trainer = _trainer(tmp_path, max_epochs=3, limit_val_batches=0, enable_checkpointing=False, callbacks=[raw])
    trainer.fit(model, dm)
    max_norm = clip.get("max_grad_norm", 40.0)
    assert model.hparams.max_grad_norm == max_norm
    seen = trainer.optimizers[0].norms
    assert len(seen) == len(raw.norms) == trainer.global_step == 9
    expected = [n if max_norm is None else min(n, max_norm) for n in raw.norms]
    assert seen == pytest.approx(expected, rel=1e-5)
    if max_norm is not None:  # both sides of the clip are exercised
        assert min(raw.norms) < max_norm < max(raw.norms)
