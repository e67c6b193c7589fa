"""Building the C++ kernels: a failed build falls back with one warning per kernel, or fails loudly when the caller
asked for the kernel by name (the kernels themselves: test_entnet_extension.py, test_philox.py)."""

import pytest

from iclr17.functional import compiled
from iclr17.functional.compiled import load_kernel


def test_a_failed_build_warns_once_per_kernel_or_raises_when_the_kernel_is_required(monkeypatch, tmp_path):
    failure = OSError("no C++ compiler")
    monkeypatch.setattr(compiled, "build_extension", lambda *args: failure)
    compiled.warn_fallback.cache_clear()
    source = tmp_path / "kernel.cpp"
    with pytest.warns(UserWarning, match="the kernel runs its twin .same numbers, slower.: .*no C.. compiler") as seen:
        assert load_kernel("k", source, ("-O3",), False, "the kernel", "its twin") is None
        assert load_kernel("k", source, ("-O3",), False, "the kernel", "its twin") is None
    assert len(seen) == 1
    with pytest.raises(RuntimeError, match="the kernel: the C.. kernel could not be built from .*kernel.cpp: no C"):
        load_kernel("k", source, ("-O3",), True, "the kernel", "its twin")
    compiled.warn_fallback.cache_clear()


def test_a_successful_build_is_returned_as_it_is(monkeypatch, tmp_path):
    built = object()
    monkeypatch.setattr(compiled, "build_extension", lambda *args: built)
    assert load_kernel("k", tmp_path / "kernel.cpp", (), True, "the kernel", "its twin") is built
