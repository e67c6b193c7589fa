"""The dynamic memory's recurrence with a hand-written backward pass, run on the real sentences only (Henaff,
Weston, Szlam, Bordes, LeCun, "Tracking the World State with Recurrent Entity Networks", arXiv:1612.03969
section 2.2, eqs 2-5).

Autograd records about a dozen small nodes per sentence and replays them one by one, so at bAbI sizes (d = 100,
32 x 20 slots) a training step is bound by per-operation overhead, not arithmetic; and a padded batch spends
half its work on padding (bAbI stories of one batch differ in length by a factor of ten). Here:

- a story's padding sentences leave its memory unchanged, so each story's real sentences are moved to its first
  steps and the stories sorted longest first (``pack_steps``): at packed step k the stories still running are a
  prefix of the batch, and every operation of the step works on that prefix alone (contiguous views, no
  gathers in the loop);
- the forward loop runs without recording and writes what the backward needs into packed buffers; the backward
  loop does only the sequential part; what is not sequential (the gradients of U and of the gate's content
  term) is one batched operation after the loop, e.g. ``dU = sum_k dpre_k^T h_k`` as a single matmul.

The result is differentiable once (``once_differentiable``): second-order tools need
``DynamicMemory(fused=False)``, the plain autograd path, which the tests check this against. The fused backward and
the packing are ours; the gate bias and the padding mask follow the authors' code (``docs/papers/entnet.md``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from iclr17.functional.entnet_extension import compiled_loops

NORM_EPS = 1e-12  # as F.normalize: x / max(||x||, eps)


@dataclass(frozen=True)
class PackedSteps:
    """Where the real sentences of a time-major ``(T, B)`` batch go in the packed layout (ours, for the memory of
    arXiv:1612.03969 section 2.2, eqs 2-5, whose padded sentences leave the memory unchanged; docs/papers/entnet.md).

    Stories are sorted by their number of real sentences, longest first (``order``); packed step k holds the k-th
    real sentence of the first ``counts[k]`` stories of that order, at packed rows ``offsets[k]:offsets[k] +
    counts[k]``. ``flat_index[r]`` is the ``t * B + b`` of packed row r in the padded layout; ``last_rows`` the
    packed row of each story's last sentence (its final memory), for the stories with one. ``identity``: no padding
    at all, packed = padded.
    """

    order: Tensor
    counts: list[int]
    offsets: list[int]
    flat_index: Tensor
    last_rows: Tensor
    identity: bool


def pack_steps(step_mask: Tensor) -> PackedSteps:
    """The packed layout (:class:`PackedSteps`; ours, for arXiv:1612.03969 section 2.2, docs/papers/entnet.md) of
    ``step_mask`` ``(T, B)`` (True where the sentence is real): one host read of the story lengths, the rest as
    tensor operations on the mask's device."""
    steps, batch = step_mask.shape
    device = step_mask.device
    lengths = step_mask.sum(dim=0)
    order = torch.argsort(lengths, descending=True, stable=True)
    sorted_lengths = lengths[order].tolist()
    longest = sorted_lengths[0] if batch else 0
    counts = (lengths.unsqueeze(0) > torch.arange(longest, device=device).unsqueeze(1)).sum(dim=1).tolist()
    offsets = [0, *itertools.accumulate(counts)][: len(counts)]
    rows = sum(counts)
    identity = rows == steps * batch
    if identity:
        flat_index = torch.arange(rows, device=device)
        order = torch.arange(batch, device=device)
    else:
        rank = step_mask.cumsum(dim=0) - 1  # k of every real sentence (t, b) in its story
        position = torch.empty_like(order)
        position[order] = torch.arange(batch, device=device)  # where story b sits in the sorted order
        offset = torch.tensor(offsets or [0], dtype=torch.long, device=device)
        packed_row = offset[rank.clamp_min(0)] + position
        flat_index = torch.empty(rows, dtype=torch.long, device=device)
        flat_index[packed_row[step_mask]] = torch.arange(steps * batch, device=device).view(steps, batch)[step_mask]
    last_rows = torch.tensor(
        [offsets[n - 1] + i for i, n in enumerate(sorted_lengths) if n > 0], dtype=torch.long, device=device
    )
    return PackedSteps(order, counts, offsets, flat_index, last_rows, identity)


