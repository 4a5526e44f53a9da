"""Local paths and ``s3://bucket/key`` URIs behind one small interface: parse, join, exist, read, write, list.

The one path layer of the repository: the manifest reader and writer use it, and so does every
pipeline stage (`tasks.core.storage` adds only what the pipeline alone needs: local copies for
decoders, managed copies and uploads, deletes). It lives in `manifests/` because a training job
installs only this package. Writes are atomic: a reader never sees half a file (locally a temp
file in the same folder is fsynced and ``os.replace``d into place; on S3 a single PUT is atomic). A
missing file or object raises ``FileNotFoundError`` naming the URI; other S3 errors name it too.

boto3 is imported lazily and configured from the standard chain, so ``AWS_ENDPOINT_URL`` (a moto
server in tests, MinIO, ...) and the usual credential variables work without code changes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

S3_SCHEME = "s3://"

_LIST_PAGE_SIZE = 1000  # S3's maximum keys per ListObjectsV2 page
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


# --------------------------------------------------------------------------------------------- URIs
def is_s3(uri: str) -> bool:
    """True for ``s3://`` URIs; everything else is a local path."""
    return uri.startswith(S3_SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``; the key may be empty for a bucket root."""
    if not is_s3(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI has no bucket name: {uri!r}")
    return bucket, key


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or an S3 URI (``/`` separators inside parts are kept)."""
    if not is_s3(base):
        return os.path.join(base, *parts)
    out = base.rstrip("/")
    for part in parts:
        part = part.strip("/")
        if part:
            out = f"{out}/{part}"
    return out


def basename(uri: str) -> str:
    """The last path component (file name) of a local path or S3 URI."""
    return uri.rstrip("/").rsplit("/", 1)[-1] if is_s3(uri) else os.path.basename(uri.rstrip(os.sep))


def parent(uri: str) -> str:
    """The folder holding ``uri`` (``s3://bucket`` for a top-level object)."""
    if not is_s3(uri):
        return os.path.dirname(uri.rstrip(os.sep))
    head = uri.rstrip("/").rsplit("/", 1)[0]
    return head if len(head) > len(S3_SCHEME) else uri.rstrip("/")


def relative_to(uri: str, base: str) -> str:
    """``uri`` relative to folder ``base``, with ``/`` separators (for metadata file names)."""
    if is_s3(uri) != is_s3(base):
        raise ValueError(f"{uri!r} and {base!r} are not the same kind of location")
    if is_s3(uri):
        prefix = base.rstrip("/") + "/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri!r} is not inside {base!r}")
        return uri[len(prefix) :]
    rel = os.path.relpath(uri, base)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep):
        raise ValueError(f"{uri!r} is not inside {base!r}")
    return rel.replace(os.sep, "/")


# ------------------------------------------------------------------------------------------- client
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

    One per endpoint/credential environment, shared by the reader and every pipeline stage.
    Creation is locked and uses its own boto3 Session, because boto3's default session is not
    thread-safe and the flow's tasks run in threads.
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


_client = s3_client  # the name older callers use


def is_missing(err: Exception) -> bool:
    """True for S3's "no such key/bucket" errors (a missing file, as FileNotFoundError is locally)."""
    code = str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))
    return code in _MISSING_CODES


def not_found(uri: str) -> FileNotFoundError:
    """The FileNotFoundError every function here raises for a missing file or object."""
    return FileNotFoundError(f"no such file or object: {uri}")


def naming(err: Exception, uri: str) -> Exception:
    """A botocore ClientError whose message names `uri`: "AccessDenied ... ListObjectsV2" alone does not
    say which bucket or key was refused. Same class and code, so callers handle it as before."""
    from botocore.exceptions import ClientError

    if not isinstance(err, ClientError) or uri in str(err):
        return err
    response = dict(err.response)
    error = dict(response.get("Error") or {})
    error["Message"] = f"{error.get('Message') or error.get('Code') or 'error'} (on {uri})"
    response["Error"] = error
    return type(err)(response, err.operation_name)


@contextlib.contextmanager
def s3_not_found(uri: str) -> Iterator[None]:
    """S3's "no such key/bucket" errors inside the block become FileNotFoundError(uri), as for a local
    file, so callers handle one exception; every other S3 error is re-raised naming `uri`."""
    s3_client()  # without boto3 this raises the "needs boto3" ImportError, before botocore is imported
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as err:
        if is_missing(err):
            raise not_found(uri) from None
        raise naming(err, uri) from err


def head(uri: str) -> dict[str, Any]:
    """The HEAD response of an S3 object (FileNotFoundError when there is none)."""
    bucket, key = split_s3(uri)
    if not key:
        raise not_found(uri)
    with s3_not_found(uri):
        return s3_client().head_object(Bucket=bucket, Key=key)


# ------------------------------------------------------------------------------------------ reading
def exists(uri: str) -> bool:
    """True if a file/folder exists locally, or an S3 object or any object under ``uri/`` exists."""
    if not is_s3(uri):
        return os.path.exists(uri)
    try:
        head(uri)
        return True
    except FileNotFoundError:
        pass
    from botocore.exceptions import ClientError

    bucket, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    try:
        resp = s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as err:
        if is_missing(err):
            return False
        raise naming(err, uri) from err
    return resp.get("KeyCount", 0) > 0


