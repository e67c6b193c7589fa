"""LanguageModel: size, carried hidden state, perplexity by hand, clipping after every closure call, errors."""

import math

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from iclr17.datamodules import CharTextDataModule, PTBDataModule
from iclr17.modules import LanguageModel
from tests.data.make_text import FIXTURE_CHAR_VOCAB_SIZE, FIXTURE_PTB_VOCAB_SIZE


def _trainer(**kwargs) -> pl.Trainer:
    defaults = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    return pl.Trainer(**defaults, enable_checkpointing=False, **kwargs)


def _tiny(vocab_size: int = FIXTURE_PTB_VOCAB_SIZE, **kwargs) -> LanguageModel:
    defaults = {"hidden_size": 6, "num_layers": 2, "dropout": 0.0, "init_range": 0.3}
    return LanguageModel(vocab_size=vocab_size, **{**defaults, **kwargs})


def _ptb(root, **kwargs) -> PTBDataModule:
    return PTBDataModule(data_dir=str(root), **{"batch_size": 4, "bptt": 5, **kwargs})


def test_default_is_zaremba_large_with_66m_parameters():
    with torch.device("meta"):
        model = LanguageModel()
    # embedding 10000 x 1500, two LSTM layers 4 x 1500 x (1500 + 1500 + 2), decoder 1500 x 10000 + 10000
    assert sum(p.numel() for p in model.parameters()) == 15_000_000 + 2 * 4 * 1500 * 3002 + 15_010_000 == 66_034_000


def test_uniform_init_and_weight_tying():
    model = _tiny(init_range=0.05)
    assert all(p.abs().max() <= 0.05 for p in model.parameters())
    tied = _tiny(tie_weights=True)
    assert tied.decoder.weight is tied.embedding.weight
    with pytest.raises(ValueError, match="tie_weights needs embedding_dim == hidden_size"):
        _tiny(tie_weights=True, embedding_dim=4)


def test_carried_state_makes_two_batches_one_long_sequence():
    model = _tiny().eval()
    tokens = torch.randint(0, FIXTURE_PTB_VOCAB_SIZE, (3, 10), generator=torch.Generator().manual_seed(0))
    long, _ = model(tokens)
    first, state = model(tokens[:, :4])
    second, _ = model(tokens[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), long)


class RecordLosses(pl.Callback):
    def __init__(self) -> None:
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].item())


@pytest.mark.parametrize("train_loss", ["mean", "sum_over_time"])
def test_training_carries_the_state_across_batches_and_restarts_it_each_epoch(fixture_data_root, train_loss):
    """With lr 0 and no dropout, batch i's loss is the loss on its tokens after all earlier tokens of the epoch;
    ``sum_over_time`` returns it times bptt (5) and still logs per-token values."""
    pl.seed_everything(0)
    model = _tiny(optimizer=lambda params: torch.optim.SGD(params, lr=0.0), train_loss=train_loss)
    scale = 5 if train_loss == "sum_over_time" else 1
    dm = _ptb(fixture_data_root)
    record = RecordLosses()
    _trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, callbacks=[record]).fit(model, dm)
    inputs = torch.cat([x for x, _ in list(dm.train_dataloader())[:3]], dim=1)
    targets = torch.cat([y for _, y in list(dm.train_dataloader())[:3]], dim=1)
    logits, _ = model(inputs)
    expected = [F.cross_entropy(logits[:, i : i + 5].reshape(-1, logits.shape[-1]), targets[:, i : i + 5].reshape(-1))
                for i in (0, 5, 10)]  # fmt: skip
    assert record.losses == pytest.approx([scale * t.item() for t in expected] * 2, rel=1e-5)
    assert model.trainer.callback_metrics["train/ppl_epoch"].item() == pytest.approx(
        math.exp(sum(t.item() for t in expected) / 3), rel=1e-5
    )
    assert model.trainer.callback_metrics["train/loss_step"].item() == pytest.approx(expected[0].item(), rel=1e-5)


def test_state_restarts_when_the_batch_size_changes():
    model = _tiny().eval()
    tokens = torch.randint(0, FIXTURE_PTB_VOCAB_SIZE, (4, 6), generator=torch.Generator().manual_seed(1))
    model._mean_nll("val", (tokens[:, :3], tokens[:, 1:4]))
    after_four_rows = model._mean_nll("val", (tokens[:2, 3:5], tokens[:2, 4:6]))  # 2 rows: starts from zero
    model._states.clear()
    torch.testing.assert_close(after_four_rows, model._mean_nll("val", (tokens[:2, 3:5], tokens[:2, 4:6])))


