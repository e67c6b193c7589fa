"""Export the MNIST score I' classifier (EBGAN arXiv:1609.03126 section 4.1) from a trained ``Classifier`` checkpoint.

    iclr17 fit --config configs/ebgan/mnist_score_net.yaml
    iclr17 score-net runs/iclr17/<run>/checkpoints/last.ckpt

writes the net's weights to ``modules/ebgan/mnist_score_net.pt`` and prints its accuracy on the official 10,000
test images.
"""

from __future__ import annotations

import os
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
    partial = Path(f"{out}.partial")
    torch.save(net_state, partial)
    os.replace(partial, out)  # never a half-written weights file
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


def main(checkpoint: str, out: str = str(SCORE_NET_PATH)) -> None:
    """Export the I' classifier of a ``Classifier(net=MNISTScoreNet())`` checkpoint and print its test accuracy.

    Args:
        checkpoint: the Lightning checkpoint of ``configs/ebgan/mnist_score_net.yaml``'s fit.
        out: where the net's weights go (default: the file the package ships and ``MNISTScore`` loads).
    """
    written = export_score_net(checkpoint, out)
    accuracy = _test_accuracy(load_score_net(written))
    print(f"wrote {written} ({written.stat().st_size} bytes); test accuracy {accuracy:.4f}")
