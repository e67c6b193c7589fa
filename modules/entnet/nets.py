"""The three parts of the Recurrent Entity Network as plain ``nn.Module``s (arXiv:1612.03969 section 2)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from iclr17.functional.entnet import memory_recurrence


class InputEncoder(nn.Module):
    """Multiplicative position mask, paper eq. 1: ``s = sum_i f_i * e_i`` over the words of a sentence.

    Args:
        length: the longest sentence (in words) the mask covers.
        dim: embedding size d.
        init: ``ones`` (bag of words at the start, as every port does) or ``normal`` (N(0, 0.1), the story
            mask of the authors' code).
    """

    def __init__(self, length: int, dim: int, init: Literal["ones", "normal"] = "ones") -> None:
        super().__init__()
        mask = torch.ones(length, dim) if init == "ones" else torch.randn(length, dim) * 0.1
        self.mask = nn.Parameter(mask)

    def forward(self, embedded: Tensor) -> Tensor:
        """``(..., length, d)`` word embeddings to ``(..., d)`` sentence encodings."""
        return (embedded * self.mask).sum(dim=-2)


class FeaturePReLU(nn.Module):
    """PReLU with one slope per feature of the last dimension (``nn.PReLU`` uses dimension 1), slopes
    initialised to 1 so that it starts as the identity (arXiv:1612.03969 section 2; ``docs/papers/entnet.md``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.prelu(x.reshape(-1, x.shape[-1]), self.slope).view_as(x)


def normalize_slots(h: Tensor) -> Tensor:
    """Paper eq. 5: divide each slot by its L2 norm; an all-zero slot stays zero."""
    return F.normalize(h, dim=-1, eps=1e-12)


def key_gate_terms(sentences: Tensor, keys: Tensor, gate_bias: Tensor | None) -> Tensor:
    """``s_t . w_j + b_j`` for every step and slot, ``(T, B, m)`` from time-major ``(T, B, d)`` sentences and
    ``(B, m, d)`` keys: the part of eq. 2 that the memory does not change, computed in one batched matmul."""
    terms = torch.einsum("tbd,bmd->tbm", sentences, keys)
    return terms if gate_bias is None else terms + gate_bias


class DynamicMemory(nn.Module):
    """Gated slot memory, paper eqs. 2-5, run over a whole (padded) story.

    For each sentence s_t and all slots j at once::

        g_j = sigmoid(s_t . h_j + s_t . w_j + b_j)         (eq. 2; b_j per slot, from the authors' code)
        h~_j = phi(U h_j + V w_j + W s_t)                  (eq. 3; U has a bias, V and W do not)
        h_j <- normalize(h_j + g_j * h~_j)                 (eqs. 4-5)

    ``V w_j``, ``W s_t`` and ``s_t . w_j`` do not depend on the memory, so they are computed for every step
    in batched matmuls before the loop; only ``U h_j`` and ``s_t . h_j`` are sequential. Steps whose sentence
    is padding leave the memory exactly unchanged: the fused path does no work on them (each story's real
    sentences are packed, ``functional.entnet.pack_steps``), the recorded path skips steps that are padding for
    the whole batch.

    Args:
        dim: embedding size d.
        n_slots: number of memory slots m.
        activation: phi, shared with the output module (one PReLU in the paper's model).
        gate_bias: learn the per-slot gate bias b_j.
        fused: run the recurrence on the real sentences only, with its hand-written backward
            (``functional.memory_recurrence``; differentiable once; speed in ``RESULTS.md``, EntNet throughput)
            when phi is a :class:`FeaturePReLU`; False records every step with autograd, which second-order
            tools (e.g. ``HessianSpectrum``) need.
    """

    def __init__(
        self, dim: int, n_slots: int, activation: nn.Module, gate_bias: bool = True, fused: bool = True
    ) -> None:
        super().__init__()
        self.U = nn.Linear(dim, dim, bias=True)
        self.V = nn.Linear(dim, dim, bias=False)
        self.W = nn.Linear(dim, dim, bias=False)
        self.gate_bias = nn.Parameter(torch.zeros(n_slots)) if gate_bias else None
        self.activation = activation
        self.fused = fused and isinstance(activation, FeaturePReLU)

    def forward(
        self,
        sentences: Tensor,
        step_mask: Tensor,
        keys: Tensor,
        initial: Tensor,
        update_sentences: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run the memory over a story.

        Args:
            sentences: ``(B, T, d)`` encoded sentences (used by the gate, and by the update unless
                ``update_sentences`` is given: the CBT model encodes the two separately).
            step_mask: ``(B, T)`` bool, True where the sentence is real (not padding).
            keys: ``(B, m, d)`` or ``(m, d)`` slot keys w_j.
            initial: ``(B, m, d)`` initial slot values h_j(0).
            update_sentences: ``(B, T, d)`` sentences for the ``W s_t`` term, default ``sentences``.

        Returns:
            The final memory ``(B, m, d)`` and the gate activations ``(B, T, m)`` (zero on padded steps).
        """
        keys = keys.expand_as(initial)
        # Everything that does not depend on the memory, for all steps at once and time-major:
        # W s_t, V w_j + b_U, and s_t . w_j + b_j.
        sentences = sentences.transpose(0, 1)
        sentence_term = self.W(sentences if update_sentences is None else update_sentences.transpose(0, 1))
        slot_term = self.V(keys) + self.U.bias  # (B, m, d)
        key_gate = key_gate_terms(sentences, keys, self.gate_bias)  # (T, B, m)
        step_mask = step_mask.t()
        terms = (sentences, key_gate, sentence_term, slot_term)
        if self.fused:
            memory, gates = memory_recurrence(*terms, self.U.weight, self.activation.slope, initial, step_mask)
        else:
            memory, gates = self._recorded_recurrence(*terms, initial, step_mask)
        return memory, gates.transpose(0, 1)

    def _recorded_recurrence(
        self,
        sentences: Tensor,
        key_gate: Tensor,
        sentence_term: Tensor,
        slot_term: Tensor,
        initial: Tensor,
        step_mask: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """Eqs. 2-5 step by step under autograd; time-major arguments as in ``memory_recurrence``."""
        dim = initial.shape[-1]
        any_real, all_real = step_mask.any(dim=1).tolist(), step_mask.all(dim=1).tolist()
        u_transposed = self.U.weight.t()
        h, gates = initial, []
        for t in range(len(sentences)):
            if not any_real[t]:  # padding for every story: the memory does not change
                gates.append(torch.zeros_like(key_gate[t]))
                continue
            gate = torch.sigmoid(torch.bmm(h, sentences[t, :, :, None]).squeeze(-1) + key_gate[t])
            if not all_real[t]:
                gate = gate * step_mask[t, :, None]
            constant = slot_term + sentence_term[t].unsqueeze(1)  # V w_j + b_U + W s_t
            pre = torch.addmm(constant.reshape(-1, dim), h.reshape(-1, dim), u_transposed)
            updated = normalize_slots(torch.addcmul(h, gate.unsqueeze(-1), self.activation(pre.view_as(h))))
            h = updated if all_real[t] else torch.where(step_mask[t, :, None, None], updated, h)
            gates.append(gate)
        return h, torch.stack(gates)


class SimpleMemory(nn.Module):
    """The "simple" EntNet of the CBT experiments (paper 2.5 and 5.3): U = V = 0, W = identity, phi =
    identity and no normalisation, so each slot adds up the sentences its gate lets in::

        g_j = sigmoid(s_t . h_j + s_t . w_j + b_j),    h_j <- h_j + g_j * s_t

    Same interface as :class:`DynamicMemory`; padded steps leave the memory unchanged.

    Args:
        n_slots: number of memory slots m.
        gate_bias: learn the per-slot gate bias b_j.
    """

    def __init__(self, n_slots: int, gate_bias: bool = True) -> None:
        super().__init__()
        self.gate_bias = nn.Parameter(torch.zeros(n_slots)) if gate_bias else None

    def forward(
        self,
        sentences: Tensor,
        step_mask: Tensor,
        keys: Tensor,
        initial: Tensor,
        update_sentences: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        keys = keys.expand_as(initial)
        added = sentences if update_sentences is None else update_sentences
        key_gate = key_gate_terms(sentences.transpose(0, 1), keys, self.gate_bias)  # (T, B, m)
        h, gates = initial, []
        for t in range(sentences.shape[1]):
            gate = torch.sigmoid(torch.bmm(h, sentences[:, t, :, None]).squeeze(-1) + key_gate[t])
            gate = gate * step_mask[:, t, None]  # zero on padding: h + 0 * s = h exactly
            h = torch.addcmul(h, gate.unsqueeze(-1), added[:, t, None, :])
            gates.append(gate)
        return h, torch.stack(gates, dim=1)


class OutputModule(nn.Module):
    """Paper eq. 6: ``p = softmax_j(q . h_j)``, ``u = sum_j p_j h_j``, ``y = R phi(q + H u)``.

    With ``n_hops > 1`` the query is refined MemN2N-style, ``q <- q + H u``, before the last hop (our
    reading of the paper's multi-hop option; default 1 hop).

    Args:
        dim: embedding size d.
        n_outputs: rows of R (the full embedding table; the module returns all of them).
        activation: phi, shared with the memory.
        n_hops: attention hops over the memory.
    """

    def __init__(self, dim: int, n_outputs: int, activation: nn.Module, n_hops: int = 1) -> None:
        super().__init__()
        if n_hops < 1:
            raise ValueError(f"n_hops must be at least 1, got {n_hops}")
        self.H = nn.Linear(dim, dim, bias=False)
        self.R = nn.Linear(dim, n_outputs, bias=False)
        self.activation = activation
        self.n_hops = n_hops

    def attend(self, query: Tensor, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Attention ``p`` ``(B, m)`` over slots and the read vector ``u`` ``(B, d)``."""
        p = torch.softmax(torch.einsum("bd,bmd->bm", query, memory), dim=-1)
        return p, torch.einsum("bm,bmd->bd", p, memory)

    def forward(self, query: Tensor, memory: Tensor) -> Tensor:
        for _ in range(self.n_hops - 1):
            query = query + self.H(self.attend(query, memory)[1])
        _, u = self.attend(query, memory)
        return self.R(self.activation(query + self.H(u)))


@contextmanager
def on_cpu_in_float32() -> Iterator[None]:
    """Create tensors on the CPU in float32 inside this block, whatever device and default dtype Lightning's
    ``configure_model`` context sets: layers built here draw their initial weights from the CPU generator in
    float32, the same on every accelerator and precision (the strategy then moves and casts them)."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.device("cpu"):
            yield
    finally:
        torch.set_default_dtype(dtype)
