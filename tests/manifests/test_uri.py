"""manifests.uri, the one path layer (reader and pipeline), on local folders and on a moto S3 server over HTTP."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from manifests import uri as fs


def test_uri_helpers() -> None:
    assert fs.is_s3("s3://b/k") and not fs.is_s3("/data/s3://x") and not fs.is_s3("rel/p")
    assert fs.split_s3("s3://bucket/a/b.wav") == ("bucket", "a/b.wav")
    assert fs.split_s3("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError):
        fs.split_s3("/local/path")
    with pytest.raises(ValueError):
        fs.split_s3("s3:///key")
    assert fs.join("s3://b/root/", "a/", "/c.wav") == "s3://b/root/a/c.wav"
    assert fs.join("s3://b", "x") == "s3://b/x"
    assert fs.join("s3://b/x", "") == "s3://b/x", "an empty part adds nothing"
    assert fs.join("/tmp/root", "a", "c.wav") == os.path.join("/tmp/root", "a", "c.wav")
    assert fs.basename("s3://b/a/c.wav") == "c.wav" and fs.basename("/x/y.txt") == "y.txt"
    assert fs.parent("s3://b/a/c.wav") == "s3://b/a" and fs.parent("s3://b/c.wav") == "s3://b"
    assert fs.relative_to("s3://b/root/a/c.wav", "s3://b/root/") == "a/c.wav"
    assert fs.relative_to("/r/a/c.wav", "/r") == "a/c.wav"
    with pytest.raises(ValueError):
        fs.relative_to("/other/c.wav", "/r")


# ------------------------------------------------------------------------------------------ local
def test_local_round_trip(tmp_path: Path) -> None:
    root = str(tmp_path / "out")
    target = fs.join(root, "deep", "x.txt")
    fs.write_text(target, "héllo")  # parents created
    assert fs.exists(target) and fs.exists(root)
    assert fs.read_text(target) == "héllo"
    assert fs.read_bytes(target) == "héllo".encode()
    assert fs.size(target) == len("héllo".encode())
    fs.write_bytes(target, b"new")  # overwrite in place
    assert fs.read_bytes(target) == b"new"
    assert [p.name for p in Path(target).parent.iterdir()] == ["x.txt"], "no temp files left behind"
    assert fs.list_prefix(root) == ["deep"] and fs.list_prefix(str(tmp_path / "none")) == []
    fs.makedirs(str(tmp_path / "m" / "n"))
    assert (tmp_path / "m" / "n").is_dir()


def test_local_missing_names_uri(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.wav")
    for call in (fs.read_bytes, fs.read_text, fs.size):
        with pytest.raises(FileNotFoundError, match="nope.wav"):
            call(missing)
    with pytest.raises(FileNotFoundError, match="nodir"):
        fs.list_files(str(tmp_path / "nodir"))
    with pytest.raises(FileNotFoundError, match="no such file or object"):
        fs.read_bytes(str(tmp_path))  # a folder is not a file to read


def test_local_write_failure_keeps_old_file(tmp_path: Path) -> None:
    target = str(tmp_path / "keep.txt")
    fs.write_text(target, "old")
    with pytest.raises(TypeError):
        fs.write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert fs.read_text(target) == "old"
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]


def test_local_list_files(tmp_path: Path) -> None:
    for rel in ("b.WAV", "a.flac", "sub/c.wav", "sub/deeper/d.wav", "notes.txt"):
        fs.write_bytes(str(tmp_path / rel), b"x")
    root = str(tmp_path)
    assert fs.list_files(root, suffixes=(".wav", ".flac")) == sorted(
        os.path.join(root, r) for r in ("a.flac", "b.WAV", "sub/c.wav", "sub/deeper/d.wav")
    )
    assert fs.list_files(root, suffixes=(".wav",), recursive=False) == [os.path.join(root, "b.WAV")]
    assert len(fs.list_files(root)) == 5
    single = os.path.join(root, "a.flac")
    assert fs.list_files(single) == [single]


# ------------------------------------------------------------------------------------------ S3
@pytest.mark.aws
def test_s3_round_trip(s3_bucket: str) -> None:
    root = f"s3://{s3_bucket}/data"
    uri = fs.join(root, "sub", "x.txt")
    assert not fs.exists(uri)
    fs.write_text(uri, "héllo")
    assert fs.exists(uri)
    assert fs.exists(root), "a prefix with objects under it exists"
    assert not fs.exists(f"s3://{s3_bucket}/dat"), "a partial name is not a folder"
    assert fs.read_text(uri) == "héllo"
    assert fs.size(uri) == len("héllo".encode())
    assert fs.list_prefix(root) == ["sub"] and fs.list_prefix(fs.join(root, "sub")) == ["x.txt"]
    fs.makedirs(root)  # no-op, must not fail


@pytest.mark.aws
def test_s3_missing_object_names_uri(s3_bucket: str) -> None:
    uri = f"s3://{s3_bucket}/nope.wav"
    for call in (fs.read_bytes, fs.size):
        with pytest.raises(FileNotFoundError, match="nope.wav"):
            call(uri)
    with pytest.raises(FileNotFoundError, match="no-such-bucket-x"):
        fs.read_bytes("s3://no-such-bucket-x/k")
    assert not fs.exists("s3://no-such-bucket-x/k")
    assert fs.list_files(f"s3://{s3_bucket}/empty-prefix") == []


@pytest.mark.aws
def test_s3_list_files(s3_bucket: str) -> None:
    root = f"s3://{s3_bucket}/corpus"
    for rel in ("b.WAV", "a.flac", "sub/c.wav", "sub/deeper/d.wav", "notes.txt"):
        fs.write_bytes(fs.join(root, rel), b"x")
    fs.write_bytes(f"s3://{s3_bucket}/corpus2/other.wav", b"x")  # shares the prefix string
    assert fs.list_files(root, suffixes=(".wav", ".flac")) == [
        f"{root}/a.flac",
        f"{root}/b.WAV",
        f"{root}/sub/c.wav",
        f"{root}/sub/deeper/d.wav",
    ]
    assert fs.list_files(root + "/", suffixes=(".wav",), recursive=False) == [f"{root}/b.WAV"]
    assert len(fs.list_files(f"s3://{s3_bucket}")) == 6


@pytest.mark.aws
def test_s3_list_paginates(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs, "_LIST_PAGE_SIZE", 3)  # 11 keys -> 4 pages over HTTP
    for i in range(11):
        fs.write_bytes(f"s3://{s3_bucket}/many/{i:05d}.wav", b"")
    fs.s3_client().put_object(Bucket=s3_bucket, Key="many/folder/", Body=b"")  # a console "folder"
    with pytest.raises(ValueError, match="key name"):
        fs.write_bytes(f"s3://{s3_bucket}/many/folder/", b"")
    listed = fs.list_files(f"s3://{s3_bucket}/many")
    assert listed == [f"s3://{s3_bucket}/many/{i:05d}.wav" for i in range(11)]


@pytest.mark.aws
def test_s3_client_shared_across_threads(s3_bucket: str) -> None:
    clients: list[object] = []

    def work(i: int) -> None:
        clients.append(fs.s3_client())
        fs.write_text(f"s3://{s3_bucket}/t/{i}.txt", str(i))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in clients}) == 1
    assert [fs.read_text(u) for u in fs.list_files(f"s3://{s3_bucket}/t")] == [str(i) for i in range(8)]
    cfg = fs.s3_client().meta.config
    assert cfg.retries["mode"] == "adaptive"
    assert cfg.retries.get("total_max_attempts", cfg.retries.get("max_attempts", 0) + 1) == 11
