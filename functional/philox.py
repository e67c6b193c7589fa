"""Counter-based standard normal draws: EntropySGD's Langevin noise on the CPU (arXiv:1611.01838 Algorithm 1, the
noise term sqrt(eta') eps N(0, I) of its line 6; docs/papers/entropy_sgd.md).

Value ``i`` of draw ``draw`` under key ``seed`` is a pure function of the three: Philox4x32-10 (Salmon, Moraes,
Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC'11) of the counter (i // 4 low, i // 4 high, draw
low, draw high) and the key (seed low, seed high) gives four 32-bit words w0..w3, and the Box-Muller transform of
(w0, w1) and (w2, w3) gives values 4k .. 4k + 3:

    r = sqrt(-2 log u),  u = (top 24 bits of w0 + 1/2) / 2^24          (so |value| <= 5.9, as torch's float draws)
    theta = 2 pi w1 / 2^32 (quadrant from the top 2 bits, angle from the next 24)
    values 4k, 4k + 1 = r cos theta, r sin theta

in float32 with fixed polynomials for log (2 atanh, degree 9) and sin/cos (Taylor, degrees 13/14), no fused
multiply-add, so any thread count and vector width give the same bits. ``philox_normal.cpp`` is the fast
kernel (vectorised, on every thread; ``benchmarks/entropy_sgd_overhead.py`` times it against ``torch.randn``); the
torch functions here are its twin, bit for bit, used where it cannot be built. Hand-written because torch's CPU
generator is a sequential Mersenne twister, whose draws cost a third of a step of the models EntropySGD trains.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import torch
from torch import Tensor

from iclr17.functional.compiled import load_kernel

SOURCE = Path(__file__).with_name("philox_normal.cpp")
IMPLEMENTATIONS = ("auto", "cpp", "torch")  # philox_normal's ``implementation``
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
WEYL = (0x9E3779B9, 0xBB67AE85)  # the key's increment per round
WORD = 0xFFFFFFFF
# float32 constants, exactly as the C++ kernel's hex literals
LOG_SERIES = [float.fromhex(h) for h in ("0x1.c71c72p-4", "0x1.24924ap-3", "0x1.99999ap-3", "0x1.555556p-2")]
SIN_SERIES = [float.fromhex(h) for h in ("0x1.612462p-33", "-0x1.ae6456p-26", "0x1.71de3ap-19", "-0x1.a01a02p-13",
                                         "0x1.111112p-7", "-0x1.555556p-3")]  # fmt: skip
COS_SERIES = [float.fromhex(h) for h in ("-0x1.93974ap-37", "0x1.1eed8ep-29", "-0x1.27e4fcp-22", "0x1.a01a02p-16",
                                         "-0x1.6c16c2p-10", "0x1.555556p-5", "-0x1p-1")]  # fmt: skip
SQRT2, LN2, HALF_PI = (float.fromhex(h) for h in ("0x1.6a09e6p+0", "0x1.62e430p-1", "0x1.921fb6p+0"))


def philox4x32_10(counter: Tensor, key: tuple[int, int]) -> Tensor:
    """Philox4x32-10 of each row of ``counter`` (int64, ``(..., 4)``, words below 2^32) under ``key`` (two
    32-bit words): the four output words, int64 (Salmon, Moraes, Dror & Shaw 2011; Random123's ``philox4x32``), for
    the Langevin noise of arXiv:1611.01838 Algorithm 1."""
    c0, c1, c2, c3 = counter.unbind(-1)
    k0, k1 = key
    for _ in range(10):
        p0, p1 = c0 * MULTIPLIERS[0], c2 * MULTIPLIERS[1]  # below 2^64: int64 wraps, the low 64 bits are exact
        c0, c1, c2, c3 = ((p1 >> 32) & WORD) ^ c1 ^ k0, p1 & WORD, ((p0 >> 32) & WORD) ^ c3 ^ k1, p0 & WORD
        k0, k1 = (k0 + WEYL[0]) & WORD, (k1 + WEYL[1]) & WORD
    return torch.stack([c0, c1, c2, c3], dim=-1)


def box_muller(w_radius: Tensor, w_angle: Tensor) -> tuple[Tensor, Tensor]:
    """``(r cos theta, r sin theta)`` (float32) of 32-bit words (int64 tensors), as the module docstring says (Box &
    Muller 1958), for the Langevin noise of arXiv:1611.01838 Algorithm 1."""
    u = ((w_radius >> 8).to(torch.int32).float() + 0.5) * 2.0**-24
    bits = u.view(torch.int32)
    m = ((bits & 0x007FFFFF) | 0x3F800000).view(torch.float32)
    exponent = (bits >> 23) - 127
    above = m > SQRT2
    m = torch.where(above, m * 0.5, m)
    exponent = exponent + above.to(torch.int32)
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = torch.full_like(s, LOG_SERIES[0])
    for coefficient in [*LOG_SERIES[1:], 1.0]:
        p = p * s2 + coefficient
    r = torch.sqrt(-2.0 * (exponent.float() * LN2 + (2.0 * s) * p).double()).float()  # rounded once, as the kernel's
    quadrant = w_angle >> 30
    phi = ((w_angle >> 6) & 0x00FFFFFF).to(torch.int32).float() * 2.0**-24 * HALF_PI
    x2 = phi * phi
    sp = torch.full_like(x2, SIN_SERIES[0])
    for coefficient in [*SIN_SERIES[1:], 1.0]:
        sp = sp * x2 + coefficient
    cosine = torch.full_like(x2, COS_SERIES[0])
    for coefficient in [*COS_SERIES[1:], 1.0]:
        cosine = cosine * x2 + coefficient
    sine = phi * sp
    swap = (quadrant & 1) == 1
    cosine, sine = torch.where(swap, sine, cosine), torch.where(swap, cosine, sine)
    cosine = torch.where((quadrant == 1) | (quadrant == 2), -cosine, cosine)
    sine = torch.where(quadrant >= 2, -sine, sine)
    return r * cosine, r * sine


def philox_normal_torch(numel: int, seed: int, draw: int) -> Tensor:
    """:func:`philox_normal` in torch operations (the C++ kernel's twin, bit for bit): the Langevin noise of
    arXiv:1611.01838 Algorithm 1."""
    blocks = torch.arange((numel + 3) // 4, dtype=torch.int64)
    counter = torch.stack(
        [blocks & WORD, blocks >> 32, torch.full_like(blocks, draw & WORD), torch.full_like(blocks, draw >> 32)], -1
    )
    w = philox4x32_10(counter, (seed & WORD, seed >> 32 & WORD))
    first, second = box_muller(w[:, 0], w[:, 1])
    third, fourth = box_muller(w[:, 2], w[:, 3])
    return torch.stack([first, second, third, fourth], dim=-1).reshape(-1)[:numel]


def _compiled(implementation: str) -> ModuleType | None:
    if implementation == "torch":
        return None
    flags = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-fopenmp")  # no fused multiply-add: the twin's bits
    return load_kernel(
        "iclr17_philox_normal", SOURCE, flags, implementation == "cpp", "the Philox draw", "torch's", ("-fopenmp",)
    )


def philox_normal(numel: int, seed: int, draw: int, implementation: str = "auto", out: Tensor | None = None) -> Tensor:
    """``numel`` standard normal values (float32, CPU): draw number ``draw`` (0 <= draw < 2^64) under the key
    ``seed`` (0 <= seed < 2^64), the Langevin noise of arXiv:1611.01838 Algorithm 1; see the module docstring for
    the algorithm (Salmon, Moraes, Dror & Shaw 2011; Box & Muller 1958).

    Args:
        numel: how many values.
        seed: the key.
        draw: the draw's counter: a generator's state is the number of draws it made.
        implementation: ``"cpp"`` (the kernel; an error if it cannot be built), ``"torch"`` (the twin, same
            values) or ``"auto"`` (the kernel where it builds, else the twin with one warning).
        out: a contiguous float32 CPU tensor of ``numel`` elements to fill and return (a buffer kept across
            draws: a fresh 7 MB tensor costs more page faults than the draw itself).
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, got {implementation!r}")
    for name, value in (("seed", seed), ("draw", draw)):
        if not 0 <= value < 2**64:
            raise ValueError(f"philox_normal: {name} must be in [0, 2^64), got {value}")
    if numel < 0:
        raise ValueError(f"philox_normal: numel must be >= 0, got {numel}")
    if out is None:
        out = torch.empty(numel, dtype=torch.float32)
    elif out.dtype != torch.float32 or out.device.type != "cpu" or not out.is_contiguous() or out.numel() != numel:
        raise ValueError(
            f"philox_normal: out must be a contiguous float32 CPU tensor of {numel} elements, got {out.dtype} "
            f"{tuple(out.shape)} on {out.device}"
        )
    kernel = _compiled(implementation)
    if kernel is None:
        return out.copy_(philox_normal_torch(numel, seed, draw).view_as(out))
    kernel.philox_normal_(out, _signed(seed), _signed(draw))
    return out


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 pybind passes to the kernel."""
    return value - 2**64 if value >= 2**63 else value
