"""Local paths and ``s3://bucket/key`` URIs behind one small interface.

Every stage reads inputs and writes outputs through this module, so a dataset spec can point its
sources or its output at either kind of location without the stage knowing. Writes are atomic: a
reader never sees half a file (locally a temp file in the same folder is ``os.replace``d into place;
on S3 a single PUT is atomic). A missing file or object raises ``FileNotFoundError`` naming the URI.

The S3 client uses boto3's standard configuration chain, so ``AWS_ENDPOINT_URL`` (a moto server in
tests, MinIO, ...) and the usual credential variables work without code changes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from manifests.uri import (
    file_mode,  # files get the umask's mode, as manifests/ writes them
    named_os_error,
    s3_client,  # one client factory for the pipeline and the manifest reader/writer
)

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
def _is_missing(err: Exception) -> bool:
    code = str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))
    return code in _MISSING_CODES


def _missing(uri: str) -> FileNotFoundError:
    return FileNotFoundError(f"no such file or object: {uri}")


def _naming(err: Exception, uri: str) -> Exception:
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
def _s3_not_found(uri: str) -> Iterator[None]:
    """S3's "no such key/bucket" errors inside the block become FileNotFoundError(uri), as for a local
    file, so callers handle one exception; every other S3 error is re-raised naming `uri`."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as err:
        if _is_missing(err):
            raise _missing(uri) from None
        raise _naming(err, uri) from err


def _head(uri: str) -> dict[str, Any]:
    bucket, key = split_s3(uri)
    if not key:
        raise _missing(uri)
    with _s3_not_found(uri):
        return s3_client().head_object(Bucket=bucket, Key=key)


# ------------------------------------------------------------------------------------------ reading
def exists(uri: str) -> bool:
    """True if a file/folder exists locally, or an S3 object or any object under ``uri/`` exists."""
    if not is_s3(uri):
        return os.path.exists(uri)
    try:
        _head(uri)
        return True
    except FileNotFoundError:
        pass
    from botocore.exceptions import ClientError

    bucket, key = split_s3(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    try:
        resp = s3_client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except ClientError as err:
        if _is_missing(err):
            return False
        raise _naming(err, uri) from err
    return resp.get("KeyCount", 0) > 0


@contextlib.contextmanager
def open_binary(uri: str) -> Iterator[IO[bytes]]:
    """A readable binary stream; S3 bodies stream, so large files can be hashed without loading."""
    if not is_s3(uri):
        try:
            fh = open(uri, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise _missing(uri) from None
        with fh:
            yield fh
        return
    bucket, key = split_s3(uri)
    with _s3_not_found(uri):
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
        return int(_head(uri)["ContentLength"])
    try:
        if os.path.isdir(uri):
            raise IsADirectoryError(f"is a folder, not a file: {uri}")
        return os.path.getsize(uri)
    except FileNotFoundError:
        raise _missing(uri) from None


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
        raise _missing(uri)
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
    with _s3_not_found(uri):
        for page in s3_client().get_paginator("list_objects_v2").paginate(**kwargs):
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):  # skip zero-byte "folder" markers
                    yield f"{S3_SCHEME}{bucket}/{obj['Key']}"


@contextlib.contextmanager
def open_local(uri: str) -> Iterator[str]:
    """A local filesystem path for ``uri``, for decoders that need one (soundfile, ffmpeg).

    Local paths are yielded as they are; S3 objects are downloaded to a temp file with the same
    suffix (decoders guess formats from it) that is removed on exit.
    """
    if not is_s3(uri):
        if not os.path.isfile(uri):
            raise _missing(uri)
        yield uri
        return
    suffix = os.path.splitext(split_s3(uri)[1])[1]
    fd, tmp = tempfile.mkstemp(prefix="voicetone-", suffix=suffix)
    os.close(fd)
    try:
        _download(uri, tmp)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _download(uri: str, path: str) -> None:
    bucket, key = split_s3(uri)
    with _s3_not_found(uri):
        s3_client().download_file(bucket, key, path)


# ------------------------------------------------------------------------------------------ writing
def makedirs(uri: str) -> None:
    """Create a local folder and its parents; S3 has no folders, so nothing to do there."""
    if not is_s3(uri):
        os.makedirs(uri, exist_ok=True)


@contextlib.contextmanager
def _atomic_local(path: str) -> Iterator[tuple[int, str]]:
    """(fd, tmp) of a temp file beside `path`; when the block succeeds, tmp (0666 less the umask, as
    `open` would make it; mkstemp alone gives 0600) is renamed onto
    `path` in one step, so a reader never sees half a file; when it fails, tmp is removed."""
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
    """Write atomically, creating local parent folders as needed."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        if not key or key.endswith("/"):
            raise ValueError(f"cannot write an object without a key name: {uri!r}")
        with _s3_not_found(uri):
            s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    with _atomic_local(uri) as (fd, _), os.fdopen(fd, "wb") as fh:
        fh.write(data)


def write_text(uri: str, text: str, encoding: str = "utf-8") -> None:
    """Write text atomically."""
    write_bytes(uri, text.encode(encoding))


def delete(uri: str, missing_ok: bool = False) -> None:
    """Remove one file or object; a missing one raises FileNotFoundError unless ``missing_ok``."""
    if is_s3(uri):
        try:
            _head(uri)
        except FileNotFoundError:
            if missing_ok:
                return
            raise
        bucket, key = split_s3(uri)
        with _s3_not_found(uri):
            s3_client().delete_object(Bucket=bucket, Key=key)
        return
    try:
        os.remove(uri)
    except FileNotFoundError:
        if not missing_ok:
            raise _missing(uri) from None


def copy_file(src_uri: str, dst_uri: str) -> None:
    """Copy one file between any two locations (local or S3, either way); atomic at the destination."""
    if is_s3(src_uri) and is_s3(dst_uri):
        src_bucket, src_key = split_s3(src_uri)
        dst_bucket, dst_key = split_s3(dst_uri)
        from botocore.exceptions import ClientError

        try:
            # Managed copy: switches to multipart for objects over 5 GB, unlike copy_object.
            s3_client().copy({"Bucket": src_bucket, "Key": src_key}, dst_bucket, dst_key)
        except ClientError as err:
            if _is_missing(err):
                raise _missing(src_uri) from None
            raise _naming(err, f"{src_uri} -> {dst_uri}") from err  # the refusal may be on either end
        return
    if is_s3(dst_uri):
        if not os.path.isfile(src_uri):
            raise _missing(src_uri)
        dst_bucket, dst_key = split_s3(dst_uri)
        with _s3_not_found(dst_uri):
            s3_client().upload_file(src_uri, dst_bucket, dst_key)
        return
    with _atomic_local(dst_uri) as (fd, tmp):
        os.close(fd)
        if is_s3(src_uri):
            _download(src_uri, tmp)
        else:
            if not os.path.isfile(src_uri):
                raise _missing(src_uri)
            shutil.copyfile(src_uri, tmp)