class PythonLoops:
    """The sequential loops of :class:`PackedMemoryRecurrence` (arXiv:1612.03969 section 2.2, eqs 2-5) in Python;
    ``entnet_loops.cpp`` is the same
    operations in C++ (bit-identical, faster), with the same signatures. The Python loops run where the C++ build
    is not available (:mod:`iclr17.functional.entnet_extension`)."""

    @staticmethod
    def forward_loop(
        sentences: Tensor, key_gate: Tensor, sentence_term: Tensor, slot_term: Tensor, u_weight: Tensor,
        slope: Tensor, initial: Tensor, counts: list[int], offsets: list[int], norm_eps: float,
    ) -> list[Tensor]:  # fmt: skip
        """Eqs 2-5 step by step; returns the buffers the backward needs: the memory each packed row's sentence
        meets, the memory after it, the PReLU's input and derivative, the gates and the norms of eq 5."""
        rows_total, (slots, dim) = len(sentences), initial.shape[1:]
        memories = initial.new_empty(rows_total, slots, dim)  # the memory each packed row's sentence meets
        outputs = torch.empty_like(memories)  # and the memory after it
        pre = torch.empty_like(outputs)  # U h + V w + W s_t + b_U, the PReLU's input
        prelu_derivative = torch.empty_like(outputs)  # exactly 1 where pre > 0, else the slope
        gates = torch.empty_like(key_gate)
        norms = torch.empty_like(key_gate).unsqueeze(-1)
        u_transposed, ones = u_weight.t(), torch.ones_like(slope)
        if counts:
            memories[: counts[0]] = initial[: counts[0]]
        for k, (offset, count) in enumerate(zip(offsets, counts, strict=True)):
            rows = slice(offset, offset + count)
            h = memories[rows]  # the stories still running: a prefix of the sorted batch
            gate = gates[rows]
            torch.baddbmm(key_gate[rows].unsqueeze(-1), h, sentences[rows].unsqueeze(-1), out=gate.unsqueeze(-1))
            gate.sigmoid_()
            pre_k = torch.addmm(
                slot_term[:count].view(-1, dim), h.reshape(-1, dim), u_transposed, out=pre[rows].view(-1, dim)
            )
            pre[rows].add_(sentence_term[rows].unsqueeze(1))
            positive = pre_k.clamp(min=0).sign_()  # 1.0 where pre > 0, else 0.0 (no slow boolean ops)
            torch.lerp(
                slope.expand_as(pre_k), ones.expand_as(pre_k), positive, out=prelu_derivative[rows].view(-1, dim)
            )
            z = torch.addcmul(h, gate.unsqueeze(-1), F.prelu(pre_k, slope).view_as(h))
            norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True, out=norms[rows]).clamp_min_(norm_eps)
            torch.div(z, norm, out=outputs[rows])
            if k + 1 < len(counts):  # the next step's stories: a prefix of this step's
                following = counts[k + 1]
                memories[offset + count : offset + count + following] = outputs[offset : offset + following]
        return [memories, outputs, pre, prelu_derivative, gates, norms]

    @staticmethod
    def backward_loop(
        sentences: Tensor, u_weight: Tensor, slope: Tensor, outputs: Tensor, pre: Tensor, prelu_derivative: Tensor,
        gates: Tensor, norms: Tensor, gate_slope: Tensor, grad_gates: Tensor | None, norm_clamped: bool,
        counts: list[int], offsets: list[int], norm_eps: float, grad_pre: Tensor, grad_sentence_term: Tensor,
        grad_slot_term: Tensor, grad_gate_input: Tensor, grad_slope: Tensor, dh: Tensor,
    ) -> None:  # fmt: skip
        """The backward's sequential part, last step first: writes ``grad_pre``, ``grad_sentence_term`` and
        ``grad_gate_input``, accumulates ``grad_slot_term``, ``grad_slope`` and ``dh`` in place."""
        slots, dim = pre.shape[1:]
        for offset, count in reversed(list(zip(offsets, counts, strict=True))):
            rows = slice(offset, offset + count)
            h_new, dh_k = outputs[rows], dh[:count]
            radial = (h_new * dh_k).sum(dim=-1, keepdim=True)
            if norm_clamped:  # where the norm was clamped the step divided by a constant: no radial term
                radial.mul_((norms[rows] > norm_eps).to(radial.dtype))
            dz = torch.addcmul(dh_k, h_new, radial, value=-1).div_(norms[rows])
            pre_k = pre[rows].view(-1, dim)
            dgate = (dz * F.prelu(pre_k, slope).view_as(dz)).sum(dim=-1)
            if grad_gates is not None:
                dgate += grad_gates[rows]
            torch.mul(dgate, gate_slope[rows], out=grad_gate_input[rows])
            grad_candidate = (dz * gates[rows].unsqueeze(-1)).view(-1, dim)
            dpre = torch.mul(grad_candidate, prelu_derivative[rows].view(-1, dim), out=grad_pre[rows].view(-1, dim))
            grad_slot_term[:count].add_(grad_pre[rows])
            torch.sum(grad_pre[rows], dim=1, out=grad_sentence_term[rows])
            grad_slope[: count * slots].addcmul_(grad_candidate, pre_k.clamp(max=0))
            torch.addmm(dz.view(-1, dim), dpre, u_weight, out=dh_k.view(-1, dim))
            dh_k.addcmul_(grad_gate_input[rows].unsqueeze(-1), sentences[rows].unsqueeze(1))


