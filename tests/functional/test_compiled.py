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


def _try_lock(path) -> int:
    """Exit status of another process that tries to take the build lock at ``path`` without waiting (0: it got it)."""
    import subprocess
    import sys

    probe = "import fcntl, sys; fcntl.flock(open(sys.argv[1], 'w'), fcntl.LOCK_EX | fcntl.LOCK_NB)"
    return subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True).returncode


def test_one_process_at_a_time_builds_and_a_killed_builds_lock_file_is_cleared(monkeypatch, tmp_path):
    """torch waits forever on the ``lock`` file of a build whose process died; ours is an OS lock, released with
    the process, and whoever holds it clears torch's stale file."""
    import signal
    import subprocess
    import sys
    import time

    from iclr17.functional.compiled import exclusive_build_folder

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    folder, held = tmp_path / "iclr17_k", tmp_path / ".iclr17_k.iclr17-lock"
    folder.mkdir()
    (folder / "lock").touch()  # left by a build that was killed
    with exclusive_build_folder("iclr17_k"):
        assert not (folder / "lock").exists()
        assert _try_lock(held) != 0  # a second process cannot enter meanwhile
    assert _try_lock(held) == 0

    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from iclr17.functional.compiled import exclusive_build_folder as e\n"
         "with e('iclr17_k'):\n    print('in', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "in"
    assert _try_lock(held) != 0
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    start = time.monotonic()
    with exclusive_build_folder("iclr17_k"):
        assert time.monotonic() - start < 5  # released with the killed process, no waiting
