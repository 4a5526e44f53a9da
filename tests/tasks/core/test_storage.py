"""tasks.core.storage (what the pipeline adds to manifests.uri) on local folders and on a moto S3 server over HTTP."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from manifests import uri as fs
from tasks.core import storage


def test_storage_adds_to_the_one_path_layer() -> None:
    """The path layer is manifests.uri's: storage re-exports it rather than implementing it again."""
    for name in ("join", "exists", "read_bytes", "write_bytes", "list_files", "split_s3", "s3_client"):
        assert getattr(storage, name) is getattr(fs, name), name
    own = {"open_local", "copy_file", "delete"}
    assert own <= set(storage.__all__) and not own & set(dir(fs))


# ------------------------------------------------------------------------------------------ local
def test_local_open_local_and_delete(tmp_path: Path) -> None:
    target = str(tmp_path / "x.txt")
    fs.write_bytes(target, b"new")
    with storage.open_local(target) as path:
        assert path == target and Path(path).read_bytes() == b"new"
    storage.delete(target)
    assert not fs.exists(target)
    storage.delete(target, missing_ok=True)


def test_local_missing_names_uri(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.wav")
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        storage.delete(missing)
    with pytest.raises(FileNotFoundError, match="nope.wav"), storage.open_local(missing):
        pass
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        storage.copy_file(missing, str(tmp_path / "dst.wav"))
    assert not (tmp_path / "dst.wav").exists()


def test_local_copy(tmp_path: Path) -> None:
    src = str(tmp_path / "a.bin")
    fs.write_bytes(src, bytes(range(256)))
    dst = str(tmp_path / "x" / "y" / "b.bin")
    storage.copy_file(src, dst)
    assert Path(dst).read_bytes() == bytes(range(256))


# ------------------------------------------------------------------------------------------ S3
@pytest.mark.aws
def test_s3_open_local_and_delete(s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/data/sub/x.txt"
    fs.write_text(uri, "héllo")
    with storage.open_local(uri) as path:
        assert path.endswith(".txt") and Path(path).read_text() == "héllo"
        local_copy = path
    assert not os.path.exists(local_copy), "temp download removed on exit"
    storage.delete(uri)
    assert not fs.exists(uri)
    storage.delete(uri, missing_ok=True)


@pytest.mark.aws
def test_s3_missing_object_names_uri(s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/nope.wav"
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        storage.delete(uri)
    with pytest.raises(FileNotFoundError, match="nope.wav"), storage.open_local(uri):
        pass


@pytest.mark.aws
def test_copy_between_local_and_s3(s3_bucket: str, tmp_path: Path) -> None:
    payload = os.urandom(70_000)
    local = str(tmp_path / "a.bin")
    fs.write_bytes(local, payload)
    up = f"s3://{s3_bucket}/c/a.bin"
    storage.copy_file(local, up)
    other = f"s3://{s3_bucket}/d/b.bin"
    storage.copy_file(up, other)
    down = str(tmp_path / "back" / "b.bin")
    storage.copy_file(other, down)
    assert Path(down).read_bytes() == payload
    assert fs.read_bytes(other) == payload
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        storage.copy_file(f"s3://{s3_bucket}/missing.bin", str(tmp_path / "z.bin"))
    assert not (tmp_path / "z.bin").exists()
