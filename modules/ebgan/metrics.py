"""The paper's MNIST score I' (section 4.1) as a DDP-safe metric, with the shipped classifier, and the offline
feature extractor that lets torchmetrics' FID and KID run on MNIST without downloading Inception weights.

The shipped classifier ``mnist_score_net.pt`` is the state dict of a :class:`MNISTScoreNet` trained with the
project's own ``Classifier`` on MNIST scaled to [-1, 1] (the generator's range)::

    iclr17 fit --config configs/ebgan/mnist_score_net.yaml
    python -m iclr17.studies.mnist_score_net runs/iclr17/<run>/checkpoints/last.ckpt

The second command writes the net's weights to ``modules/ebgan/mnist_score_net.pt`` and prints its accuracy on
the official 10,000 test images (the number is in the config's header).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from iclr17.functional.ebgan import mnist_score_from_statistics, mnist_score_statistics

from .nets import MNISTScoreNet

SCORE_NET_PATH = Path(__file__).with_name("mnist_score_net.pt")


def load_score_net(path: str | Path | None = None) -> MNISTScoreNet:
    """The shipped (or given) MNIST classifier, in eval mode with frozen weights."""
    path = Path(path) if path is not None else SCORE_NET_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: MNIST score classifier not found; rebuild it with python -m iclr17.studies.mnist_score_net"
        )
    net = MNISTScoreNet()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval().requires_grad_(False)


class MNISTScore(Metric):
    """I' = E_x KL(p(y) || p(y|x)) of generated MNIST images (arXiv:1609.03126 section 4.1).

    States are sums (``sum_x p(y|x)``, ``sum_x log p(y|x)``, the count), so the value is exact under DDP and
    over any batching. ``update`` takes images in [-1, 1] of shape ``(N, 1, 28, 28)`` or ``(N, 784)``, or class
    probabilities ``(N, K)`` when ``from_probs=True``. The classifier always runs in eval mode.

    Example::

        >>> metric = MNISTScore(classifier=None, from_probs=True, num_classes=2)
        >>> metric.update(torch.tensor([[0.9, 0.1], [0.1, 0.9]]))  # p(y) = (0.5, 0.5)
        >>> round(float(metric.compute()), 4)  # 0.5 log(0.5 / 0.9) + 0.5 log(0.5 / 0.1)
        0.5108

    Args:
        classifier: maps images to logits; default the shipped ``MNISTScoreNet``; None with ``from_probs``.
        from_probs: ``update`` receives probabilities instead of images.
        num_classes: number of classes.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, classifier: nn.Module | None | str = "shipped", from_probs: bool = False, num_classes: int = 10):
        super().__init__()
        if classifier == "shipped":
            classifier = None if from_probs else load_score_net()
        if classifier is None and not from_probs:
            raise ValueError("MNISTScore needs a classifier unless from_probs=True")
        # kept out of the module tree: a fixed, shipped net is not training state and must not enter checkpoints
        object.__setattr__(self, "classifier", classifier)
        self.from_probs = from_probs
        self.add_state("prob_sum", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("log_prob_sum", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, x: Tensor) -> None:
        if self.from_probs:
            probs = x
        else:
            self.classifier.to(x.device).eval()
            with torch.no_grad():
                probs = self.classifier(x.float()).softmax(dim=-1)
        prob_sum, log_prob_sum, n = mnist_score_statistics(probs.double())
        self.prob_sum += prob_sum
        self.log_prob_sum += log_prob_sum
        self.count += n

    def compute(self) -> Tensor:
        return mnist_score_from_statistics(self.prob_sum, self.log_prob_sum, self.count)


class MNISTFeatures(nn.Module):
    """The shipped classifier's 512 penultimate features, as torchmetrics' ``FrechetInceptionDistance(feature=...)``
    and ``KernelInceptionDistance(feature=...)`` expect (``num_features`` attribute; images in [-1, 1]); works
    offline, unlike the default Inception weights. Use Inception features where you have the weights.

    Args:
        net: the classifier; default the shipped one.
    """

    num_features = MNISTScoreNet.num_features

    def __init__(self, net: MNISTScoreNet | None = None) -> None:
        super().__init__()
        # kept out of the module tree, like MNISTScore's classifier: not part of any checkpoint
        object.__setattr__(self, "net", net if net is not None else load_score_net())

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.net.to(x.device).eval().features(x.float())