class PackedMemoryRecurrence(torch.autograd.Function):
    """Run arXiv:1612.03969 section 2.2, eqs 2-5 over packed steps (:class:`PackedSteps`): gate ``g_j = sigmoid(s_t
    . h_j + s_t . w_j + b_j)`` (eq 2), candidate ``phi(U h_j + V w_j + W s_t)`` (eq 3), ``h_j <- h_j + g_j *
    candidate`` (eq 4), normalise (eq 5). Packed inputs, one row per real sentence:

    - ``sentences`` ``(N, d)``: s_t, for the content term ``s_t . h_j`` of the gate;
    - ``key_gate`` ``(N, m)``: ``s_t . w_j + b_j``;
    - ``sentence_term`` ``(N, d)``: ``W s_t``;
    - ``slot_term`` ``(B, m, d)``: ``V w_j + b_U``, sorted like the stories;
    - ``u_weight`` ``(d, d)``, ``slope`` ``(d,)`` (the PReLU), ``initial`` ``(B, m, d)`` sorted like the stories.

    Returns the final memory ``(B, m, d)`` (sorted order; a story without a real sentence keeps its initial memory)
    and the packed gates ``(N, m)``.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, *inputs: Tensor | PackedSteps) -> tuple[Tensor, Tensor]:
        """``inputs``: ``sentences, key_gate, sentence_term, slot_term, u_weight, slope, initial, plan`` and the C++
        loops (:mod:`iclr17.functional.entnet_extension`; None: :class:`PythonLoops`)."""
        sentences, key_gate, sentence_term, slot_term, u_weight, slope, initial, plan, extension = inputs
        ctx.loops = loops = extension if extension is not None else PythonLoops
        memories, outputs, pre, prelu_derivative, gates, norms = loops.forward_loop(
            sentences, key_gate, sentence_term, slot_term, u_weight, slope, initial, plan.counts, plan.offsets, NORM_EPS
        )
        running = len(plan.last_rows)
        final = torch.cat([outputs.index_select(0, plan.last_rows), initial[running:]])
        ctx.save_for_backward(
            sentences, u_weight, slope, initial, memories, outputs, pre, prelu_derivative, gates, norms
        )
        ctx.plan = plan
        ctx.norm_clamped = bool((norms <= NORM_EPS).any())
        ctx.set_materialize_grads(False)
        return final, gates

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_final: Tensor | None, grad_gates: Tensor | None) -> tuple[Tensor | None, ...]:
        with torch.autocast(ctx.saved_tensors[0].device.type, enabled=False):  # a backward called under autocast
            return PackedMemoryRecurrence._backward(ctx, grad_final, grad_gates)

    @staticmethod
    def _backward(ctx: FunctionCtx, grad_final: Tensor | None, grad_gates: Tensor | None) -> tuple[Tensor | None, ...]:
        sentences, u_weight, slope, initial, memories, outputs, pre, prelu_derivative, gates, norms = ctx.saved_tensors
        plan: PackedSteps = ctx.plan
        dim = pre.shape[-1]
        gate_slope = gates * (1 - gates)  # d gate / d (its pre-sigmoid input)
        grad_pre = torch.empty_like(pre)  # d loss / d (U h + V w + W s_t + b_U)
        grad_sentence_term = torch.empty_like(sentences)
        grad_slot_term = torch.zeros_like(initial)
        grad_gate_input = torch.empty_like(gates)  # d loss / d (s_t . h_j + s_t . w_j + b_j)
        slots = pre.shape[1]
        grad_slope = pre.new_zeros(initial.shape[0] * slots, dim)  # per (story, slot), summed after the loop
        dh = torch.zeros_like(initial)  # d loss / d (the memory of each story before the step at hand)
        if grad_final is not None:
            dh.copy_(grad_final)
        ctx.loops.backward_loop(
            sentences, u_weight, slope, outputs, pre, prelu_derivative, gates, norms, gate_slope, grad_gates,
            ctx.norm_clamped, plan.counts, plan.offsets, NORM_EPS, grad_pre, grad_sentence_term, grad_slot_term,
            grad_gate_input, grad_slope, dh,
        )  # fmt: skip
        grad_u = grad_pre.view(-1, dim).t() @ memories.view(-1, dim)
        grad_sentences = torch.bmm(grad_gate_input.unsqueeze(1), memories).squeeze(1)
        grads = grad_sentences, grad_gate_input, grad_sentence_term, grad_slot_term, grad_u, grad_slope.sum(0), dh
        return *grads, None, None


def memory_recurrence(
    sentences: Tensor,
    key_gate: Tensor,
    sentence_term: Tensor,
    slot_term: Tensor,
    u_weight: Tensor,
    slope: Tensor,
    initial: Tensor,
    step_mask: Tensor,
    loops: str = "auto",
) -> tuple[Tensor, Tensor]:
    """arXiv:1612.03969 section 2.2, eqs 2-5 over a padded story batch, computed on its real sentences only, with
    the hand-written backward (ours, ``docs/papers/entnet.md``). Time-major inputs (T first):

    - ``sentences`` ``(T, B, d)``: s_t; ``key_gate`` ``(T, B, m)``: ``s_t . w_j + b_j``;
    - ``sentence_term`` ``(T, B, d)``: ``W s_t``; ``slot_term`` ``(B, m, d)``: ``V w_j + b_U`` (their sum with
      ``U h_j`` is the PReLU's input of eq 3, formed one step at a time, never as a ``(T, B, m, d)`` tensor);
    - ``u_weight`` ``(d, d)``, ``slope`` ``(d,)`` (the PReLU), ``initial`` ``(B, m, d)``;
    - ``step_mask`` ``(T, B)`` bool: False where the sentence is padding (the memory is then unchanged), anywhere
      in a story.

    ``loops``: ``"cpp"`` runs the loops over sentences in C++ (``entnet_loops.cpp``, the same operations, so the
    same numbers bit for bit), ``"python"`` in Python, ``"auto"`` in C++ where the extension builds
    (:mod:`iclr17.functional.entnet_extension`).

    Returns the final memory ``(B, m, d)`` and the gates ``(T, B, m)`` (zero on padding). Runs in the memory's
    dtype with autocast off (under mixed precision the memory-independent terms arrive in half precision, and the
    buffers the loop writes into must share one dtype).
    """
    steps, batch, slots = key_gate.shape
    dtype = initial.dtype
    extension = compiled_loops(loops)
    plan = pack_steps(step_mask)
    with torch.autocast(initial.device.type, enabled=False):
        per_step = (sentences, key_gate, sentence_term)
        per_step = tuple(t.to(dtype).reshape(steps * batch, *t.shape[2:]) for t in per_step)
        per_story = (slot_term.to(dtype).expand_as(initial), initial)
        if not plan.identity:
            per_step = tuple(t.index_select(0, plan.flat_index) for t in per_step)
            per_story = tuple(t.index_select(0, plan.order) for t in per_story)
        weights = (u_weight.to(dtype).contiguous(), slope.to(dtype).contiguous())
        slot_term, start = (t.contiguous() for t in per_story)
        final, gates = PackedMemoryRecurrence.apply(
            *(t.contiguous() for t in per_step), slot_term, *weights, start, plan, extension
        )
        if plan.identity:
            return final, gates.view(steps, batch, slots)
        final = final.index_select(0, torch.argsort(plan.order))
        padded_gates = gates.new_zeros(steps * batch, slots).index_copy(0, plan.flat_index, gates)
        return final, padded_gates.view(steps, batch, slots)
