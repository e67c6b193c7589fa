"""The benchmark's peer: EntNet's fused memory as it was before issue 15 (``functional/entnet.py`` at commit 48fa93d),
kept unchanged so that ``entnet_throughput.py`` measures the packed memory side by side with it. Not part of the
package: it computes every padded step of every story (padded rows copied back), where the packed memory skips them.

Original module docstring:
The dynamic memory's recurrence with a hand-written backward pass (Henaff, Weston, Szlam, Bordes, LeCun,
"Tracking the World State with Recurrent Entity Networks", arXiv:1612.03969 section 2.2, eqs 2-5).

Autograd records about a dozen small nodes per sentence and replays them one by one, so at bAbI sizes
(d = 100, 32 x 20 slots) a training step is bound by per-operation overhead, not arithmetic. Here the
forward loop runs without recording, keeps what the backward needs in time-major buffers, and the backward
loop does only the sequential part (about ten operations a step); everything that is not sequential (the
gradients of U, of the PReLU slopes, of the memory-independent terms) is one batched operation after the
loop, e.g. ``dU = sum_t dpre_t^T h_{t-1}`` as a single matmul.

The result is differentiable once (``once_differentiable``): second-order tools need
``DynamicMemory(fused=False)``, the plain autograd path, which the tests check this against. The fused backward is
ours; the gate bias and the padding mask follow the authors' code (``docs/papers/entnet.md``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

NORM_EPS = 1e-12  # as F.normalize: x / max(||x||, eps)


def _normalise_into(z: Tensor, out: Tensor) -> Tensor:
    """``out = z / max(||z||, eps)`` over the last dimension (eq 5); returns the clamped norms ``(..., 1)``."""
    norm = torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min_(NORM_EPS)
    torch.div(z, norm, out=out)
    return norm


def _step_plan(step_mask: Tensor) -> tuple[list[bool], list[Tensor | None]]:
    """Per step, whether any story has a real sentence (if none, the step is skipped), and the indices of
    the stories whose sentence is padding (None when there are none): their memory is copied over exactly
    (an arithmetic blend would turn inf into nan and -0.0 into 0.0). One host read of the mask."""
    any_real, padded_rows = [], []
    for real in step_mask.tolist():
        any_real.append(any(real))
        padded = [b for b, r in enumerate(real) if not r]
        padded_rows.append(torch.tensor(padded, device=step_mask.device) if padded else None)
    return any_real, padded_rows


class MemoryRecurrence(torch.autograd.Function):
    """Run arXiv:1612.03969 section 2.2, eqs 2-5 over all steps: gate ``g_j = sigmoid(s_t . h_j + s_t . w_j + b_j)``
    (eq 2), candidate ``phi(U h_j + V w_j + W s_t)`` (eq 3), ``h_j <- h_j + g_j * candidate`` (eq 4), normalise
    (eq 5). The gate bias ``b_j`` and the mask come from the authors' code (``docs/papers/entnet.md``); the
    hand-written backward is ours. Time-major inputs (T first):

    - ``sentences`` ``(T, B, d)``: s_t, for the content term ``s_t . h_j`` of the gate;
    - ``key_gate`` ``(T, B, m)``: ``s_t . w_j + b_j``;
    - ``constant`` ``(T, B, m, d)``: ``V w_j + W s_t + b_U``;
    - ``u_weight`` ``(d, d)``, ``slope`` ``(d,)`` (the PReLU), ``initial`` ``(B, m, d)``;
    - ``step_mask`` ``(T, B)`` bool: False where the sentence is padding (the memory is then unchanged).

    Returns the final memory ``(B, m, d)`` and the gates ``(T, B, m)`` (zero on padding).
    """

    @staticmethod
    def forward(ctx: FunctionCtx, *inputs: Tensor) -> tuple[Tensor, Tensor]:
        """``inputs``: ``sentences, key_gate, constant, u_weight, slope, initial, step_mask``, typed as in
        :func:`memory_recurrence`, the public entry."""
        sentences, key_gate, constant, u_weight, slope, initial, step_mask = inputs
        steps, batch, slots, dim = constant.shape
        mask = step_mask.to(initial.dtype)
        any_real, padded_rows = _step_plan(step_mask)
        memories = initial.new_empty(steps + 1, batch, slots, dim)  # h_0 .. h_T
        memories[0] = initial
        # written at every step that is not skipped, and read only at those
        pre = torch.empty_like(constant)  # U h_{t-1} + V w + W s_t + b_U, the PReLU's input
        prelu_derivative = torch.empty_like(constant)  # 1 where pre > 0, else the slope
        sigmoid = initial.new_zeros(steps, batch, slots)
        norms = initial.new_ones(steps, batch, slots, 1)
        u_transposed, ones = u_weight.t(), torch.ones_like(slope)
        for t in range(steps):
            h = memories[t]
            if not any_real[t]:
                memories[t + 1] = h
                continue
            torch.sigmoid(
                torch.baddbmm(key_gate[t].unsqueeze(-1), h, sentences[t].unsqueeze(-1)), out=sigmoid[t, ..., None]
            )
            gate = sigmoid[t] if padded_rows[t] is None else sigmoid[t] * mask[t, :, None]
            torch.addmm(constant[t].view(-1, dim), h.view(-1, dim), u_transposed, out=pre[t].view(-1, dim))
            positive = torch.sign(pre[t].clamp(min=0))  # 1.0 where pre > 0, else 0.0 (no slow boolean ops)
            torch.lerp(slope.expand_as(h), ones.expand_as(h), positive, out=prelu_derivative[t])  # exactly 1 or slope
            z = torch.addcmul(h, gate.unsqueeze(-1), F.prelu(pre[t].view(-1, dim), slope).view_as(h))
            norms[t] = _normalise_into(z, memories[t + 1])
            if padded_rows[t] is not None:
                memories[t + 1].index_copy_(0, padded_rows[t], h.index_select(0, padded_rows[t]))
        gates = sigmoid * mask[..., None]
        ctx.save_for_backward(sentences, u_weight, slope, memories, pre, prelu_derivative, sigmoid, gates, norms)
        ctx.any_real, ctx.padded_rows = any_real, padded_rows
        ctx.norm_clamped = bool((norms <= NORM_EPS).any())
        return memories[steps].clone(), gates

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad_memory: Tensor | None, grad_gates: Tensor | None) -> tuple[Tensor | None, ...]:
        with torch.autocast(ctx.saved_tensors[0].device.type, enabled=False):  # a backward called under autocast
            return MemoryRecurrence._backward(ctx, grad_memory, grad_gates)

    @staticmethod
    def _backward(ctx: FunctionCtx, grad_memory: Tensor | None, grad_gates: Tensor | None) -> tuple[Tensor | None, ...]:
        sentences, u_weight, slope, memories, pre, prelu_derivative, sigmoid, gate, norms = ctx.saved_tensors
        steps, batch, slots, dim = pre.shape
        any_real, padded_rows = ctx.any_real, ctx.padded_rows
        gate_slope = gate * (1 - sigmoid)  # d gate / d (its pre-sigmoid input)
        grad_pre = torch.empty_like(pre)  # d loss / d (U h_{t-1} + V w + W s_t + b_U)
        grad_gate_input = torch.zeros_like(sigmoid)  # d loss / d (s_t . h_j + s_t . w_j + b_j)
        grad_slope = pre.new_zeros(batch * slots, dim)  # summed over rows after the loop
        dh = (
            torch.zeros_like(memories[0])
            if grad_memory is None
            else grad_memory.clone(memory_format=torch.contiguous_format)
        )
        for t in reversed(range(steps)):
            if not any_real[t]:
                grad_pre[t] = 0
                continue
            h_new, pre_t = memories[t + 1], pre[t].view(-1, dim)
            radial = (h_new * dh).sum(dim=-1, keepdim=True)
            if ctx.norm_clamped:  # where the norm was clamped the step divided by a constant: no radial term
                radial.mul_((norms[t] > NORM_EPS).to(radial.dtype))
            dz = torch.addcmul(dh, h_new, radial, value=-1).div_(norms[t])
            dgate = (dz * F.prelu(pre_t, slope).view_as(dz)).sum(dim=-1)
            if grad_gates is not None:
                dgate += grad_gates[t]
            torch.mul(dgate, gate_slope[t], out=grad_gate_input[t])
            grad_candidate = (dz * gate[t].unsqueeze(-1)).view(-1, dim)
            dpre = torch.mul(grad_candidate, prelu_derivative[t].view(-1, dim), out=grad_pre[t].view(-1, dim))
            grad_slope.addcmul_(grad_candidate, pre_t.clamp(max=0))
            dh_previous = torch.addmm(dz.view(-1, dim), dpre, u_weight).view_as(dz)
            dh_previous.addcmul_(grad_gate_input[t].unsqueeze(-1), sentences[t].unsqueeze(1))
            if padded_rows[t] is not None:  # the memory of a padded story passed through unchanged
                dh_previous.index_copy_(0, padded_rows[t], dh.index_select(0, padded_rows[t]))
            dh = dh_previous
        grad_u = grad_pre.view(-1, dim).t() @ memories[:steps].reshape(-1, dim)
        grad_sentences = torch.bmm(grad_gate_input.view(-1, 1, slots), memories[:steps].reshape(-1, slots, dim))
        grad_sentences = grad_sentences.view(steps, batch, dim)
        return grad_sentences, grad_gate_input, grad_pre, grad_u, grad_slope.sum(dim=0), dh, None


def memory_recurrence(
    sentences: Tensor,
    key_gate: Tensor,
    constant: Tensor,
    u_weight: Tensor,
    slope: Tensor,
    initial: Tensor,
    step_mask: Tensor,
) -> tuple[Tensor, Tensor]:
    """arXiv:1612.03969 section 2.2, eqs 2-5 over a story with the hand-written backward (ours,
    ``docs/papers/entnet.md``); arguments as in :class:`MemoryRecurrence`.

    Runs in the memory's dtype with autocast off (under mixed precision the memory-independent terms
    arrive in half precision, and the buffers the loop writes into must share one dtype).
    """
    dtype = initial.dtype
    floats = (t.to(dtype).contiguous() for t in (sentences, key_gate, constant, u_weight, slope))
    with torch.autocast(initial.device.type, enabled=False):
        return MemoryRecurrence.apply(*floats, initial, step_mask)
