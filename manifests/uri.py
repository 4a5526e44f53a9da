"""Minimal local/S3 byte access for the manifest reader and writer.

`manifests/` must work in a training job that has only this package, so it does not import the
pipeline's `tasks.core.storage`; it needs just enough to read and write whole objects. boto3 is imported
lazily and configured from the standard chain (so `AWS_ENDPOINT_URL` works).
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    rest = uri[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"not an s3 URI with a bucket: {uri!r}")
    return bucket, key


def join(base: str, *parts: str) -> str:
    if is_s3(base):
        out = base.rstrip("/")
        for part in parts:
            out = f"{out}/{part.strip('/')}"
        return out
    return str(Path(base, *parts))


# Environment variables that change which endpoint/credentials a client talks to. The cached client
# is keyed on them so a test (or a process) that changes them gets a matching client.
_CLIENT_ENV_KEYS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
)
_client_lock = threading.Lock()
_clients: dict[tuple[str | None, ...], Any] = {}


def s3_client() -> Any:
    """The process's S3 client (botocore clients are thread-safe), with adaptive retries.

    One per endpoint/credential environment, shared by the manifest reader/writer and the pipeline's
    `tasks.core.storage`. Creation is locked and uses its own boto3 Session, because boto3's default
    session is not thread-safe and the flow's tasks run in threads.
    """
    env_key = tuple(os.environ.get(k) for k in _CLIENT_ENV_KEYS)
    client = _clients.get(env_key)
    if client is not None:
        return client
    with _client_lock:
        client = _clients.get(env_key)
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as err:  # the reader install leaves boto3 out (docs/training.md)
                raise ImportError(
                    "reading or writing s3:// URIs needs boto3, which this install does not have: "
                    "pip install 'voicetone-reader[s3]' (or boto3)"
                ) from err

            config = Config(retries={"mode": "adaptive", "max_attempts": 10})
            client = boto3.session.Session().client("s3", config=config)
            _clients[env_key] = client
    return client


_client = s3_client  # the name this module's functions (and manifests/audio_io.py) use


def read_bytes(uri: str) -> bytes:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            return _client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except _client().exceptions.NoSuchKey:
            raise FileNotFoundError(f"no such object: {uri}") from None
    try:
        return Path(uri).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {uri}") from None


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc).

    `os.umask` can only be read by setting it, which races with other threads creating files; the
    fallback does that under a lock, for the instant it takes.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode `open()` would give a new file: 0666 less the umask (mkstemp alone gives 0600)."""
    return 0o666 & ~current_umask()


def write_bytes(uri: str, data: bytes) -> None:
    """Write atomically: a reader sees the old content or the new, never a partial file.

    Locally the file gets the umask's mode (`file_mode`), like any file a program creates: release
    files are read by training jobs running as other users.
    """
    if is_s3(uri):
        bucket, key = split_s3(uri)
        _client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise named_os_error(err, str(path)) from err
        raise


def named_os_error(err: OSError, path: str) -> OSError:
    """`err` naming `path` when it names no file: a bare "[Errno 28] No space left on device" does not
    say which disk filled up."""
    if err.filename is not None or err.errno is None:
        return err
    return OSError(err.errno, err.strerror, path)  # OSError picks the subclass for the errno


def exists(uri: str) -> bool:
    if is_s3(uri):
        bucket, key = split_s3(uri)
        try:
            _client().head_object(Bucket=bucket, Key=key)
            return True
        except Exception as err:  # botocore ClientError 404
            code = getattr(err, "response", {}).get("Error", {}).get("Code")
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
    return Path(uri).exists()


def list_prefix(uri: str) -> list[str]:
    """Immediate children names (files and folders) of a folder or S3 prefix."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        names: set[str] = set()
        paginator = _client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for cp in page.get("CommonPrefixes", []):
                names.add(cp["Prefix"][len(prefix) :].rstrip("/"))
            for obj in page.get("Contents", []):
                names.add(obj["Key"][len(prefix) :])
        return sorted(n for n in names if n)
    path = Path(uri)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []
