import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from iclr17.datamodules import BabiDataModule
from iclr17.modules import EntNet
from iclr17.modules.entnet.metrics import PerTaskError
from iclr17.modules.entnet.nets import DynamicMemory, FeaturePReLU, OutputModule, SimpleMemory, normalize_slots

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


def test_official_mask_init_and_paper_exact(fixture_data_root):
    model, _ = _model_and_data(fixture_data_root, paper_exact=True)
    assert not torch.equal(model.story_encoder.mask, torch.ones_like(model.story_encoder.mask))
    assert torch.equal(model.query_encoder.mask, torch.ones_like(model.query_encoder.mask))
    assert model.embedding.weight[0].eq(0).all() and model.output.R.weight[0].eq(0).all()
    with pytest.raises(ValueError, match="paper_exact"):
        EntNet(paper_exact=True, loss_reduction="mean")
    with pytest.raises(ValueError, match="tied_keys"):
        EntNet(n_slots=3, tied_keys=["mary", "john"])


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
    _trainer(tmp_path, fast_dev_run=True).fit(model, dm)
    assert model.key_ids.tolist() == [dm.vocab.index("mary"), dm.vocab.index("john")]
    assert model.embedding.num_embeddings == dm.vocab_size


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