@pytest.mark.parametrize("train_loss", ["mean", "sum_over_time"])
def test_loss_scores_each_window_from_zero_and_leaves_the_carried_state_alone(train_loss):
    """``loss(batch)``, what callbacks measure: the training objective from a zero state, by hand from log-softmax
    over a fresh forward pass, whatever state training carries, and without touching that state."""
    model = _tiny(train_loss=train_loss).eval()
    tokens = torch.randint(0, FIXTURE_PTB_VOCAB_SIZE, (3, 11), generator=torch.Generator().manual_seed(2))
    batch = (tokens[:, 5:10], tokens[:, 6:11])
    model._mean_nll("train", (tokens[:, :5], tokens[:, 1:6]))  # a carried state, as after a training step
    carried = model._states["train"]
    with torch.no_grad():
        log_probs = torch.log_softmax(model.decoder(model.lstm(model.embedding(batch[0]))[0]).double(), dim=-1)
    by_hand = -log_probs.gather(-1, batch[1][..., None]).mean() * (5 if train_loss == "sum_over_time" else 1)
    assert model.loss(batch).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert model._states.keys() == {"train"} and model._states["train"] is carried


@pytest.mark.parametrize("unit", ["word", "char"])
def test_validation_perplexity_equals_a_hand_computation(fixture_data_root, unit):
    pl.seed_everything(0)
    if unit == "word":
        model, dm = _tiny(), _ptb(fixture_data_root, eval_batch_size=3)
    else:
        model = _tiny(vocab_size=FIXTURE_CHAR_VOCAB_SIZE, unit="char")
        dm = CharTextDataModule(data_dir=str(fixture_data_root), batch_size=4, bptt=7, eval_batch_size=3)
    (metrics,) = _trainer().validate(model, dm)
    # by hand: every whole batch of the 3 columns as one sequence, summed NLL over the scored tokens
    dm.setup()
    length = len(dm.tokens["val"]) // 3
    columns = dm.tokens["val"][: 3 * length].view(3, length)
    scored = (length - 1) // dm.bptt * dm.bptt
    with torch.no_grad():
        logits, _ = model.eval()(columns[:, :scored])
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    nll = -log_probs.gather(-1, columns[:, 1 : scored + 1, None]).sum() / (3 * scored)
    assert metrics["val/ppl"] == pytest.approx(math.exp(nll), rel=1e-5)
    assert metrics["val/loss"] == pytest.approx(nll.item(), rel=1e-5)
    if unit == "char":
        assert metrics["val/bits_per_char"] == pytest.approx(nll.item() / math.log(2), rel=1e-5)
    else:
        assert "val/bits_per_char" not in metrics


class CallsClosureTwice(torch.optim.SGD):
    """Evaluates the closure twice per step (as EntropySGD does L + 1 times) and records the gradient norm."""

    def __init__(self, params, lr: float = 0.1) -> None:
        super().__init__(params, lr=lr)
        self.norms = []

    def step(self, closure=None):
        for _ in range(2):
            loss = closure()
            grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
            self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        super().step()
        return loss


def test_gradients_are_clipped_after_every_closure_call(fixture_data_root):
    optimizers = []

    def factory(params):
        optimizers.append(CallsClosureTwice(params))
        return optimizers[-1]

    model = _tiny(grad_clip_norm=1e-3, optimizer=factory)
    _trainer(max_steps=2, limit_val_batches=0).fit(model, _ptb(fixture_data_root))
    assert optimizers[0].norms == pytest.approx([1e-3] * 4, rel=1e-3)


def test_setup_checks_the_vocabulary_and_stacked_batches(fixture_data_root):
    with pytest.raises(
        ValueError, match=f"model.vocab_size=7 but the datamodule's vocabulary has {FIXTURE_PTB_VOCAB_SIZE}"
    ):
        _trainer(fast_dev_run=True).fit(_tiny(vocab_size=7), _ptb(fixture_data_root))
    with pytest.raises(ValueError, match="batches_per_step=2 stacks consecutive minibatches"):
        _trainer(fast_dev_run=True).fit(_tiny(), _ptb(fixture_data_root, batches_per_step=2))
