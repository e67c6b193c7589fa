"""The unshifted QR eigenvalue algorithm on K random symmetric matrices at once until its first deflation: the
Gumbel-like QR class of the halting-time paper (Sagun, Trogdon, LeCun, arXiv:1511.06444, abstract and
introduction; its QR experiment: N = 150, eps = 1e-10), set up as in Pfrang, Deift, Menon, "How long does it take
to compute the eigenvalues of a random symmetric matrix?" (MSRI Publications 65, 2014).

The iterates are isospectral: ``X_0 = H``, ``X_n = Q_n R_n``, ``X_{n+1} = R_n Q_n``. ``X_n(k)`` holds the entries
of ``X_n`` in the first k rows and the last ``N - k`` columns; the k-deflation time is
``T(k) = min{n : ||X_n(k)||_F <= eps}`` and the halting time is the first deflation, ``T = min_k T(k)`` over
``k = 1 .. N - 1``. ``H`` is a Wigner matrix (entries of variance 1/N; the ensembles are ours,
``docs/papers/halting_time.md``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

WignerEnsemble = Literal["gaussian", "bernoulli"]


def wigner_matrices(
    n_matrices: int, n: int, ensemble: WignerEnsemble, generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> Tensor:  # fmt: skip
    """``(K, N, N)`` symmetric Wigner matrices, the random matrices of the QR experiment of arXiv:1511.06444
    (abstract: the Gumbel-like class; Pfrang, Deift, Menon 2014: the Wigner class, entries of variance 1/N).
    Off-diagonal entries i.i.d. with mean 0 and variance 1/N: ``gaussian`` is the GOE, ``(A + A^T) / sqrt(2N)``
    with A standard normal (diagonal variance 2/N); ``bernoulli`` draws every entry on and above the diagonal as
    +-1/sqrt(N) with probability 1/2 each and mirrors it (ours, ``docs/papers/halting_time.md``).

    >>> h = wigner_matrices(2, 4, "bernoulli", torch.Generator().manual_seed(0))
    >>> h.shape, bool((h == h.transpose(1, 2)).all()), sorted({round(v, 4) for v in h.abs().flatten().tolist()})
    (torch.Size([2, 4, 4]), True, [0.5])
    """
    if n < 2:
        raise ValueError(f"wigner_matrices: n must be at least 2 (one deflation k = 1 .. n - 1), got n={n}")
    shape = (n_matrices, n, n)
    if ensemble == "gaussian":
        a = torch.randn(shape, generator=generator, dtype=dtype)
        return (a + a.transpose(1, 2)) / math.sqrt(2 * n)
    if ensemble == "bernoulli":
        signs = torch.randint(0, 2, shape, generator=generator).to(dtype).mul_(2).sub_(1).triu_()
        return (signs + signs.transpose(1, 2).tril(-1)) / math.sqrt(n)
    raise ValueError(f"wigner_matrices: ensemble must be 'gaussian' or 'bernoulli', got ensemble={ensemble!r}")


def deflation_norms(x: Tensor) -> Tensor:
    """``(K, N - 1)`` Frobenius norms ``||X(k)||_F`` of the off-diagonal blocks of Pfrang, Deift, Menon (2014)
    and arXiv:1511.06444 (abstract; its QR experiment): column ``k - 1`` holds the norm of the first k rows and
    last ``N - k`` columns of ``x`` ``(K, N, N)``, for ``k = 1 .. N - 1``. Sums of squares over row prefixes of
    column suffixes, O(N^2) per matrix; every sum covers only its block's entries, so nothing cancels.

    >>> deflation_norms(torch.tensor([[[1.0, 12.0, 5.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]))
    tensor([[13.,  5.]])
    """
    sums = (x * x).flip(-1).cumsum(-1).flip(-1).cumsum(-2)  # sums[i, j]: rows 0..i, columns j..N-1
    return torch.diagonal(sums, offset=1, dim1=-2, dim2=-1).sqrt()


def qr_step(x: Tensor) -> Tensor:
    """One step of the unshifted QR algorithm (Francis 1961, Kublanovskaya 1961) on ``x`` ``(K, N, N)``:
    ``X = Q R``, return ``R Q = Q^T X Q``, an iterate with the same spectrum (Pfrang, Deift, Menon 2014; the QR
    experiment of arXiv:1511.06444, abstract). The signs LAPACK gives Q's columns do not change the block norms."""
    q, r = torch.linalg.qr(x)
    return r @ q


def qr_until_deflated(h: Tensor, eps: Tensor, max_steps: int = 10_000) -> tuple[Tensor, int, Tensor]:
    """Unshifted QR iterations (Francis 1961, Kublanovskaya 1961) on K symmetric matrices ``h`` ``(K, N, N)`` until
    each first deflates at every threshold of ``eps`` ``(E,)``: the halting time of the QR experiment of
    arXiv:1511.06444 (Gumbel-like class, abstract), ``T = min_k min{n : ||X_n(k)||_F <= eps}`` as defined by
    Pfrang, Deift, Menon (2014), with the definition's ``<=`` (``update_first_hits`` holds on ``<``).

    Returns ``(first, last_step, deflated)``: ``first[j, e]`` is the number of QR steps n after which
    ``min_k ||X_n(k)||_F <= eps[e]`` first held for matrix j (-1: not within ``max_steps``, right-censored at
    ``last_step``); ``deflated[j, e]`` is that step's k (``1 .. N - 1``) of the smallest block norm, -1 if
    censored. A matrix leaves the batch once it has met every eps; each matrix's iterates are its own (batched
    QR and matmul are per matrix), so the results do not depend on which matrices share the batch.
    """
    if h.dim() != 3 or h.shape[1] != h.shape[2] or h.shape[1] < 2:
        raise ValueError(f"qr_until_deflated: h must be (K, N, N) with N >= 2, got h={tuple(h.shape)} (its shape)")
    eps = torch.as_tensor(eps, dtype=h.dtype, device=h.device)
    if eps.dim() != 1 or not bool((eps > 0).all()):
        raise ValueError(f"qr_until_deflated: eps must be a 1-D tensor of positive thresholds, got eps={eps}")
    if max_steps < 0:
        raise ValueError(f"qr_until_deflated: max_steps must be >= 0, got max_steps={max_steps}")
    first = torch.full((h.shape[0], len(eps)), -1, dtype=torch.long, device=h.device)
    deflated = first.clone()
    active, x, step = torch.arange(h.shape[0], device=h.device), h, 0
    for step in range(max_steps + 1):
        smallest, k = deflation_norms(x).min(dim=1)
        before = first[active]
        new = (before < 0) & (smallest.unsqueeze(1) <= eps)
        first[active] = torch.where(new, step, before)
        deflated[active] = torch.where(new, (k + 1).unsqueeze(1), deflated[active])
        running = (first[active] < 0).any(dim=1)
        if step == max_steps or not bool(running.any()):
            break
        active, x = active[running], qr_step(x[running])
    return first, step, deflated
