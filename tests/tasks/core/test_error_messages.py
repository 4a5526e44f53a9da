"""Error messages name what failed: the S3 bucket and key, the local path, what a non-audio file is.

#14 items 2 and 12: an S3 AccessDenied said neither bucket nor key, "[Errno 28]" named no path, a
text file named .flac was "a sample rate of 0 Hz", a FIFO or a symlink loop "did not exist". S3
refusals are made with botocore's Stubber on the client tasks.core.storage really uses (moto does not
enforce bucket policies); file-system cases are real files (a FIFO, a symlink loop, a size limit).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from tasks.core import audio, storage
from tasks.ingest.corpora.folder import ingest_folder
from tasks.spec import SourceSpec
from tests.tasks.ingest.corpora.test_base import write_tone


@pytest.fixture
def stubbed_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The process's S3 client (tasks.core.storage.s3_client) with a Stubber in front: no network at all."""
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # a client of its own (cache key); never reached
    with Stubber(storage.s3_client()) as stub:
        yield stub
        stub.assert_no_pending_responses()


def _deny(stub: Stubber, method: str) -> None:
    stub.add_client_error(method, service_error_code="AccessDenied", service_message="Access Denied",
                          http_status_code=403)


def test_s3_access_denied_names_bucket_and_key(stubbed_s3: Stubber) -> None:
    _deny(stubbed_s3, "list_objects_v2")
    with pytest.raises(ClientError) as err:
        storage.list_files("s3://corpus-bucket/speech/en")
    assert "AccessDenied" in str(err.value) and "s3://corpus-bucket/speech/en" in str(err.value)
    assert err.value.response["Error"]["Code"] == "AccessDenied"  # still the same error for callers

    _deny(stubbed_s3, "get_object")
    with pytest.raises(ClientError, match=r"s3://corpus-bucket/speech/en/a\.wav"):
        storage.read_bytes("s3://corpus-bucket/speech/en/a.wav")


def test_s3_copy_access_denied_names_both_ends(stubbed_s3: Stubber) -> None:
    _deny(stubbed_s3, "head_object")  # the managed copy asks the source's size first
    with pytest.raises(ClientError) as err:
        storage.copy_file("s3://src-bucket/a.flac", "s3://dst-bucket/out/a.flac")
    assert "s3://src-bucket/a.flac -> s3://dst-bucket/out/a.flac" in str(err.value)


def test_s3_metadata_access_denied_is_one_reject_naming_the_object(stubbed_s3: Stubber) -> None:
    """#14.10: AccessDenied on an S3 metadata.csv failed the build without naming it; the docs promise
    one malformed_metadata reject (and now a note: a warning in the log and on the card)."""
    stubbed_s3.add_response("list_objects_v2", {"Contents": [{"Key": "corpus/metadata.csv", "Size": 10}],
                                                "KeyCount": 1, "IsTruncated": False})
    _deny(stubbed_s3, "get_object")
    result = ingest_folder(SourceSpec(name="lab", kind="folder", path="s3://bkt/corpus"), "en")
    assert result.found == 1 and result.items.empty
    reject = result.rejects.iloc[0]
    assert (reject["input_ref"], reject["reason"]) == ("s3://bkt/corpus/metadata.csv", "malformed_metadata")
    assert "AccessDenied" in reject["detail"] and "s3://bkt/corpus/metadata.csv" in reject["detail"]
    assert len(result.notes) == 1 and "s3://bkt/corpus/metadata.csv" in result.notes[0]


def test_local_write_error_names_the_path(tmp_path: Path) -> None:
    """`[Errno 28] No space left on device` named no path. A file-size limit gives the same kind of
    error (an OSError with no file name) from a real write, in a child process."""
    target = tmp_path / "work" / "big.bin"
    code = (
        "import resource, signal\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "from tasks.core import storage\n"
        "try:\n"
        f"    storage.write_bytes({str(target)!r}, b'x' * 65536)\n"
        "except OSError as err:\n"
        "    print(err)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert "[Errno 27]" in out.stdout and str(target) in out.stdout, out.stdout + out.stderr
    assert not target.exists() and not list(target.parent.iterdir())  # no temp file left behind


def test_non_audio_files_say_what_they_are(tmp_path: Path) -> None:
    text = tmp_path / "notes.flac"
    text.write_text("these are my notes\nnot audio at all\n")
    with pytest.raises(audio.AudioError) as err:
        audio.probe_and_hash(str(text))
    assert err.value.reason == "unsupported_audio"
    assert "is a text file, not audio (it begins 'these are my notes not audio at all')" in str(err.value)
    assert "sample rate" not in str(err.value)

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(audio.AudioError, match=r"is a named pipe \(FIFO\), not a regular audio file"):
        audio.probe_and_hash(str(fifo))  # and it returns: a FIFO is never opened (that would block)

    loop_a, loop_b = tmp_path / "loop_a.wav", tmp_path / "loop_b.wav"
    loop_a.symlink_to(loop_b)
    loop_b.symlink_to(loop_a)
    with pytest.raises(audio.AudioError, match="is a symbolic link loop") as err:
        audio.probe_and_hash(str(loop_a))
    assert err.value.reason == "unreadable_audio"

    dangling = tmp_path / "gone.wav"
    dangling.symlink_to(tmp_path / "deleted.wav")
    with pytest.raises(audio.AudioError, match=r"is a symbolic link to .*deleted\.wav, which does not exist"):
        audio.probe_and_hash(str(dangling))

    zipped = tmp_path / "clip.wav"
    zipped.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(audio.AudioError, match="is a ZIP archive, not audio"):
        audio.probe_and_hash(str(zipped))
    good = write_tone(tmp_path / "ok.flac", 0.5)
    assert audio.probe_and_hash(str(good))[0].sample_rate > 0


def test_folder_ingest_rejects_say_what_odd_files_are(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_tone(root / "a.wav", 0.5)
    (root / "readme.flac").write_text("hello\n")
    os.mkfifo(root / "stream.wav")
    (root / "x.wav").symlink_to(root / "y.wav")
    (root / "y.wav").symlink_to(root / "x.wav")
    result = ingest_folder(SourceSpec(name="lab", kind="folder", path=str(root)), "en")
    details = dict(zip(result.rejects["input_ref"].map(os.path.basename), result.rejects["detail"], strict=True))
    assert "is a text file" in details["readme.flac"]
    assert "named pipe (FIFO)" in details["stream.wav"]
    assert "symbolic link loop" in details["x.wav"] and "symbolic link loop" in details["y.wav"]
    assert len(result.items) == 1
