"""Export the MNIST score I' classifier (EBGAN arXiv:1609.03126 section 4.1) from a trained ``Classifier`` checkpoint.

    iclr17 fit --config configs/ebgan/mnist_score_net.yaml
    python -m iclr17.studies.mnist_score_net runs/iclr17/<run>/checkpoints/last.ckpt

writes the net's weights to ``modules/ebgan/mnist_score_net.pt`` and prints its accuracy on the official 10,000
test images.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from iclr17.datamodules import MNISTDataModule
from iclr17.modules.ebgan.metrics import SCORE_NET_PATH, load_score_net
from iclr17.modules.ebgan.nets import MNISTScoreNet


def export_score_net(checkpoint: str | Path, out: str | Path = SCORE_NET_PATH) -> Path:
    """Write the ``net`` weights of a ``Classifier(net=MNISTScoreNet())`` Lightning checkpoint to ``out``."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    net_state = {k.removeprefix("net."): v.clone() for k, v in state.items() if k.startswith("net.")}
    MNISTScoreNet().load_state_dict(net_state)  # fails loudly on a checkpoint of another net
    torch.save(net_state, out)
    return Path(out)


def _test_accuracy(net: nn.Module) -> float:
    datamodule = MNISTDataModule(normalization="tanh", batch_size=1000)
    datamodule.setup("test")
    correct = total = 0
    with torch.no_grad():
        for x, y in datamodule.test_dataloader():
            correct += int((net(x).argmax(dim=-1) == y).sum())
            total += len(y)
    return correct / total


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m iclr17.studies.mnist_score_net CLASSIFIER_CHECKPOINT")
    written = export_score_net(sys.argv[1])
    print(
        f"wrote {written} ({written.stat().st_size} bytes); test accuracy {_test_accuracy(load_score_net(written)):.4f}"
    )
