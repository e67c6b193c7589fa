"""The package's C++ kernels, built on first use by ``torch.utils.cpp_extension`` (a C++ compiler and ninja are
needed; builds are cached per machine and torch version in ``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``): EntNet's memory loops (arXiv:1612.03969 section 2.2, eqs 2-5) and Entropy-SGD's
Langevin noise on the CPU (arXiv:1611.01838 Algorithm 1). Each kernel has a pure-torch twin that computes the same
numbers, slower, and runs where the build fails."""

from __future__ import annotations

import fcntl
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType


@cache
def build_extension(
    name: str, source: Path, flags: tuple[str, ...] = ("-O3",), link_flags: tuple[str, ...] = ()
) -> ModuleType | Exception:
    """The extension ``name`` built from ``source`` with compiler ``flags`` and linker ``link_flags`` (``-fopenmp``
    links the libgomp that torch has loaded already: one OpenMP runtime), or the exception that stopped the
    build (no compiler, no ninja, a read-only cache): the callers fall back to their torch twin. For the kernels of
    arXiv:1612.03969 section 2.2 and arXiv:1611.01838 Algorithm 1."""
    from torch.utils.cpp_extension import load

    logging.getLogger(__name__).info("loading the C++ extension %s (built once per machine and torch)", name)
    try:
        with exclusive_build_folder(name):
            return load(name, [str(source)], extra_cflags=list(flags), extra_ldflags=list(link_flags), verbose=False)
    except Exception as err:
        return err


@contextmanager
def exclusive_build_folder(name: str) -> Iterator[None]:
    """Hold an OS file lock on the build folder of extension ``name`` while torch builds or loads it, and clear the
    ``lock`` file torch leaves there when a process dies mid-build: torch waits on that file forever (its
    ``FileBaton``), whereas the OS releases our lock with the process that held it. Only one process at a time is
    inside, so a ``lock`` file found there is always stale. For the kernels of arXiv:1612.03969 section 2.2 and
    arXiv:1611.01838 Algorithm 1."""
    from torch.utils.cpp_extension import _get_build_directory  # the folder torch builds in; torch has no public one

    folder = Path(_get_build_directory(name, verbose=False))
    with open(folder.parent / f".{name}.iclr17-lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        (folder / "lock").unlink(missing_ok=True)
        yield  # the OS releases the lock when the file closes or the process ends


def load_kernel(
    name: str, source: Path, flags: tuple[str, ...], required: bool, what: str, fallback: str,
    link_flags: tuple[str, ...] = (),
) -> ModuleType | None:  # fmt: skip
    """The built extension; where the build fails, a RuntimeError if ``required`` (the caller asked for the C++
    kernel by name), else None with one warning that ``what`` runs ``fallback``. For the kernels of
    arXiv:1612.03969 section 2.2 and arXiv:1611.01838 Algorithm 1."""
    built = build_extension(name, source, flags, link_flags)
    if not isinstance(built, Exception):
        return built
    if required:
        raise RuntimeError(f"{what}: the C++ kernel could not be built from {source}: {built}")
    warn_fallback(what, fallback, built)
    return None


@cache
def warn_fallback(what: str, fallback: str, err: Exception) -> None:
    """One warning per kernel and failure: ``what`` runs ``fallback``, its torch twin (same numbers, slower). For
    the kernels of arXiv:1612.03969 section 2.2 and arXiv:1611.01838 Algorithm 1."""
    warnings.warn(f"{what} runs {fallback} (same numbers, slower): the C++ build failed ({err})", stacklevel=3)
