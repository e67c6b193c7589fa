"""The memory recurrence (arXiv:1612.03969 section 2.2, eqs 2-5) against a plain loop over the equations, and its
hand-written backward against finite differences and against autograd."""

import pytest
import torch

from iclr17.functional.entnet import memory_recurrence, pack_steps
from iclr17.modules.entnet.nets import DynamicMemory, FeaturePReLU

# story 0 has a hole, story 1 ends early, story 2 starts with padding (its memory is then still the
# initial, not unit-norm one); step 3 is padding for all three (skipped)
MASK = torch.tensor(
    [[True, True, True, False, True], [True, False, True, False, False], [False, True, True, False, True]]
).t()


def _inputs(steps=5, batch=3, slots=3, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)

    slope = (torch.rand(dim, generator=g, dtype=torch.float64) * 3 - 1.5).requires_grad_()  # some negative
    return (
        randn(steps, batch, dim),  # sentences
        randn(steps, batch, slots),  # key gate terms
        randn(steps, batch, dim),  # W s
        randn(batch, slots, dim),  # V w + b
        randn(dim, dim) * 0.5,  # U
        slope,
        randn(batch, slots, dim) * 2,  # initial memory, not unit norm
    )


def _eqs_2_to_5(sentences, key_gate, sentence_term, slot_term, u_weight, slope, initial, step_mask):
    """Eqs 2-5 written out one step at a time, recorded by autograd: gate, PReLU candidate, update, normalise;
    a story whose sentence is padding keeps its memory and has a zero gate."""
    h, gates = initial, []
    for t in range(len(sentences)):
        real = step_mask[t]
        gate = torch.sigmoid((h * sentences[t][:, None, :]).sum(-1) + key_gate[t]) * real[:, None]  # eq 2 (+ b_j)
        pre = h @ u_weight.T + slot_term + sentence_term[t][:, None, :]  # U h_j + V w_j + b_U + W s_t
        candidate = torch.where(pre > 0, pre, slope * pre)  # eq 3, phi = PReLU
        z = h + gate[..., None] * candidate  # eq 4
        normalised = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min(1e-12)  # eq 5
        h = torch.where(real[:, None, None], normalised, h)
        gates.append(gate)
    return h, torch.stack(gates)


def _assert_fused_equals_plain_loop(inputs, mask, weights) -> torch.Tensor:
    """Memory, gates and every input's gradient of a weighted sum of both, fused against ``_eqs_2_to_5``; returns
    the fused gates."""
    results = []
    for function in (memory_recurrence, _eqs_2_to_5):
        h, gates = function(*inputs, mask)
        loss = (h * weights[0]).sum() + (gates * weights[1]).sum()
        results.append((h, gates, *torch.autograd.grad(loss, inputs)))
    for fused, plain in zip(*results, strict=True):
        torch.testing.assert_close(fused, plain)
    return results[0][1]


def test_memory_and_gradients_equal_a_plain_loop_over_eqs_2_to_5():
    weights = torch.randn(3, 3, 4, dtype=torch.float64), torch.randn(5, 3, 3, dtype=torch.float64)
    gates = _assert_fused_equals_plain_loop(_inputs(), MASK, weights)
    assert gates[3].eq(0).all()  # step 3 is padding for every story: no gate opens


@pytest.mark.parametrize("seed", range(12))
def test_any_mask_and_shape_gives_the_plain_loop_s_memory_gates_and_gradients(seed):
    g = torch.Generator().manual_seed(100 + seed)
    steps, batch, slots, dim = (int(torch.randint(1, n, (1,), generator=g)) for n in (8, 6, 4, 6))
    inputs = _inputs(steps, batch, slots, dim, seed=seed)
    real = 1.0 if seed == 0 else float(torch.rand(1, generator=g))  # seed 0: no padding (nothing to pack)
    mask = torch.rand(steps, batch, generator=g) < real
    weights = (
        torch.randn(batch, slots, dim, generator=g, dtype=torch.float64),
        torch.randn(steps, batch, slots, generator=g, dtype=torch.float64),
    )
    _assert_fused_equals_plain_loop(inputs, mask, weights)


