"""Global contrast normalisation and ZCA whitening as pure functions: the CIFAR-10 input of Entropy-SGD's All-CNN-BN
(arXiv:1611.01838 section 5), the preprocessing of Goodfellow et al., "Maxout networks" (arXiv:1302.4389, its CIFAR-10
experiment) after Coates, Lee & Ng 2011 ("An analysis of single-layer networks in unsupervised feature learning",
AISTATS). Our choices: ``docs/papers/entropy_sgd.md``.

The defaults are those of the Entropy-SGD authors' ``process_cifar.py`` (ucla-vision/entropy-sgd, taken from
tscohen/gconv_experiments), read in its source, which prepared the CIFAR-10 used for the paper's All-CNN-BN:

- GCN: per image, subtract the mean over its 3,072 values and divide by their standard deviation with
  ``ddof=1`` (no scale, no bias; a standard deviation below 1e-8 is left undivided).
- ZCA: ``W = U diag(1 / (s + 1e-5)) U^T`` where ``s`` are the square roots of the eigenvalues of the
  ``ddof=1`` covariance of the training images and ``U`` its eigenvectors; the regulariser is added to
  ``s``, not to the eigenvalues.

pylearn2's convention (``make_cifar10_gcn_whitened.py``: ``CIFAR10(gcn=55.)`` then ``ZCA()``), read in its source,
differs: GCN divides by the vector norm and multiplies by ``scale=55``, and ZCA adds ``filter_bias=0.1`` to
the eigenvalues of the ``ddof=0`` covariance: ``W = U diag(1 / sqrt(lambda + 0.1)) U^T``. It is reachable
with ``divisor="norm", scale=55`` and ``eps=0.1, eps_on="eigenvalue"`` (up to ddof, 1 in 45,000).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor


def global_contrast_normalize(
    x: Tensor,
    scale: float = 1.0,
    divisor: Literal["std", "norm"] = "std",
    sqrt_bias: float = 0.0,
    min_divisor: float = 1e-8,
) -> Tensor:
    """Per-example contrast normalisation over all non-batch dimensions (Coates, Lee & Ng 2011; pylearn2's
    ``global_contrast_normalize``, used for arXiv:1302.4389's CIFAR-10), the first step of arXiv:1611.01838's CIFAR-10
    input (section 5) with the authors' ``process_cifar.py`` defaults (``docs/papers/entropy_sgd.md``).

    ``y = scale * (x - mean(x)) / d`` with ``d = sqrt(sqrt_bias + var(x, ddof=1))`` (``divisor="std"``) or
    ``d = sqrt(sqrt_bias + sum((x - mean(x))^2))`` (``divisor="norm"``); where ``d / scale < min_divisor`` the
    example is only centred (pylearn2 and ``process_cifar.py`` both compare ``d / scale``; with ``scale=1``
    that is ``d``).

    Args:
        x: ``(N, ...)`` examples, any float dtype (integers are converted to float32).
        scale: multiplies the result (pylearn2's CIFAR-10 used 55 with ``divisor="norm"``).
        divisor: per-example standard deviation (``ddof=1``) or Euclidean norm of the centred example.
        sqrt_bias: added under the square root (Coates et al. used 10 with ``std``).
        min_divisor: examples whose ``d / scale`` is below this are not divided.
    """
    if not x.is_floating_point():
        x = x.float()
    flat = x.reshape(len(x), -1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    if divisor == "std":
        spread = centred.var(dim=1, correction=1)
    elif divisor == "norm":
        spread = centred.square().sum(dim=1)
    else:
        raise ValueError(f"divisor must be 'std' or 'norm', got {divisor!r}")
    normalizers = torch.sqrt(sqrt_bias + spread) / scale
    normalizers = torch.where(normalizers < min_divisor, torch.ones_like(normalizers), normalizers)
    return (centred / normalizers[:, None]).reshape(x.shape)


def zca_fit(
    x: Tensor, eps: float = 1e-5, eps_on: Literal["singular_value", "eigenvalue"] = "singular_value"
) -> tuple[Tensor, Tensor]:
    """Fit ZCA whitening on examples ``x``; returns the float32 feature mean ``(D,)`` and symmetric ``W`` ``(D, D)``
    (Bell & Sejnowski 1997, Vision Research 37; Coates, Lee & Ng 2011; arXiv:1302.4389's CIFAR-10; the second step of
    arXiv:1611.01838's CIFAR-10 input, section 5).

    With ``C = U diag(lambda) U^T`` the ``ddof=1`` covariance of the flattened examples and ``s = sqrt(lambda)``:
    ``W = U diag(1 / (s + eps)) U^T`` (``eps_on="singular_value"``, ``process_cifar.py``) or
    ``W = U diag(1 / sqrt(lambda + eps)) U^T`` (``eps_on="eigenvalue"``, pylearn2's ``filter_bias``). Whitened
    training data ``(x - mean) W`` then has covariance ``U diag(lambda / (s + eps)^2) U^T`` (resp.
    ``lambda / (lambda + eps)``): the identity, shrunk where the variance is comparable to ``eps``.

    Directions with no variance in ``x`` (numerical rank: ``s <= max(N, D) * machine eps * max(s)``, e.g. the
    constant image after GCN, or all but N - 1 directions when N < D) are projected out instead of being
    multiplied by ``1 / eps`` (ours, ``docs/papers/entropy_sgd.md``); ``process_cifar.py`` keeps them, where the
    training data has no variance, so for N > D the two differ by round-off. Computed in float64: an
    eigendecomposition of ``C`` when N >= D, an SVD of the centred data when N < D (cheaper, same ``U`` and ``s``).

    Args:
        x: ``(N, ...)`` training examples, N >= 2.
        eps: the regulariser (``process_cifar.py``: 1e-5 on ``s``; pylearn2: 0.1 on ``lambda``).
        eps_on: whether ``eps`` is added to the singular values ``s`` or to the eigenvalues ``lambda``.
    """
    if len(x) < 2:
        raise ValueError(f"zca_fit needs at least 2 examples, got {len(x)}")
    if eps_on not in ("singular_value", "eigenvalue"):
        raise ValueError(f"eps_on must be 'singular_value' or 'eigenvalue', got {eps_on!r}")
    flat = x.reshape(len(x), -1)
    n, d = flat.shape
    mean = flat.double().mean(dim=0)
    if n >= d:
        cov = torch.zeros(d, d, dtype=torch.float64)
        for chunk in flat.split(4096):  # bounded float64 copies for 50,000 x 3,072 inputs
            centred = chunk.double() - mean
            cov.addmm_(centred.T, centred)
        eigenvalues, u = torch.linalg.eigh(cov / (n - 1))
        # round-off in an eigenvalue is eps * lambda_max, so the rank test is on lambda (on s = sqrt(lambda) it
        # would keep a zero-variance direction at s ~ sqrt(eps) s_max and multiply its round-off by 1 / eps)
        keep = eigenvalues > max(n, d) * torch.finfo(torch.float64).eps * eigenvalues.max()
        s, u = eigenvalues[keep].sqrt(), u[:, keep]
    else:
        _, s, vh = torch.linalg.svd((flat.double() - mean) / (n - 1) ** 0.5, full_matrices=False)
        keep = s > max(n, d) * torch.finfo(torch.float64).eps * s.max()
        s, u = s[keep], vh.T[:, keep]
    gain = 1.0 / (s + eps) if eps_on == "singular_value" else 1.0 / torch.sqrt(s.square() + eps)
    w = (u * gain) @ u.T
    return mean.float(), w.float()


def zca_apply(x: Tensor, mean: Tensor, w: Tensor, chunk_size: int = 8192) -> Tensor:
    """``(x - mean) W`` per flattened example (the whitening of :func:`zca_fit`; Bell & Sejnowski 1997,
    arXiv:1302.4389), returned in ``x``'s shape and float32.

    Args:
        x: ``(N, ...)`` examples with ``D`` values each.
        mean: ``(D,)`` from :func:`zca_fit`.
        w: ``(D, D)`` from :func:`zca_fit`.
        chunk_size: examples multiplied at once (bounds the temporary memory).
    """
    flat = x.reshape(len(x), -1)
    if flat.shape[1] != len(mean) or w.shape != (len(mean), len(mean)):
        raise ValueError(
            f"zca_apply: examples have {flat.shape[1]} values but mean is {tuple(mean.shape)} and W {tuple(w.shape)}"
        )
    mean, w = mean.float(), w.float()
    out = torch.empty(flat.shape, dtype=torch.float32)
    for start in range(0, len(flat), chunk_size):
        out[start : start + chunk_size] = (flat[start : start + chunk_size].float() - mean) @ w
    return out.reshape(x.shape)
