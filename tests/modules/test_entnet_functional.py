"""The memory recurrence's hand-written backward against finite differences and against autograd."""

import pytest
import torch

from iclr17.modules.entnet.components import DynamicMemory, FeaturePReLU
from iclr17.modules.entnet.functional import memory_recurrence

# story 0 ends one step early, story 1 has a hole; step 3 is padding for both (skipped)
MASK = torch.tensor([[True, True, True, False, True], [True, False, True, False, False]]).t()


def _inputs(steps=5, batch=2, slots=3, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    slope = (torch.rand(dim, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    return (
        randn(steps, batch, dim),  # sentences
        randn(steps, batch, slots),  # key gate terms
        randn(steps, batch, slots, dim),  # V w + W s + b
        randn(dim, dim) * 0.5,  # U
        slope,
        randn(batch, slots, dim) * 2,  # initial memory, not unit norm
    )


def test_backward_matches_finite_differences():
    inputs = _inputs()
    assert torch.autograd.gradcheck(lambda *x: memory_recurrence(*x, MASK), inputs)


def test_fused_and_recorded_memory_agree_on_values_and_gradients():
    torch.manual_seed(0)
    prelu = FeaturePReLU(6)
    with torch.no_grad():
        prelu.slope.uniform_(0.1, 0.9)
    memory = DynamicMemory(6, 3, prelu)
    sentences, keys = torch.randn(2, 5, 6, requires_grad=True), torch.randn(2, 3, 6, requires_grad=True)
    weights = torch.randn(2, 3, 6), torch.randn(2, 5, 3)

    def run(fused):
        memory.fused = fused
        h, gates = memory(sentences, MASK.t(), keys, initial=keys)
        loss = (h * weights[0]).sum() + (gates * weights[1]).sum()
        return (h, gates, *torch.autograd.grad(loss, [sentences, keys, *memory.parameters()]))

    for fused, recorded in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(fused, recorded)


def test_fused_memory_refuses_second_derivatives_and_recorded_gives_them():
    memory = DynamicMemory(4, 2, FeaturePReLU(4))
    sentences, keys = torch.randn(1, 3, 4), torch.randn(1, 2, 4)
    mask = torch.ones(1, 3, dtype=torch.bool)

    def gradient(fused):
        memory.fused = fused
        loss = memory(sentences, mask, keys, initial=keys)[0].pow(2).sum()
        return torch.autograd.grad(loss, memory.U.weight, create_graph=True)[0]

    with pytest.raises(RuntimeError, match="once_differentiable"):
        gradient(True).sum().backward()
    gradient(False).sum().backward()
    assert memory.U.weight.grad is not None


def test_fused_memory_runs_in_float32_under_bfloat16_autocast():
    memory = DynamicMemory(8, 3, FeaturePReLU(8))
    sentences, keys = torch.randn(2, 4, 8, requires_grad=True), torch.randn(2, 3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h, gates = memory(sentences, torch.ones(2, 4, dtype=torch.bool), keys, initial=keys)
    h.sum().backward()
    assert h.dtype == gates.dtype == sentences.grad.dtype == torch.float32
    assert torch.isfinite(sentences.grad).all() and torch.isfinite(memory.U.weight.grad).all()
