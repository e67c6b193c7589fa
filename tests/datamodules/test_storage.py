import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from iclr17.datamodules.storage import (
    ChecksumError,
    DataFormatError,
    MissingDataError,
    atomic_publish,
    cache_key,
    cache_root,
    data_root,
    download,
    extract_archive,
    require_files,
    sha256sum,
)

HELLO_SHA256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"  # sha256(b"hello")


def test_data_root_precedence(monkeypatch):
    monkeypatch.delenv("ICLR17_DATA_DIR", raising=False)
    assert data_root() == Path("data")
    monkeypatch.setenv("ICLR17_DATA_DIR", "/from/env")
    assert data_root() == Path("/from/env")
    assert data_root("/explicit") == Path("/explicit")


def test_cache_root_precedence(monkeypatch):
    monkeypatch.delenv("ICLR17_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert cache_root() == Path("/xdg/iclr17")
    monkeypatch.setenv("ICLR17_CACHE_DIR", "/cache")
    assert cache_root() == Path("/cache")
    assert cache_root("/explicit") == Path("/explicit")


def test_require_files_names_every_missing_path(tmp_path):
    (tmp_path / "present").write_text("x")
    with pytest.raises(MissingDataError, match="absent1.*absent2") as err:
        require_files([tmp_path / "present", tmp_path / "absent1", tmp_path / "absent2"], "Toy", "Get it there.")
    assert "present," not in str(err.value) and "Get it there." in str(err.value)


def test_download_verifies_and_renames(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"hello")
    target = tmp_path / "out" / "file.bin"
    assert download(source.as_uri(), target, HELLO_SHA256) == target
    assert target.read_bytes() == b"hello"
    assert sorted(os.listdir(target.parent)) == ["file.bin"]


def test_download_checksum_mismatch_leaves_nothing(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"hello, tampered")
    target = tmp_path / "out" / "file.bin"
    with pytest.raises(ChecksumError, match="does not match"):
        download(source.as_uri(), target, HELLO_SHA256)
    assert os.listdir(target.parent) == []


def test_download_keeps_a_verified_file_without_fetching(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"hello")
    assert download("file:///nonexistent/never/fetched", target, HELLO_SHA256) == target


def _tar_with(tmp_path: Path, names: list[str]) -> Path:
    archive = tmp_path / "archive.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 5
            tf.addfile(info, io.BytesIO(b"hello"))
    return archive


def test_extract_tar(tmp_path):
    archive = _tar_with(tmp_path, ["a/b.txt", "c.txt"])
    target = extract_archive(archive, tmp_path / "target")
    assert (target / "a" / "b.txt").read_bytes() == b"hello"
    assert sha256sum(target / "c.txt") == HELLO_SHA256


def test_extract_tar_refuses_escaping_members_and_writes_nothing(tmp_path):
    archive = _tar_with(tmp_path, ["fine.txt", "../escape.txt"])
    with pytest.raises(DataFormatError, match="refused member"):
        extract_archive(archive, tmp_path / "target")
    assert os.listdir(tmp_path / "target") == []
    assert not (tmp_path / "escape.txt").exists()


def test_extract_tar_refuses_links_out_of_the_target(tmp_path):
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tf:
        link = tarfile.TarInfo("passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(DataFormatError, match="refused member"):
        extract_archive(archive, tmp_path / "target")
    assert os.listdir(tmp_path / "target") == []


def test_extract_tar_keeps_absolute_members_inside_the_target(tmp_path):
    target = extract_archive(_tar_with(tmp_path, ["/abs/inside.txt"]), tmp_path / "target")
    assert (target / "abs" / "inside.txt").read_bytes() == b"hello"


def test_extract_zip_refuses_escaping_members_and_writes_nothing(tmp_path):
    archive = tmp_path / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "hello")
        zf.writestr("../escape.txt", "hello")
    with pytest.raises(DataFormatError, match="outside"):
        extract_archive(archive, tmp_path / "target")
    assert os.listdir(tmp_path / "target") == []


def test_extract_rejects_non_archives(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("not an archive")
    with pytest.raises(DataFormatError, match="not a tar or zip"):
        extract_archive(path, tmp_path / "target")


def test_cache_key_depends_on_version_options_and_file_bytes_only(tmp_path):
    (tmp_path / "a").write_bytes(b"hello")
    (tmp_path / "copy").write_bytes(b"hello")
    key = cache_key(1, {"seed": 0}, {"train": tmp_path / "a"})
    assert len(key) == 20 and key == cache_key(1, {"seed": 0}, {"train": tmp_path / "copy"})  # bytes, not paths
    # the published recipe: sorted JSON of version, options and the files' SHA-256s
    blob = json.dumps({"version": 1, "options": {"seed": 0}, "files": {"train": HELLO_SHA256}}, sort_keys=True)
    assert key == hashlib.sha256(blob.encode()).hexdigest()[:20]
    assert key != cache_key(2, {"seed": 0}, {"train": tmp_path / "a"})
    assert key != cache_key(1, {"seed": 1}, {"train": tmp_path / "a"})
    (tmp_path / "copy").write_bytes(b"hellO")
    assert key != cache_key(1, {"seed": 0}, {"train": tmp_path / "copy"})


@pytest.mark.parametrize("folder", [False, True])
def test_atomic_publish_shows_the_entry_only_when_complete(tmp_path, folder):
    target = tmp_path / "cache" / "entry"
    with pytest.raises(RuntimeError), atomic_publish(target, folder=folder) as staging:
        assert staging.parent == target.parent and staging.name.startswith(".entry.")
        (staging / "meta.json" if folder else staging).write_text("half")
        raise RuntimeError("interrupted")
    assert os.listdir(target.parent) == []  # nothing published, no staging left
    with atomic_publish(target, folder=folder) as staging:
        (staging / "meta.json" if folder else staging).write_text("whole")
        assert not target.exists()
    assert (target / "meta.json" if folder else target).read_text() == "whole"
    assert os.listdir(target.parent) == ["entry"]


def test_atomic_publish_keeps_a_folder_a_concurrent_writer_published_first(tmp_path):
    target = tmp_path / "entry"
    with atomic_publish(target, folder=True) as staging:
        (staging / "meta.json").write_text("mine")
        target.mkdir()
        (target / "meta.json").write_text("theirs")
    assert (target / "meta.json").read_text() == "theirs" and os.listdir(tmp_path) == ["entry"]
