"""The C++ build of the packed memory's loops (``entnet_loops.cpp``, arXiv:1612.03969 section 2.2, eqs 2-5): the
same ATen operations as the Python loops of :mod:`iclr17.functional.entnet`, without the interpreter's cost per
operation. Built once per machine and torch version by ``torch.utils.cpp_extension`` (a C++ compiler and ninja
are needed; the build is cached in ``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``).

Where it cannot be built, :func:`compiled_loops` warns once and returns None, and the Python loops run (same
numbers, slower). ``ICLR17_ENTNET_LOOPS=python`` skips the build.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from iclr17.functional.compiled import load_kernel

SOURCE = Path(__file__).with_name("entnet_loops.cpp")
LOOPS = ("auto", "cpp", "python")  # memory_recurrence's ``loops``
ENVIRONMENT = "ICLR17_ENTNET_LOOPS"


def check_loops(loops: str) -> str:
    """``loops`` if it is one of ``LOOPS``, else a ValueError naming the argument (ours, for arXiv:1612.03969
    section 2.2's memory; docs/papers/entnet.md)."""
    if loops not in LOOPS:
        raise ValueError(f"loops must be one of {', '.join(LOOPS)}, got {loops!r}")
    return loops


def compiled_loops(loops: str = "auto") -> ModuleType | None:
    """The built extension for ``loops`` ``"cpp"`` (a RuntimeError if it cannot be built) or ``"auto"`` (None
    with a warning, once, if it cannot be built); None for ``"python"``. ``"auto"`` takes ``ICLR17_ENTNET_LOOPS``
    where it is set. Ours, for the memory of arXiv:1612.03969 section 2.2 (docs/papers/entnet.md)."""
    check_loops(loops)
    if loops == "auto":
        loops = os.environ.get(ENVIRONMENT, "auto")
        if loops not in LOOPS:
            raise ValueError(f"the environment variable {ENVIRONMENT} must be one of {', '.join(LOOPS)}, got {loops!r}")
    if loops == "python":
        return None
    return load_kernel("iclr17_entnet_loops", SOURCE, ("-O3",), loops == "cpp", "EntNet's memory", "its Python loops")
