"""``unshare_memory`` against what ``torch.multiprocessing`` does to a pickled module: shared storage."""

import pytest
import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from iclr17.modules.process_memory import unshare_memory
from tests.ddp_helpers import shared_tensors


class SumAndList(Metric):
    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros(3), dist_reduce_fx="sum")
        self.add_state("seen", [], dist_reduce_fx="cat")

    def update(self, x: torch.Tensor) -> None:
        self.total += x
        self.seen.append(x)

    def compute(self) -> torch.Tensor:
        return self.total


def share_everything(module: nn.Module) -> None:
    """What pickling through ``torch.multiprocessing`` does to each tensor of ``module``."""
    for submodule in module.modules():
        held = [*vars(submodule).values(), *getattr(submodule, "_defaults", {}).values()]
        for value in held:
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, torch.Tensor):
                    v.share_memory_()


def test_every_shared_metric_state_becomes_private_with_its_values():
    model = nn.Module()
    model.inner = nn.Sequential(nn.Linear(2, 2))
    model.inner.metric = SumAndList()
    model.accuracy = MulticlassAccuracy(num_classes=3, average="micro")
    model.inner.metric.update(torch.tensor([1.0, 2.0, 3.0]))
    model.accuracy.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    share_everything(model)
    shared_total = model.inner.metric.total
    assert "inner.metric.total" in shared_tensors(model) and "inner.metric._defaults.total" in shared_tensors(model)

    unshare_memory(model)

    # parameters and buffers are Lightning's to copy; every other tensor is now private
    assert [n for n in shared_tensors(model) if "weight" not in n and "bias" not in n] == []
    torch.testing.assert_close(model.inner.metric.total, torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(model.inner.metric.seen[0], torch.tensor([1.0, 2.0, 3.0]))
    assert float(model.accuracy.compute()) == pytest.approx(2 / 3)
    model.inner.metric.update(torch.ones(3))  # an in-place update no longer reaches the other processes' tensor
    torch.testing.assert_close(shared_total, torch.tensor([1.0, 2.0, 3.0]))
    model.inner.metric.reset()
    torch.testing.assert_close(model.inner.metric.total, torch.zeros(3))


def test_a_process_that_shares_nothing_keeps_the_same_tensors():
    metric = SumAndList()
    total = metric.total
    unshare_memory(metric)
    assert metric.total is total
