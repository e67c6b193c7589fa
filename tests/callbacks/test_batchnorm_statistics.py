"""BatchNormStatistics: the statistics the evaluation sees are those of the source split, computed here from
scratch with torch ops (the first layer's directly on the whole split; a later layer's through a hand-written
training-mode forward, batch by batch); everything is put back after the evaluation; training is bit-identical
with and without the callback."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from iclr17.callbacks import BatchNormStatistics
from iclr17.datamodules.in_memory import InMemoryDataModule
from tests.ddp_helpers import cpu_trainer
from tests.test_measurement_isolation import _differences, _state


class TinyData(InMemoryDataModule):
    """Random 6x6 images: ``n_train`` training, ``n_test`` test (also validation) images, two classes."""

    def __init__(self, n_train: int = 37, n_test: int = 23, batch_size: int = 8, seed: int = 0) -> None:
        super().__init__(batch_size=batch_size)
        g = torch.Generator().manual_seed(seed)
        self.splits = {
            name: TensorDataset(torch.randn(n, 1, 6, 6, generator=g) * 2 + 0.5, torch.randint(2, (n,), generator=g))
            for name, n in (("train", n_train), ("test", n_test))
        }

    def setup(self, stage: str | None = None) -> None:
        self.train_set, self.test_set = self.splits["train"], self.splits["test"]
        self.val_set = self.test_set


class TinyBNNet(pl.LightningModule):
    """conv 3x3 -> BN2d -> ReLU -> dropout -> linear -> BN1d -> ReLU -> linear; records what evaluation sees."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
            nn.Linear(3 * 4 * 4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2),
        )  # fmt: skip
        self.seen: list[dict[str, Any]] = []

    def loss(self, batch: Any) -> Tensor:
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.loss(batch)

    def _record(self, batch: Any) -> None:
        buffers = {n: b.clone() for n, b in self.net.named_buffers()}
        self.seen.append({"buffers": buffers, "flags": [m.training for m in self.modules()], "loss": self.loss(batch)})

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._record(batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._record(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _randomise_buffers(model: TinyBNNet, seed: int = 1) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (model.net[1], model.net[6]):
            bn.running_mean.copy_(torch.randn(bn.num_features, generator=g))
            bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
            bn.num_batches_tracked.fill_(7)
            bn.weight.copy_(torch.randn(bn.num_features, generator=g))
            bn.bias.copy_(torch.randn(bn.num_features, generator=g))
    return {n: b.clone() for n, b in model.net.named_buffers()}


def _bn_inputs(model: TinyBNNet, images: Tensor, batch_size: int) -> tuple[list[Tensor], list[Tensor]]:
    """The inputs of the two BN layers, batch by batch, by a hand-written training-mode forward with dropout off:
    the first BN normalises with its batch's mean and biased variance."""
    conv, bn1, linear = model.net[0], model.net[1], model.net[5]
    first, second = [], []
    with torch.no_grad():
        for x in images.split(batch_size):
            h = F.conv2d(x, conv.weight, conv.bias)
            first.append(h)
            mean, var = h.mean((0, 2, 3), keepdim=True), h.var((0, 2, 3), unbiased=False, keepdim=True)
            h = (h - mean) / torch.sqrt(var + bn1.eps) * bn1.weight.view(1, -1, 1, 1) + bn1.bias.view(1, -1, 1, 1)
            second.append(F.linear(h.relu().flatten(1), linear.weight, linear.bias))
    return first, second


def _channel_stats(values: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and unbiased variance over every other dimension."""
    per_channel = values.transpose(0, 1).reshape(values.shape[1], -1).double()
    return per_channel.mean(1), per_channel.var(1)


def _evaluate(callback: BatchNormStatistics, data: TinyData, buffers_seed: int = 1, stage: str = "validate"):
    torch.manual_seed(0)
    model = TinyBNNet()
    before = _randomise_buffers(model, buffers_seed)
    trainer = cpu_trainer([callback])
    getattr(trainer, stage)(model, data, verbose=False)
    return model, before


@pytest.mark.parametrize("source", ["train", "test"])
@pytest.mark.parametrize("stage", ["validate", "test"])
def test_evaluation_sees_the_statistics_of_the_whole_source_split(source, stage):
    data = TinyData(n_train=37, n_test=23)
    model, before = _evaluate(BatchNormStatistics(source=source, batch_size=5), data, stage=stage)
    images = data.splits[source].tensors[0]
    first, second = _bn_inputs(model, images, batch_size=5)
    direct_mean, direct_var = _channel_stats(F.conv2d(images, model.net[0].weight, model.net[0].bias))
    second_mean, second_var = _channel_stats(torch.cat(second))
    for seen in model.seen:  # every evaluation batch
        buffers = seen["buffers"]
        torch.testing.assert_close(buffers["1.running_mean"].double(), direct_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(buffers["1.running_var"].double(), direct_var, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(buffers["6.running_mean"].double(), second_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(buffers["6.running_var"].double(), second_var, rtol=1e-5, atol=1e-6)
        assert not any(seen["flags"])  # the evaluation itself runs in eval mode
    assert len(model.seen) == 3  # 23 test images in batches of 8
    after = {n: b for n, b in model.net.named_buffers()}
    assert _differences(before, {n: b.clone() for n, b in after.items()}) == []  # put back exactly


def test_authors_exponential_average_from_the_training_statistics():
    """momentum=0.1: the Torch7 update r <- 0.9 r + 0.1 batch statistic (unbiased variance), batch after batch in
    order, starting from the training-time statistics, no reset (the authors' compute_bn_params)."""
    data = TinyData(n_train=37, n_test=23)
    model, before = _evaluate(BatchNormStatistics(source="test", batch_size=8, momentum=0.1), data)
    first, second = _bn_inputs(model, data.splits["test"].tensors[0], batch_size=8)
    for prefix, inputs in (("1", first), ("6", second)):
        mean, var = before[f"{prefix}.running_mean"].double(), before[f"{prefix}.running_var"].double()
        for h in inputs:
            batch_mean, batch_var = _channel_stats(h)
            mean, var = 0.9 * mean + 0.1 * batch_mean, 0.9 * var + 0.1 * batch_var
        torch.testing.assert_close(model.seen[0]["buffers"][f"{prefix}.running_mean"].double(), mean)
        torch.testing.assert_close(model.seen[0]["buffers"][f"{prefix}.running_var"].double(), var)
    assert _differences(before, {n: b.clone() for n, b in model.net.named_buffers()}) == []


def test_statistics_do_not_depend_on_the_batch_size_for_the_first_layer():
    data = TinyData(n_train=37, n_test=23)
    means = [_evaluate(BatchNormStatistics("test", batch_size=b), data)[0].seen[0]["buffers"] for b in (1024, 4)]
    torch.testing.assert_close(means[0]["1.running_mean"], means[1]["1.running_mean"])
    torch.testing.assert_close(means[0]["1.running_var"], means[1]["1.running_var"])


def _fit(callbacks: list[pl.Callback]) -> tuple[Any, list[Tensor]]:
    pl.seed_everything(0)
    model = TinyBNNet()
    trainer = cpu_trainer(callbacks, max_epochs=2, enable_checkpointing=False, num_sanity_val_steps=1)
    trainer.fit(model, TinyData(batch_size=8))
    return SimpleNamespace(model=model, trainer=trainer), [s["loss"] for s in model.seen]


@pytest.mark.parametrize("source, momentum", [("train", None), ("test", 0.1)])
def test_training_is_bit_identical_with_and_without_the_callback(source, momentum):
    """Weights, BN buffers, module attributes, optimizer state and the global RNG after two epochs (dropout
    draws from the RNG every step; the sanity check and two validations re-estimate)."""
    plain, plain_losses = _fit([])
    measured, measured_losses = _fit([BatchNormStatistics(source=source, batch_size=8, momentum=momentum)])
    states = [{k: v for k, v in _state(r).items() if k != "attribute .seen"} for r in (plain, measured)]
    assert _differences(*states) == []
    assert [m.training for m in measured.model.modules()] == [m.training for m in plain.model.modules()]
    assert len(measured_losses) == len(plain_losses) == 7  # a 1-batch sanity check, then 2 validations of 3 batches
    assert not torch.equal(torch.stack(plain_losses), torch.stack(measured_losses))  # and evaluation did change


def test_bad_arguments_and_models_are_refused():
    with pytest.raises(ValueError, match="source must be 'train' or 'test'"):
        BatchNormStatistics(source="val")
    with pytest.raises(ValueError, match="batch_size"):
        BatchNormStatistics(batch_size=0)
    with pytest.raises(ValueError, match="momentum"):
        BatchNormStatistics(momentum=0.0)
    model = TinyBNNet()
    model.net = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        cpu_trainer([BatchNormStatistics()]).validate(model, TinyData(), verbose=False)


class SavingBNNet(TinyBNNet):
    """Writes what its evaluation saw to ``<path>.rank<r>``: spawned workers send nothing back."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def on_validation_end(self) -> None:
        torch.save([s["buffers"] for s in self.seen], f"{self.path}.rank{self.global_rank}")


@pytest.mark.slow  # about 20 s: two spawned processes
@pytest.mark.timeout(300)
def test_every_ddp_process_reestimates_on_the_whole_split(tmp_path):
    """Under two gloo processes both evaluate with the statistics of the whole source split, the same as one
    process's (each re-estimates on all of it, not on a shard)."""
    single, _ = _evaluate(BatchNormStatistics(source="train", batch_size=8), TinyData())
    torch.manual_seed(0)
    model = SavingBNNet(str(tmp_path / "seen"))
    _randomise_buffers(model)
    cpu_trainer([BatchNormStatistics(source="train", batch_size=8)], strategy="ddp_spawn", devices=2).validate(
        model, TinyData(), verbose=False
    )
    for rank in range(2):
        seen = torch.load(f"{tmp_path / 'seen'}.rank{rank}", weights_only=False)
        assert len(seen) == 3  # 23 validation images shared out: 12 a process, in batches of 8 / 2 processes
        for buffers in seen:
            for name in ("1.running_mean", "1.running_var", "6.running_mean", "6.running_var"):
                torch.testing.assert_close(buffers[name], single.seen[0]["buffers"][name])
