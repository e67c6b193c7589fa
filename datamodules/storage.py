"""Where data lives, how it arrives, and the errors that say what is missing.

Every datamodule reads from a *data root* and writes processed files to a *cache root*:

- data root: the ``data_dir`` argument, else ``$ICLR17_DATA_DIR``, else ``./data``. It may be read-only;
  nothing is written there except by :func:`download` when the user asked for a download.
- cache root: the ``cache_dir`` argument, else ``$ICLR17_CACHE_DIR``, else ``$XDG_CACHE_HOME/iclr17``,
  else ``~/.cache/iclr17``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class MissingDataError(FileNotFoundError):
    """A data file is not where it was expected; the message says where and how to get it."""


class DataFormatError(ValueError):
    """A data file exists but is not in the expected format; the message names the file (and line)."""


class ChecksumError(OSError):
    """A downloaded file does not have its published checksum; nothing was kept."""


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root: ``data_dir``, else ``$ICLR17_DATA_DIR``, else ``./data``."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get("ICLR17_DATA_DIR") or "data")


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The writable cache root for extracted and processed files."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("ICLR17_CACHE_DIR"):
        return Path(os.environ["ICLR17_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "iclr17"


def require_files(paths: list[Path], dataset: str, how_to_get: str) -> None:
    """Raise one :class:`MissingDataError` listing every missing path, with instructions."""
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise MissingDataError(
            f"{dataset}: missing file(s): {', '.join(missing)}. "
            f"Set `data_dir` (or $ICLR17_DATA_DIR) to the folder that holds them. {how_to_get}"
        )


def sha256sum(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(version: int, options: dict, files: dict[str, str | os.PathLike]) -> str:
    """The name of a cache entry: 20 hex digits of the SHA-256 of ``{"version", "options", "files"}`` as sorted
    JSON, ``files`` mapping each input's label to its SHA-256. Any change to the inputs' bytes, to an option that
    changes the result, or to ``version`` (bumped when the processing changes) gives a new entry."""
    checksums = {label: sha256sum(path) for label, path in files.items()}
    blob = json.dumps({"version": version, "options": options, "files": checksums}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cache_entry(
    cache_dir: str | os.PathLike | None, template: str, version: int, options: dict, files: dict[str, str | os.PathLike]
) -> Path:
    """``<cache root>/<template>`` with ``{key}`` in ``template`` replaced by :func:`cache_key` of the rest."""
    return cache_root(cache_dir) / template.format(key=cache_key(version, options, files))


@contextmanager
def atomic_publish(target: str | os.PathLike, folder: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary sibling of ``target`` (a file path, or an empty folder if ``folder``) to write;
    when the block ends without error it is renamed to ``target`` in one step, so readers find the whole entry
    or none. On an error it is removed and nothing is published. A folder that a concurrent writer published
    first is kept (a file is replaced: both writers wrote the same bytes)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        staging = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.")
    else:
        fd, staging = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(fd)
    try:
        yield Path(staging)
        try:
            os.replace(staging, target)
        except OSError:
            if not (folder and target.is_dir()):  # not a concurrent writer that finished first
                raise
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)
        elif os.path.exists(staging):
            os.remove(staging)


def download(url: str, destination: str | os.PathLike, sha256: str) -> Path:
    """Fetch ``url`` to ``destination`` and verify its SHA-256; an existing verified file is kept.

    Written here rather than with ``torchvision.datasets.utils.download_url`` because that writes straight
    to the destination, so an interrupted download leaves a half file behind. Here the bytes go to a
    temporary file in the same folder, which is renamed only after the checksum matches.
    """
    destination = Path(destination)
    if destination.is_file() and sha256sum(destination) == sha256:
        return destination
    with atomic_publish(destination) as part:
        with open(part, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        actual = sha256sum(part)
        if actual != sha256:
            raise ChecksumError(f"{url}: SHA-256 {actual} does not match the expected {sha256}; the file was discarded")
    return destination


def extract_archive(archive: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Extract a tar (any compression) or zip archive into ``target``, refusing members that escape it.

    Tar archives go through the standard library's ``data`` filter (no absolute paths, no ``..``, no links
    out of the target, no device files). Every member of either kind is checked before anything is written,
    so a refused archive leaves the target untouched.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            root = target.resolve()
            for name in zf.namelist():
                if not (root / name).resolve().is_relative_to(root):
                    raise DataFormatError(f"{archive}: member {name!r} would be written outside {target}")
            zf.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            try:
                for member in members:
                    tarfile.data_filter(member, str(target))
            except tarfile.FilterError as err:
                raise DataFormatError(f"{archive}: refused member: {err}") from err
            tf.extractall(target, members=members, filter="data")
    else:
        raise DataFormatError(f"{archive}: not a tar or zip archive")
    return target
