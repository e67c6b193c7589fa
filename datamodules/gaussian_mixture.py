"""Mixture of k isotropic Gaussian clusters in d dimensions: the Hessian paper's toy data."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from .in_memory import InMemoryDataModule


def sample_gaussian_mixture(
    centers: torch.Tensor, n_samples: int, cluster_std: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n_samples`` points, as evenly over the clusters as the count allows, in a random order.

    Returns ``x`` of shape ``(n_samples, d)`` (float32) and labels ``y`` of shape ``(n_samples,)`` (int64).
    """
    k = len(centers)
    labels = torch.arange(n_samples) % k
    labels = labels[torch.randperm(n_samples, generator=generator)]
    noise = torch.randn(n_samples, centers.shape[1], generator=generator, dtype=centers.dtype)
    return (centers[labels] + cluster_std * noise).float(), labels


class GaussianMixtureDataModule(InMemoryDataModule):
    """k Gaussian clusters in d dimensions with independent seeded train, validation and test draws.

    The Hessian paper's setting (arXiv:1611.07476; ``docs/papers/hessian.md``) is two clusters at (-1, -1) and
    (1, 1), 100 samples, cluster standard deviation 1, standardised inputs: pass those ``centers`` in the
    config. Without ``centers``, ``num_classes`` centres are drawn uniformly from the box
    ``[-center_box, center_box]^dim`` (as scikit-learn's ``make_blobs`` does).

    Args:
        num_classes: number of clusters k (must agree with ``centers`` when given).
        dim: input dimension d (must agree with ``centers`` when given).
        centers: explicit cluster centres, k lists of d numbers.
        n_samples: training samples.
        n_val: validation samples.
        n_test: test samples.
        cluster_std: standard deviation of each cluster.
        center_box: half-width of the box random centres are drawn from.
        standardize: z-score every feature with the training split's mean and standard deviation.
        seed: seeds centres and samples; independent of the training seed.
        batch_size: global batch size, or None for full-batch training.
        num_workers: DataLoader worker processes.
        batches_per_step: fresh minibatches stacked into each training batch (``EntropySGD`` takes L + 1).
    """

    def __init__(
        self,
        num_classes: int = 2,
        dim: int = 2,
        centers: list[list[float]] | None = None,
        n_samples: int = 100,
        n_val: int = 100,
        n_test: int = 100,
        cluster_std: float = 1.0,
        center_box: float = 10.0,
        standardize: bool = True,
        seed: int = 0,
        batch_size: int | None = None,
        num_workers: int = 0,
        batches_per_step: int = 1,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, batches_per_step=batches_per_step)
        if centers is not None:
            shape = (len(centers), len(centers[0]) if centers else 0)
            if shape != (num_classes, dim) or any(len(c) != dim for c in centers):
                raise ValueError(f"centers must be num_classes={num_classes} lists of dim={dim} numbers, got {centers}")
        if num_classes < 2 or dim < 1 or min(n_samples, n_val, n_test) < 1:
            raise ValueError("need num_classes >= 2, dim >= 1 and at least one sample in every split")
        self.save_hyperparameters()
        self.num_classes = num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.hparams.dim,)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        generator = torch.Generator().manual_seed(hp.seed)
        if hp.centers is not None:
            centers = torch.tensor(hp.centers, dtype=torch.float64)
        else:
            centers = torch.rand(hp.num_classes, hp.dim, generator=generator, dtype=torch.float64) * 2 - 1
            centers = centers * hp.center_box
        splits = [
            sample_gaussian_mixture(centers, n, hp.cluster_std, generator) for n in (hp.n_samples, hp.n_val, hp.n_test)
        ]
        if hp.standardize:
            mean, std = splits[0][0].mean(0), splits[0][0].std(0).clamp_min(1e-12)
            splits = [((x - mean) / std, y) for x, y in splits]
        self.centers = centers.float()
        self.train_set, self.val_set, self.test_set = (TensorDataset(x, y) for x, y in splits)