@contextlib.contextmanager
def open_binary(uri: str) -> Iterator[IO[bytes]]:
    """A readable binary stream; S3 bodies stream, so large files can be hashed without loading."""
    if not is_s3(uri):
        try:
            fh = open(uri, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise not_found(uri) from None
        with fh:
            yield fh
        return
    bucket, key = split_s3(uri)
    with s3_not_found(uri):
        body = s3_client().get_object(Bucket=bucket, Key=key)["Body"]
    try:
        yield body
    finally:
        body.close()


def read_bytes(uri: str) -> bytes:
    """The whole file or object."""
    with open_binary(uri) as fh:
        return fh.read()


def read_text(uri: str, encoding: str = "utf-8") -> str:
    """The whole file or object decoded as text."""
    return read_bytes(uri).decode(encoding)


def size(uri: str) -> int:
    """Size in bytes."""
    if is_s3(uri):
        return int(head(uri)["ContentLength"])
    try:
        if os.path.isdir(uri):
            raise IsADirectoryError(f"is a folder, not a file: {uri}")
        return os.path.getsize(uri)
    except FileNotFoundError:
        raise not_found(uri) from None


def list_files(uri: str, suffixes: tuple[str, ...] | None = None, recursive: bool = True) -> list[str]:
    """Files under folder ``uri`` as full paths/URIs, sorted.

    ``suffixes`` match case-insensitively (``(".wav", ".flac")``). A missing local folder raises
    FileNotFoundError; an S3 prefix with no objects is simply empty (S3 has no folders). A local
    ``uri`` naming a file lists just that file.
    """
    wanted = tuple(s.lower() for s in suffixes) if suffixes else None

    def keep(name: str) -> bool:
        return wanted is None or name.lower().endswith(wanted)

    if is_s3(uri):
        return sorted(u for u in _list_s3(uri, recursive) if keep(u))
    if os.path.isfile(uri):
        return [uri] if keep(uri) else []
    if not os.path.isdir(uri):
        raise not_found(uri)
    out: list[str] = []
    if recursive:
        for root, dirs, files in os.walk(uri):
            dirs.sort()
            out.extend(os.path.join(root, f) for f in files if keep(f))
    else:
        with os.scandir(uri) as entries:
            out.extend(e.path for e in entries if e.is_file() and keep(e.name))
    return sorted(out)


def _list_s3(uri: str, recursive: bool) -> Iterator[str]:
    bucket, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key.strip("/") else ""
    kwargs: dict[str, Any] = {
        "Bucket": bucket,
        "Prefix": prefix,
        "PaginationConfig": {"PageSize": _LIST_PAGE_SIZE},
    }
    if not recursive:
        kwargs["Delimiter"] = "/"
    with s3_not_found(uri):
        for page in s3_client().get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):  # skip zero-byte "folder" markers
                    yield f"{S3_SCHEME}{bucket}/{obj['Key']}"


def list_prefix(uri: str) -> list[str]:
    """Immediate children names (files and folders) of a folder or S3 prefix."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        names: set[str] = set()
        paginator = s3_client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
            for cp in page.get("CommonPrefixes", []):
                names.add(cp["Prefix"][len(prefix) :].rstrip("/"))
            for obj in page.get("Contents", []):
                names.add(obj["Key"][len(prefix) :])
        return sorted(n for n in names if n)
    path = Path(uri)
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []


# ------------------------------------------------------------------------------------------ writing
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


def named_os_error(err: OSError, path: str) -> OSError:
    """`err` naming `path` when it names no file: a bare "[Errno 28] No space left on device" does not
    say which disk filled up."""
    if err.filename is not None or err.errno is None:
        return err
    return OSError(err.errno, err.strerror, path)  # OSError picks the subclass for the errno


def makedirs(uri: str) -> None:
    """Create a local folder and its parents; S3 has no folders, so nothing to do there."""
    if not is_s3(uri):
        os.makedirs(uri, exist_ok=True)


@contextlib.contextmanager
def atomic_local(path: str) -> Iterator[tuple[int, str]]:
    """(fd, tmp) of a temp file beside `path`; when the block succeeds, tmp is given `file_mode()`
    (release files are read by training jobs running as other users) and renamed onto `path` in
    one step, so a reader never sees half a file; when it fails, tmp is removed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        yield fd, tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(err, OSError):  # "[Errno 28] No space left on device" names no file by itself
            raise named_os_error(err, path) from err
        raise


def write_bytes(uri: str, data: bytes) -> None:
    """Write atomically (a reader sees the old content or the new), creating local parent folders."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        if not key or key.endswith("/"):
            raise ValueError(f"cannot write an object without a key name: {uri!r}")
        with s3_not_found(uri):
            s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    with atomic_local(uri) as (fd, _), os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(uri: str, text: str, encoding: str = "utf-8") -> None:
    """Write text atomically."""
    write_bytes(uri, text.encode(encoding))
