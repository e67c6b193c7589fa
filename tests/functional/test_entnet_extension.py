"""The C++ loops of the packed memory (arXiv:1612.03969 section 2.2, eqs 2-5) against its Python loops, bit for
bit, on random shapes, masks and dtypes; the choice of loops and the fallback where the C++ build fails."""

import pytest
import torch

from iclr17.functional import compiled
from iclr17.functional.entnet import memory_recurrence
from iclr17.functional.entnet_extension import compiled_loops
from tests.functional.test_entnet import MASK, _inputs


def _values_and_gradients(inputs, mask, weights, loops):
    h, gates = memory_recurrence(*inputs, mask, loops=loops)
    loss = (h * weights[0]).sum() + (gates * weights[1]).sum()
    return (h, gates, *torch.autograd.grad(loss, inputs))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_cpp_loops_give_the_python_loops_numbers_bit_for_bit(seed, dtype):
    g = torch.Generator().manual_seed(200 + seed)
    steps, batch, slots, dim = (int(torch.randint(1, n, (1,), generator=g)) for n in (9, 7, 5, 7))
    inputs = tuple(t.detach().to(dtype).requires_grad_() for t in _inputs(steps, batch, slots, dim, seed=seed))
    if seed == 1:  # a memory whose update is exactly zero: eq 5's norm clamped, the backward's other branch
        with torch.no_grad():
            inputs[6][0, 0].zero_()
            inputs[1][:, 0, 0] = -1e4  # its gate closed: z = h = 0
    mask = torch.rand(steps, batch, generator=g) < (1.0 if seed == 0 else float(torch.rand(1, generator=g)))
    weights = (torch.randn(batch, slots, dim, generator=g, dtype=dtype),
               torch.randn(steps, batch, slots, generator=g, dtype=dtype))  # fmt: skip
    cpp = _values_and_gradients(inputs, mask, weights, "cpp")
    python = _values_and_gradients(inputs, mask, weights, "python")
    for ours, reference in zip(cpp, python, strict=True):
        assert torch.equal(ours, reference)


def test_loops_must_be_auto_cpp_or_python(monkeypatch):
    with pytest.raises(ValueError, match="loops must be one of auto, cpp, python, got 'fast'"):
        memory_recurrence(*_inputs(), MASK, loops="fast")
    monkeypatch.setenv("ICLR17_ENTNET_LOOPS", "c++")
    with pytest.raises(ValueError, match="ICLR17_ENTNET_LOOPS must be one of auto, cpp, python, got 'c[+][+]'"):
        memory_recurrence(*_inputs(), MASK)


def test_auto_falls_back_to_the_python_loops_with_one_warning_where_the_build_fails(monkeypatch):
    failure = OSError("no C++ compiler")
    monkeypatch.setattr(compiled, "build_extension", lambda *args: failure)
    compiled.warn_fallback.cache_clear()
    with pytest.warns(UserWarning, match="runs its Python loops .*no C.. compiler"):
        assert compiled_loops("auto") is None
    with pytest.raises(RuntimeError, match="could not be built from .*entnet_loops.cpp: no C.. compiler"):
        compiled_loops("cpp")
    h, gates = memory_recurrence(*_inputs(), MASK)  # still runs, on the Python loops
    assert torch.equal(h, memory_recurrence(*_inputs(), MASK, loops="python")[0])
    assert compiled_loops("python") is None
    compiled.warn_fallback.cache_clear()
