"""The fully connected Ladder Network's math as pure functions (Rasmus, Valpola, Honkala, Berglund, Raiko,
arXiv:1507.02672, section 2 and Algorithm 1), as the authors' code (CuriousAI/ladder, ``ladder.py``) computes it:
the noisy encoder with batch normalisation, the gaussian ("vanilla") combinator g(z~, u) of section 2.3 (eq 2,
"gauss" in the code), the per-layer denoising costs C_d^(l) of Algorithm 1, their weighted sum and the
learning-rate decay of the authors' ``run.py``. Used by EBGAN-LN (arXiv:1609.03126 section 4.2), where the
weighted denoising cost of an input is the energy. Our reading and choices: ``docs/papers/ebgan.md``, section
"EBGAN-LN". Nothing here knows about Lightning.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

BN_EPS = 1e-10  # the authors' epsilon under the square root of every batch normalisation
COMBINATOR_PARAMETERS = 10  # a_1 ... a_10 of the gaussian combinator (arXiv:1507.02672 eq 2)
COMBINATOR_INIT = (0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0)  # the authors' initial a_1 ... a_10


class EncoderPass(NamedTuple):
    """One pass of the encoder over a batch (arXiv:1507.02672 Algorithm 1).

    ``z[l]`` for ``l = 0 .. L``: layer 0 is the (noisy) input; above it, the batch-normalised pre-activation plus
    the layer's noise, before the bias (z~ of the corrupted pass, z of the clean one). ``mean[l]`` and ``var[l]``
    are the statistics that normalised layer ``l`` (None at layer 0; the biased batch variance when batch
    statistics were used). ``logits`` are the inputs of the top softmax, ``gamma_L * (z[L] + beta_L)``.
    """

    z: list[Tensor]
    mean: list[Tensor | None]
    var: list[Tensor | None]
    logits: Tensor


def add_noise(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """The Ladder Network's corruption ``x + std * n`` with ``n ~ N(0, I)`` (arXiv:1507.02672 Algorithm 1), drawn on
    the CPU from ``generator`` (so a generator's state means the same on every device) and moved to ``x``'s device;
    ``x`` itself when ``std == 0`` (no draw)."""
    if std == 0:
        return x
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    return x + std * noise.to(x.device)


def batch_statistics(z: Tensor) -> tuple[Tensor, Tensor]:
    """The batch mean and the biased batch variance of each unit of ``z`` ``(N, d)`` (arXiv:1507.02672 Algorithm 1,
    the authors' ``T.var`` in ``ladder.py``)."""
    return z.mean(dim=0), z.var(dim=0, unbiased=False)


def pooled_statistics(counts: Tensor, means: Tensor, variances: Tensor) -> tuple[Tensor, Tensor]:
    """The mean and biased variance of the union of ``K`` batches, from each batch's size ``counts`` ``(K,)``, mean
    ``(K, d)`` and biased variance ``(K, d)``: the statistics of :func:`batch_statistics` on the whole batch (for the
    running statistics under DDP, each process holding one share). Computed as ``sum_k w_k (v_k + (m_k - m)^2)``
    with ``w_k = n_k / n`` (the pairwise update of Chan, Golub & LeVeque 1979), which avoids the cancellation of
    ``E[z^2] - m^2``."""
    if counts.dim() != 1 or means.shape != variances.shape or means.shape[:1] != counts.shape:
        raise ValueError(
            f"counts (K,), means (K, d) and variances (K, d) disagree: {tuple(counts.shape)}, {tuple(means.shape)}, "
            f"{tuple(variances.shape)}"
        )
    weights = (counts.to(means.dtype) / counts.sum()).unsqueeze(1)
    mean = (weights * means).sum(dim=0)
    return mean, (weights * (variances + (means - mean) ** 2)).sum(dim=0)


def normalize(z: Tensor, mean: Tensor, var: Tensor, eps: float = BN_EPS) -> Tensor:
    """Batch normalisation without learned scale or shift, ``(z - mean) / sqrt(var + eps)``
    (arXiv:1507.02672 Algorithm 1, ``batchnorm``)."""
    return (z - mean) / (var + eps).sqrt()


def encoder_pass(
    x: Tensor,
    weights: list[Tensor],
    betas: list[Tensor],
    top_gamma: Tensor | None,
    input_noise_std: float = 0.0,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
    statistics: list[tuple[Tensor, Tensor]] | None = None,
) -> EncoderPass:
    """The encoder of arXiv:1507.02672 Algorithm 1 on ``x`` ``(N, d_0)``; clean when both noise levels are 0.

    ``h_0 = x + input_noise_std * n``; for ``l = 1 .. L``: ``z_l = batchnorm(h_{l-1} W_l) + noise_std * n`` (no
    bias before the normalisation), ``h_l = relu(z_l + beta_l)`` below the top and ``softmax(gamma_L * (z_L +
    beta_L))`` at the top. Only the top layer has a scale gamma (the authors' ``top_c``; ``None`` for none): relu
    needs none (section 2.4). ``weights[l - 1]`` is ``W_l`` of shape ``(d_{l-1}, d_l)``; ``betas[l - 1]`` is
    ``beta_l``. ``statistics[l - 1] = (mean, var)`` normalises layer ``l`` with given (e.g. running) statistics
    instead of the batch's.
    """
    if len(weights) != len(betas):
        raise ValueError(f"weights and betas need one entry per layer, got {len(weights)} and {len(betas)}")
    if statistics is not None and len(statistics) != len(weights):
        raise ValueError(f"statistics needs one (mean, var) per layer ({len(weights)}), got {len(statistics)}")
    h = add_noise(x, input_noise_std, generator)
    zs: list[Tensor] = [h]
    means: list[Tensor | None] = [None]
    variances: list[Tensor | None] = [None]
    top = len(weights)
    for layer, (weight, beta) in enumerate(zip(weights, betas, strict=True), start=1):
        pre = h @ weight
        mean, var = batch_statistics(pre) if statistics is None else statistics[layer - 1]
        z = add_noise(normalize(pre, mean, var), noise_std, generator)
        zs.append(z)
        means.append(mean)
        variances.append(var)
        if layer < top:
            h = F.relu(z + beta)
    logits = z + beta
    if top_gamma is not None:
        logits = top_gamma * logits
    return EncoderPass(zs, means, variances, logits)


def gaussian_combinator(z_tilde: Tensor, u: Tensor, a: Tensor) -> Tensor:
    """The vanilla combinator ``g(z~, u) = (z~ - mu(u)) * v(u) + mu(u)`` of arXiv:1507.02672 section 2.3 (eq 2,
    the authors' ``gauss`` decoder), per unit, with

    ``mu(u) = a_1 sigmoid(a_2 u + a_3) + a_4 u + a_5`` and ``v(u) = a_6 sigmoid(a_7 u + a_8) + a_9 u + a_10``.

    ``a`` has shape ``(10, d)``: row ``k`` holds ``a_{k+1}`` for each of the layer's ``d`` units.
    """
    if a.shape[0] != COMBINATOR_PARAMETERS or a.shape[1:] != z_tilde.shape[1:]:
        raise ValueError(f"a must have shape (10, {z_tilde.shape[1]}), got {tuple(a.shape)}")
    if u.shape != z_tilde.shape:
        raise ValueError(f"u has shape {tuple(u.shape)} but z_tilde has {tuple(z_tilde.shape)}")
    mu = a[0] * torch.sigmoid(a[1] * u + a[2]) + a[3] * u + a[4]
    v = a[5] * torch.sigmoid(a[6] * u + a[7]) + a[8] * u + a[9]
    return (z_tilde - mu) * v + mu


def decoder_pass(corrupted: EncoderPass, weights: list[Tensor], combinators: list[Tensor]) -> list[Tensor]:
    """The decoder of arXiv:1507.02672 Algorithm 1 from a corrupted :class:`EncoderPass`: the reconstructions
    ``z^_l`` for ``l = 0 .. L``.

    Top: ``u_L = batchnorm(softmax(logits~))`` (the corrupted output, as the authors' code); below it ``u_l =
    batchnorm(z^_{l+1} V_{l+1})`` (no bias; always the batch's statistics); ``z^_l = g(z~_l, u_l)``
    (:func:`gaussian_combinator`). ``weights[l]`` is ``V_{l+1}`` of shape ``(d_{l+1}, d_l)``, ``combinators[l]`` the
    ``(10, d_l)`` parameters of layer ``l``.
    """
    top = len(corrupted.z) - 1
    if len(weights) != top or len(combinators) != top + 1:
        raise ValueError(
            f"a {top}-layer encoder needs {top} decoder weights and {top + 1} combinators, "
            f"got {len(weights)} and {len(combinators)}"
        )
    u = torch.softmax(corrupted.logits, dim=1)
    reconstructions: list[Tensor] = [torch.empty(0)] * (top + 1)
    for layer in range(top, -1, -1):
        if layer < top:
            u = reconstructions[layer + 1] @ weights[layer]
        reconstructions[layer] = gaussian_combinator(
            corrupted.z[layer], normalize(u, *batch_statistics(u)), combinators[layer]
        )
    return reconstructions


def denoising_cost(z_hat: Tensor, z_clean: Tensor, mean: Tensor | None = None, var: Tensor | None = None) -> Tensor:
    """Per-sample denoising cost of one layer, ``C(x_n) = 1/d sum_j (z^_norm - z)_nj^2``, shape ``(N,)``
    (arXiv:1507.02672 Algorithm 1, ``C_d^(l)``; the authors' squared error divided by the layer's width).

    Above the input the reconstruction is first normalised with the clean pass's statistics ``mean`` and ``var``
    (``z^_norm = (z^ - mean) / sqrt(var + eps)``, the authors' ``zestbn="bugfix"``); at the input (``mean=None``)
    it is compared as it is.
    """
    if z_hat.shape != z_clean.shape:
        raise ValueError(f"z_hat has shape {tuple(z_hat.shape)} but z_clean has {tuple(z_clean.shape)}")
    if (mean is None) != (var is None):
        raise ValueError("give both the clean mean and var, or neither (the input layer)")
    if mean is not None:
        z_hat = normalize(z_hat, mean, var)
    return (z_hat - z_clean).pow(2).flatten(1).mean(dim=1)


def weighted_denoising_cost(costs: Tensor, weights: Tensor) -> Tensor:
    """``sum_l lambda_l C^(l)(x_n)`` for per-sample, per-layer costs ``(N, L + 1)`` and weights ``(L + 1,)``, shape
    ``(N,)``: the unsupervised term of arXiv:1507.02672 eq 3 per sample, and EBGAN-LN's energy (arXiv:1609.03126
    section 4.2). Bottom-layer-only: ``lambda = (lambda_0, 0, ..., 0)``."""
    if costs.dim() != 2 or weights.shape != costs.shape[1:]:
        raise ValueError(
            f"costs (N, {weights.shape[0]}) and weights ({weights.shape[0]},) disagree: {tuple(costs.shape)}"
        )
    return costs @ weights


def ladder_loss(logits_corrupted: Tensor, labels: Tensor, energy: Tensor) -> Tensor:
    """The Ladder Network's cost (arXiv:1507.02672 eq 3): the cross-entropy of the corrupted encoder's output on
    the labelled examples plus the batch mean of the weighted denoising cost of the unlabelled ones."""
    return F.cross_entropy(logits_corrupted, labels) + energy.mean()


def linear_lr_decay(epochs_done: int, decay_start: float, decay_end: float) -> float:
    """The learning-rate factor after ``epochs_done`` epochs: 1 until ``decay_start``, then linear to 0 at
    ``decay_end`` (arXiv:1507.02672 section 4: the authors' ``LRDecay`` in ``nn.py``; ``run.py`` trains 150 epochs
    with ``decay_start = 0.67 * 150``)."""
    if not 0 <= decay_start < decay_end:
        raise ValueError(f"need 0 <= decay_start < decay_end, got {decay_start} and {decay_end}")
    if epochs_done <= decay_start:
        return 1.0
    return max(0.0, (decay_end - epochs_done) / (decay_end - decay_start))
