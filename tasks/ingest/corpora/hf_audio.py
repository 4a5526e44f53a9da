"""The audio of a Hugging Face Audio cell as a URI the pipeline reads: a file in the folder, or cached bytes.

A cell is ``{bytes, path}`` (never decoded by `datasets`). The file at `path` is used when it lies
inside the dataset folder (or a declared audio root, or anywhere with `allow_absolute_paths`); a path
leaving the folder without embedded bytes is an `unsafe_path` reject. Otherwise the embedded bytes are
written once to a content-addressed cache ``<audio_cache>/<sha[:2]>/<sha>.<ext>``, the suffix taken
from the path or from the bytes' magic number. Used by `tasks.ingest.corpora.hf_dataset`.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from typing import Any

from manifests import uri as fs
from tasks.ingest.corpora.base import AUDIO_SUFFIXES, RowReject
from tasks.ingest.corpora.paths import (
    UnsafePathError,
    absolute_audio_path,
    safe_relative_path,
    symlink_escape,
)

# Magic bytes -> suffix, for embedded audio whose path gives no usable suffix.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"RIFF", ".wav"), (0, b"fLaC", ".flac"), (0, b"OggS", ".ogg"), (0, b"ID3", ".mp3"),
    (0, b"\xff\xfb", ".mp3"), (0, b"\xff\xf3", ".mp3"), (0, b"\xff\xf2", ".mp3"), (4, b"ftyp", ".m4a"),
    (0, b"\x1a\x45\xdf\xa3", ".webm"),
)


def is_dataset_folder(root: str) -> bool:
    """A folder (save_to_disk or Parquet files below it), not a single .parquet file."""
    return not root.lower().endswith(".parquet")


def _suffix(path: str | None, data: bytes) -> str:
    ext = posixpath.splitext(path or "")[1].lower()
    if ext in AUDIO_SUFFIXES:
        return ext
    for offset, magic, suffix in _MAGIC:
        if data[offset: offset + len(magic)] == magic:
            return suffix
    return ".bin"


class AudioResolver:
    """Turns an Audio cell into a URI tasks.core.audio can read, writing embedded bytes to the cache once."""

    def __init__(self, root: str, cache: str, listing: set[str], allow_absolute: bool = False,
                 audio_roots: tuple[str, ...] = ()) -> None:
        self.root, self.cache, self.listing, self.allow_absolute = root, cache, listing, allow_absolute
        self.audio_roots = audio_roots
        self.written: set[str] = set()

    def _existing(self, path: str) -> str | None:
        """The file `path` names inside the root, or None; UnsafePathError when it would leave the root."""
        root = self.root.rstrip("/")
        if self.allow_absolute and os.path.isabs(path) and not fs.is_s3(root):
            return path if os.path.isfile(path) else None
        if path.startswith("/"):  # allowed below the dataset folder or a declared audio root (docs/corpora.md)
            base, path = absolute_audio_path(path, root, self.audio_roots, "audio path")
            if base != root:
                escape = symlink_escape(base, path)
                if escape is not None:
                    raise UnsafePathError(f"audio path {path!r} is a symlink to {escape}, outside {base}")
                return path if os.path.isfile(path) else None
        rel = safe_relative_path(path, "audio path")
        if not is_dataset_folder(self.root):
            return None
        uri = fs.join(self.root, rel)
        if not (uri in self.listing or (not fs.is_s3(uri) and os.path.isfile(uri))):
            return None
        escape = symlink_escape(self.root, uri)
        if escape is not None:
            raise UnsafePathError(f"audio path {path!r} is a symlink to {escape}, outside the dataset folder")
        return uri

    def __call__(self, cell: Any) -> str:
        if isinstance(cell, str):
            cell = {"path": cell, "bytes": None}
        if not isinstance(cell, dict):
            raise RowReject("missing_audio", "the audio cell is empty")
        path, data = cell.get("path"), cell.get("bytes")
        if path:
            try:
                found = self._existing(str(path))
            except UnsafePathError as err:  # with embedded bytes the path is only a name: use the bytes
                if data is None:
                    raise RowReject(err.reason, f"{err}; no bytes are embedded") from None
                found = None
            if found is not None:
                return found
        if data is None:
            where = f"its path {path!r} does not exist" if path else "it has neither a path nor bytes"
            raise RowReject("missing_audio", f"the audio cannot be read: {where} and no bytes are embedded")
        if len(data) == 0:
            raise RowReject("empty_audio", f"the embedded audio ({path or 'no path'}) is 0 bytes")
        sha = hashlib.sha256(data).hexdigest()
        uri = fs.join(self.cache, sha[:2], f"{sha}{_suffix(path, data)}")
        if uri not in self.written:
            if not fs.exists(uri):
                fs.makedirs(fs.parent(uri))
                fs.write_bytes(uri, data)
            self.written.add(uri)
        return uri
