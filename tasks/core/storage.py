"""What the pipeline adds to the path layer `manifests.uri`: local copies for decoders, copies, deletes.

`manifests.uri` is the one implementation of URI parsing, joining, existence, reading, writing and
listing for local paths and ``s3://`` URIs (the reader needs it without the pipeline). Stages that
need more import this module: ``open_local`` (a temp download for soundfile/ffmpeg), ``copy_file``
(managed S3 copies and uploads, multipart over 5 GB) and ``delete``. The same S3 client
(`manifests.uri.s3_client`, adaptive retries) and the same error translation (missing object ->
FileNotFoundError naming the URI) serve both.

The path-layer names are re-exported (``__all__``) so modules that still spell them ``storage.join``
keep working; new code imports `manifests.uri` for them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from manifests.uri import (
    S3_SCHEME,
    atomic_local,
    basename,
    exists,
    file_mode,
    head,
    is_missing,
    is_s3,
    join,
    list_files,
    makedirs,
    named_os_error,
    naming,
    not_found,
    open_binary,
    parent,
    read_bytes,
    read_text,
    relative_to,
    s3_client,
    s3_not_found,
    size,
    split_s3,
    write_bytes,
    write_text,
)

# This module's own functions, then the path layer it re-exports for callers that still write `storage.join`.
__all__ = [
    "copy_file", "delete", "open_local",
    "S3_SCHEME", "basename", "exists", "file_mode", "is_s3", "join", "list_files", "makedirs", "named_os_error",
    "open_binary", "parent", "read_bytes", "read_text", "relative_to", "s3_client", "size", "split_s3",
    "write_bytes", "write_text",
]


@contextlib.contextmanager
def open_local(uri: str) -> Iterator[str]:
    """A local filesystem path for ``uri``, for decoders that need one (soundfile, ffmpeg).

    Local paths are yielded as they are; S3 objects are downloaded to a temp file with the same
    suffix (decoders guess formats from it) that is removed on exit.
    """
    if not is_s3(uri):
        if not os.path.isfile(uri):
            raise not_found(uri)
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
    with s3_not_found(uri):
        s3_client().download_file(bucket, key, path)


def delete(uri: str, missing_ok: bool = False) -> None:
    """Remove one file or object; a missing one raises FileNotFoundError unless ``missing_ok``."""
    if is_s3(uri):
        try:
            head(uri)
        except FileNotFoundError:
            if missing_ok:
                return
            raise
        bucket, key = split_s3(uri)
        with s3_not_found(uri):
            s3_client().delete_object(Bucket=bucket, Key=key)
        return
    try:
        os.remove(uri)
    except FileNotFoundError:
        if not missing_ok:
            raise not_found(uri) from None


def delete_tree(uri: str) -> None:
    """Remove a folder and everything under it (every object under the prefix on S3); absent is fine."""
    if is_s3(uri):
        for key in list_files(uri):
            delete(key, missing_ok=True)
        return
    shutil.rmtree(uri, ignore_errors=True)


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
            if is_missing(err):
                raise not_found(src_uri) from None
            raise naming(err, f"{src_uri} -> {dst_uri}") from err  # the refusal may be on either end
        return
    if is_s3(dst_uri):
        if not os.path.isfile(src_uri):
            raise not_found(src_uri)
        dst_bucket, dst_key = split_s3(dst_uri)
        with s3_not_found(dst_uri):
            s3_client().upload_file(src_uri, dst_bucket, dst_key)
        return
    with atomic_local(dst_uri) as (fd, tmp):
        os.close(fd)
        if is_s3(src_uri):
            _download(src_uri, tmp)
        else:
            if not os.path.isfile(src_uri):
                raise not_found(src_uri)
            shutil.copyfile(src_uri, tmp)