def test_packed_layout_puts_each_story_s_real_sentences_first_and_the_longest_stories_first():
    mask = MASK.clone()
    mask[:, 1] = torch.tensor([False, True, False, False, True])  # two real sentences, after padding
    plan = pack_steps(mask)
    steps, batch = mask.shape
    lengths = mask.sum(dim=0).tolist()
    assert [lengths[b] for b in plan.order.tolist()] == sorted(lengths, reverse=True)
    real_steps = [[t for t in range(steps) if mask[t, b]] for b in range(batch)]
    assert plan.counts == [sum(n > k for n in lengths) for k in range(max(lengths))]
    for k, (offset, count) in enumerate(zip(plan.offsets, plan.counts, strict=True)):
        for i, b in enumerate(plan.order.tolist()[:count]):  # row offset + i: story b's k-th real sentence
            assert plan.flat_index[offset + i] == real_steps[b][k] * batch + b
    assert not plan.identity and pack_steps(torch.ones(3, 2, dtype=torch.bool)).identity


def test_backward_matches_finite_differences():
    inputs = _inputs()
    assert torch.autograd.gradcheck(lambda *x: memory_recurrence(*x, MASK), inputs)


def test_fused_and_recorded_memory_agree_on_values_and_gradients():
    torch.manual_seed(0)
    prelu = FeaturePReLU(6)
    with torch.no_grad():
        prelu.slope.uniform_(0.1, 0.9)
    memory = DynamicMemory(6, 3, prelu)
    sentences, keys = torch.randn(3, 5, 6, requires_grad=True), torch.randn(3, 3, 6, requires_grad=True)
    weights = torch.randn(3, 3, 6), torch.randn(3, 5, 3)

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


def test_padded_stories_keep_their_memory_bit_for_bit_and_pass_their_gradient_through():
    memory = DynamicMemory(4, 2, FeaturePReLU(4))
    keys = torch.tensor([[[1e30, -0.0, 3.0, float("inf")], [1.0, 2.0, 3.0, 4.0]], [[1.0, 0.5, 0.0, 2.0]] * 2])
    sentences = torch.randn(2, 3, 4)
    mask = torch.tensor([[False, False, False], [True, True, True]])  # story 0 is padding throughout
    initial = keys.clone().requires_grad_()
    h, _ = memory(sentences, mask, keys, initial=initial)
    assert torch.equal(h[0], keys[0]) and torch.signbit(h[0, 0, 1])  # inf stays inf, -0.0 stays -0.0
    h[0].sum().backward()
    assert torch.equal(initial.grad[0], torch.ones(2, 4)) and initial.grad[1].eq(0).all()


def test_gradient_arriving_in_any_layout():
    memory = DynamicMemory(8, 5, FeaturePReLU(8))
    sentences, keys, query = torch.randn(4, 6, 8, requires_grad=True), torch.randn(4, 5, 8), torch.randn(4, 8)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, 4:] = False
    h, _ = memory(sentences, mask, keys, initial=keys)
    torch.einsum("bd,bmd->bm", query, h).pow(2).sum().backward()  # einsum hands back a permuted gradient
    assert torch.isfinite(sentences.grad).all()


def test_backward_under_autocast_and_clamped_norms_match_autograd():
    torch.manual_seed(1)
    memory = DynamicMemory(4, 2, FeaturePReLU(4)).double()
    with torch.no_grad():
        memory.U.weight.zero_(), memory.U.bias.zero_(), memory.V.weight.zero_(), memory.W.weight.zero_()
    # one step, so the clamped step's output gradient is not projected onto its sphere by a later step
    sentences = torch.randn(1, 1, 4, dtype=torch.float64, requires_grad=True)
    initial = torch.tensor([[[3e-13, 4e-13, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    mask, weights = torch.ones(1, 1, dtype=torch.bool), torch.randn(1, 2, 4, dtype=torch.float64)

    def gradients(fused):
        memory.fused = fused
        h, _ = memory(sentences, mask, initial, initial=initial)
        return torch.autograd.grad((h * weights).sum(), [sentences, initial])

    for fused, recorded in zip(gradients(True), gradients(False), strict=True):
        torch.testing.assert_close(fused, recorded)
    memory.float()
    x, keys = torch.randn(2, 3, 4, requires_grad=True), torch.randn(2, 2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a manual backward inside the autocast region
        h, _ = memory(x, torch.tensor([[True, True, False], [True, True, True]]), keys, initial=keys)
        h.sum().backward()
    assert x.grad.dtype == torch.float32 and torch.isfinite(x.grad).all()
