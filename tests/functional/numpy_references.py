"""From-scratch numpy references for the halting-time algorithms (arXiv:1511.06444): conjugate gradient and the
unshifted QR algorithm's first deflation, one system or matrix at a time."""

import numpy as np


def numpy_cg(
    a: np.ndarray, b: np.ndarray, eps: list[float], max_steps: int, x0: np.ndarray | None = None
) -> tuple[list[int], np.ndarray]:
    """Textbook CG (Hestenes & Stiefel 1952) on one system from ``x0`` (default 0): the first iteration with the
    (recursive) residual norm ``||b - A x||`` below each eps (-1 if never), and the last iterate."""
    if x0 is None:
        x, r = np.zeros_like(b), b.copy()
    else:
        x = x0.copy()
        r = b - a @ x
    p, first = r.copy(), [-1] * len(eps)
    for step in range(max_steps + 1):
        for e, threshold in enumerate(eps):
            if first[e] < 0 and np.sqrt(r @ r) < threshold:
                first[e] = step
        if min(first) >= 0:
            break
        ap = a @ p
        alpha = (r @ r) / (p @ ap)
        x, r_new = x + alpha * p, r - alpha * ap
        p, r = r_new + (r_new @ r_new) / (r @ r) * p, r_new
    return first, x


def numpy_first_deflation(
    h: np.ndarray, eps: list[float], max_steps: int
) -> tuple[list[int], list[int], list[list[float]]]:
    """The unshifted QR algorithm on one matrix: X_{n+1} = R Q with numpy's QR, every k's block norm
    ``||X_n[:k, k:]||`` by slicing at every step. Returns the first step the smallest norm was <= each eps, its k then
    (-1, -1: not within max_steps), and the two smallest norms at every step."""
    n, x = len(h), h.copy()
    first, deflated, smallest = [-1] * len(eps), [-1] * len(eps), []
    for step in range(max_steps + 1):
        norms = [np.linalg.norm(x[:k, k:]) for k in range(1, n)]
        smallest.append(sorted(norms)[:2])
        for e, threshold in enumerate(eps):
            if first[e] < 0 and min(norms) <= threshold:
                first[e], deflated[e] = step, int(np.argmin(norms)) + 1
        if min(first) >= 0:
            break
        q, r = np.linalg.qr(x)
        x = r @ q
    return first, deflated, smallest
