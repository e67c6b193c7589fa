"""I' with the shipped classifier, and torchmetrics FID/KID on its offline features."""

import doctest

import pytest
import torch
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

import iclr17.modules.ebgan.metrics
from iclr17.modules.ebgan import MNISTFeatures, MNISTScore


def test_docstring_examples_run():
    results = doctest.testmod(iclr17.modules.ebgan.metrics)
    assert results.attempted >= 3 and results.failed == 0


def test_fid_and_kid_run_offline_on_the_classifier_features():
    torch.manual_seed(0)
    features = MNISTFeatures()
    real = torch.rand(120, 1, 28, 28) * 2 - 1
    fid_same, fid_other = FrechetInceptionDistance(feature=features), FrechetInceptionDistance(feature=features)
    kid = KernelInceptionDistance(feature=features, subset_size=40)
    for metric, fake in ((fid_same, real), (fid_other, -torch.ones_like(real)), (kid, real)):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    assert abs(float(fid_same.compute())) < 0.1 < 10 < float(fid_other.compute())  # 120 samples, 512 features
    assert abs(float(kid.compute()[0])) < 0.1  # unbiased MMD^2: near 0, either sign


def test_mnist_score_of_images_uses_the_shipped_classifier():
    metric = MNISTScore()
    metric.update(torch.zeros(10, 1, 28, 28))  # identical images: p(y) = p(y|x), I' = 0
    assert float(metric.compute()) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="classifier"):
        MNISTScore(classifier=None)
