"""Write a small CIFAR-10 in the exact on-disk format: ``<root>/cifar10/cifar-10-batches-py/``.

    python -m tests.data OUT_DIR --only cifar10

The official files are Python 2 ``cPickle`` protocol-2 pickles (torchvision reads them with
``pickle.load(f, encoding="latin1")``): a dict whose keys are byte strings (``SHORT_BINSTRING``), with
``data`` a uint8 numpy array of shape (N, 3072) in channel-major order (pixel (c, i, j) at
``c * 1024 + i * 32 + j``), built by ``numpy.core.multiarray._reconstruct``, and ``labels`` a list of ints
(``batch_label`` and ``filenames`` alongside). ``batches.meta`` holds ``label_names``,
``num_cases_per_batch`` and ``num_vis``. Python 3's pickler writes ``str`` as unicode and ``bytes`` through
``_codecs.encode``, so :class:`Py2Pickler` writes both the way Python 2 wrote its ``str``.

The images are noise with a bright row whose position is the label in the label's colour channel, so the
task is learnable; what matters is the byte layout.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np

LABEL_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array unpickling function, by any module name
_PY2_GLOBALS = {id(_RECONSTRUCT): b"numpy.core.multiarray\n_reconstruct\n", id(np.ndarray): b"numpy\nndarray\n"}
_PY2_GLOBALS[id(np.dtype)] = b"numpy\ndtype\n"


class Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose dispatch table can be changed per type
    """Protocol 2 as Python 2 wrote it: ``str`` and ``bytes`` as byte strings, numpy under ``numpy.core``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_global(self, obj: object, name: str | None = None) -> None:
        if id(obj) not in _PY2_GLOBALS:
            raise pickle.PicklingError(f"Py2Pickler: no Python 2 name for {obj!r}")
        self.write(pickle.GLOBAL + _PY2_GLOBALS[id(obj)])
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str
    dispatch[type] = save_global


def py2_pickle_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    images = (rng.integers(0, 256, size=(len(labels), 3, 32, 32)) // 2).astype(np.uint8)
    for k, label in enumerate(labels):
        images[k, int(label) % 3, 3 * int(label) + 1, :] = 255
    return images.reshape(len(labels), 3072)  # row-major (N, 3, 32, 32) flattening is the channel-major layout


def write_cifar10(root: str | Path, per_batch: int = 60, n_test: int = 40, seed: int = 0) -> Path:
    """Write the five training batches, ``test_batch`` and ``batches.meta`` under ``root/cifar10``; return it."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = [(f"data_batch_{b}", f"training batch {b} of 5", per_batch) for b in range(1, 6)]
    for name, batch_label, n in [*batches, ("test_batch", "testing batch 1 of 1", n_test)]:
        labels = rng.integers(0, 10, size=n)
        entry = {
            "batch_label": batch_label,
            "labels": [int(label) for label in labels],
            "data": _images(labels, rng),
            "filenames": [f"{LABEL_NAMES[label]}_s_{k:06d}.png" for k, label in enumerate(labels)],
        }
        (folder / name).write_bytes(py2_pickle_bytes(entry))
    meta = {"num_cases_per_batch": per_batch, "label_names": LABEL_NAMES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(py2_pickle_bytes(meta))
    return folder
