"""tasks.core.storage on local folders and on a moto S3 server over HTTP."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tasks.core import (
    storage,  # ------------------------------------------------------------------------------------------ URIs
)


def test_uri_helpers() -> None:
    assert storage.is_s3("s3://b/k") and not storage.is_s3("/data/s3://x") and not storage.is_s3("rel/p")
    assert storage.split_s3("s3://bucket/a/b.wav") == ("bucket", "a/b.wav")
    assert storage.split_s3("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        storage.split_s3("/local/path")
    with pytest.raises(ValueError):
        storage.split_s3("s3:///key")
    assert storage.join("s3://b/root/", "a/", "/c.wav") == "s3://b/root/a/c.wav"
    assert storage.join("s3://b", "x") == "s3://b/x"
    assert storage.join("/tmp/root", "a", "c.wav") == os.path.join("/tmp/root", "a", "c.wav")
    assert storage.basename("s3://b/a/c.wav") == "c.wav" and storage.basename("/x/y.txt") == "y.txt"
    assert storage.parent("s3://b/a/c.wav") == "s3://b/a" and storage.parent("s3://b/c.wav") == "s3://b"
    assert storage.relative_to("s3://b/root/a/c.wav", "s3://b/root/") == "a/c.wav"
    assert storage.relative_to("/r/a/c.wav", "/r") == "a/c.wav"
    with pytest.raises(ValueError):
        storage.relative_to("/other/c.wav", "/r")


# ------------------------------------------------------------------------------------------ local
def test_local_round_trip(tmp_path: Path) -> None:
    root = str(tmp_path / "out")
    target = storage.join(root, "deep", "x.txt")
    storage.write_text(target, "héllo")  # parents created
    assert storage.exists(target) and storage.exists(root)
    assert storage.read_text(target) == "héllo"
    assert storage.read_bytes(target) == "héllo".encode()
    assert storage.size(target) == len("héllo".encode())
    storage.write_bytes(target, b"new")  # overwrite in place
    assert storage.read_bytes(target) == b"new"
    assert [p.name for p in Path(target).parent.iterdir()] == ["x.txt"], "no temp files left behind"
    with storage.open_local(target) as path:
        assert path == target and Path(path).read_bytes() == b"new"
    storage.delete(target)
    assert not storage.exists(target)
    storage.delete(target, missing_ok=True)


def test_local_missing_names_uri(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.wav")
    for call in (storage.read_bytes, storage.read_text, storage.size, storage.delete):
        with pytest.raises(FileNotFoundError, match="nope.wav"):
            call(missing)
    with pytest.raises(FileNotFoundError, match="nope.wav"), storage.open_local(missing):
        pass
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        storage.copy_file(missing, str(tmp_path / "dst.wav"))
    with pytest.raises(FileNotFoundError, match="nodir"):
        storage.list_files(str(tmp_path / "nodir"))
    assert not (tmp_path / "dst.wav").exists()


def test_local_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = str(tmp_path / "keep.txt")
    storage.write_text(target, "old")
    with pytest.raises(TypeError):
        storage.write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert storage.read_text(target) == "old"
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


def test_local_list_files(tmp_path: Path) -> None:
    for rel in ("b.WAV", "a.flac", "sub/c.wav", "sub/deeper/d.wav", "notes.txt"):
        storage.write_bytes(str(tmp_path / rel), b"x")
    root = str(tmp_path)
    assert storage.list_files(root, suffixes=(".wav", ".flac")) == sorted(
        os.path.join(root, r) for r in ("a.flac", "b.WAV", "sub/c.wav", "sub/deeper/d.wav")
    )
    assert storage.list_files(root, suffixes=(".wav",), recursive=False) == [os.path.join(root, "b.WAV")]
    assert len(storage.list_files(root)) == 5
    single = os.path.join(root, "a.flac")
    assert storage.list_files(single) == [single]


def test_local_copy_and_makedirs(tmp_path: Path) -> None:
    src = str(tmp_path / "a.bin")
    storage.write_bytes(src, bytes(range(256)))
    dst = str(tmp_path / "x" / "y" / "b.bin")
    storage.copy_file(src, dst)
    assert Path(dst).read_bytes() == bytes(range(256))
    storage.makedirs(str(tmp_path / "m" / "n"))
    assert (tmp_path / "m" / "n").is_dir()


# ------------------------------------------------------------------------------------------ S3


@pytest.mark.aws
def test_s3_round_trip(s3_bucket: str) -> None:
    root = f"s3://{s3_bucket}/data"
    uri = storage.join(root, "sub", "x.txt")
    assert not storage.exists(uri)
    storage.write_text(uri, "héllo")
    assert storage.exists(uri)
    assert storage.exists(root), "a prefix with objects under it exists"
    assert not storage.exists(f"s3://{s3_bucket}/dat"), "a partial name is not a folder"
    assert storage.read_text(uri) == "héllo"
    assert storage.size(uri) == len("héllo".encode())
    with storage.open_local(uri) as path:
        assert path.endswith(".txt") and Path(path).read_text() == "héllo"
        local_copy = path
    assert not os.path.exists(local_copy), "temp download removed on exit"
    storage.makedirs(root)  # no-op, must not fail
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri, missing_ok=True)


@pytest.mark.aws
def test_s3_missing_object_names_uri(s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/nope.wav"
    for call in (storage.read_bytes, storage.size, storage.delete):
        with pytest.raises(FileNotFoundError, match="nope.wav"):
            call(uri)
    with pytest.raises(FileNotFoundError, match="nope.wav"), storage.open_local(uri):
        pass
    with pytest.raises(FileNotFoundError, match="no-such-bucket-x"):
        storage.read_bytes("s3://no-such-bucket-x/k")
    assert not storage.exists("s3://no-such-bucket-x/k")
    assert storage.list_files(f"s3://{s3_bucket}/empty-prefix") == []


@pytest.mark.aws
def test_s3_list_files(s3_bucket: str) -> None:
    root = f"s3://{s3_bucket}/corpus"
    for rel in ("b.WAV", "a.flac", "sub/c.wav", "sub/deeper/d.wav", "notes.txt"):
        storage.write_bytes(storage.join(root, rel), b"x")
    storage.write_bytes(f"s3://{s3_bucket}/corpus2/other.wav", b"x")  # shares the prefix string
    assert storage.list_files(root, suffixes=(".wav", ".flac")) == [
        f"{root}/a.flac",
        f"{root}/b.WAV",
        f"{root}/sub/c.wav",
        f"{root}/sub/deeper/d.wav",
    ]
    assert storage.list_files(root + "/", suffixes=(".wav",), recursive=False) == [f"{root}/b.WAV"]
    assert len(storage.list_files(f"s3://{s3_bucket}")) == 6


@pytest.mark.aws
def test_s3_list_paginates(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "_LIST_PAGE_SIZE", 3)  # 11 keys -> 4 pages over HTTP
    for i in range(11):
        storage.write_bytes(f"s3://{s3_bucket}/many/{i:05d}.wav", b"")
    storage.s3_client().put_object(Bucket=s3_bucket, Key="many/folder/", Body=b"")  # a console "folder"
    with pytest.raises(ValueError, match="key name"):
        storage.write_bytes(f"s3://{s3_bucket}/many/folder/", b"")
    listed = storage.list_files(f"s3://{s3_bucket}/many")
    assert listed == [f"s3://{s3_bucket}/many/{i:05d}.wav" for i in range(11)]


@pytest.mark.aws
def test_copy_between_local_and_s3(s3_bucket: str, tmp_path: Path) -> None:
    payload = os.urandom(70_000)
    local = str(tmp_path / "a.bin")
    storage.write_bytes(local, payload)
    up = f"s3://{s3_bucket}/c/a.bin"
    storage.copy_file(local, up)
    other = f"s3://{s3_bucket}/d/b.bin"
    storage.copy_file(up, other)
    down = str(tmp_path / "back" / "b.bin")
    storage.copy_file(other, down)
    assert Path(down).read_bytes() == payload
    assert storage.read_bytes(other) == payload
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        storage.copy_file(f"s3://{s3_bucket}/missing.bin", str(tmp_path / "z.bin"))
    assert not (tmp_path / "z.bin").exists()


@pytest.mark.aws
def test_s3_client_shared_across_threads(s3_bucket: str) -> None:
    clients: list[object] = []

    def work(i: int) -> None:
        clients.append(storage.s3_client())
        storage.write_text(f"s3://{s3_bucket}/t/{i}.txt", str(i))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in clients}) == 1
    assert [storage.read_text(u) for u in storage.list_files(f"s3://{s3_bucket}/t")] == [
        str(i) for i in range(8)
    ]
    cfg = storage.s3_client().meta.config
    assert cfg.retries["mode"] == "adaptive"
    assert cfg.retries.get("total_max_attempts", cfg.retries.get("max_attempts", 0) + 1) == 11
