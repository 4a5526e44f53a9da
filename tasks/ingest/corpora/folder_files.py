"""Which audio file a `folder` source's metadata row names, spelled as it is on disk, and its native id.

A `file_name` is relative to the folder, or absolute below the folder or a declared audio root; one
leaving them is an `unsafe_path` reject. A name that differs from a file only in Unicode
normalisation or letter case names that file. Used by `tasks.ingest.corpora.folder`.
"""

from __future__ import annotations

import os
import posixpath
import re
import unicodedata
from functools import lru_cache

from manifests import uri as fs
from tasks.ingest.corpora.base import RowReject, is_audio_file
from tasks.ingest.corpora.paths import UnsafePathError, absolute_audio_path, relative_path

_WINDOWS_ABSOLUTE = re.compile(r"^[A-Za-z]:[\\/]")


def resolve_file_name(file_name: str | None, root: str = "", audio_roots: tuple[str, ...] = ()) -> str:
    """The normalised path a row names: relative to the folder, or absolute below a declared audio root
    (an absolute path below the folder itself becomes relative); names that leave them are refused."""
    if file_name is None:
        raise RowReject("malformed_metadata", "file_name is empty")
    name = file_name.strip()
    if name.startswith("/") and root:
        try:
            base, name = absolute_audio_path(name, root, audio_roots)
        except UnsafePathError as err:
            raise RowReject(err.reason, str(err)) from None
        if base != root:
            return name  # absolute, below a declared audio root
    if name.startswith(("/", "\\")) or "://" in name or _WINDOWS_ABSOLUTE.match(name):
        raise RowReject("unsafe_path", f"file_name {file_name!r} is absolute; it must be relative to the folder")
    rel = posixpath.normpath(name)
    if rel == ".." or rel.startswith("../"):
        raise RowReject("unsafe_path", f"file_name {file_name!r} points outside the folder")
    if rel == ".":
        raise RowReject("malformed_metadata", f"file_name {file_name!r} names the folder itself, not a file")
    return rel


def file_lookup(root: str, files: list[str]) -> dict[str, list[str]]:
    """NFC + case-folded relative path -> the relative paths on disk with that key."""
    lookup: dict[str, list[str]] = {}
    for f in files:
        rel = relative_path(root, f)
        lookup.setdefault(unicodedata.normalize("NFC", rel).casefold(), []).append(rel)
    return lookup


def on_disk(rel: str, present_rels: set[str], lookup: dict[str, list[str]]) -> str:
    """The file a row's `rel` names as it is spelled on disk.

    An exact match wins. Otherwise one file whose name differs only in Unicode normalisation (a
    macOS/zip copy stores `café` decomposed) or in letter case (`clip.wav` vs `CLIP.WAV`, written on
    a case-insensitive file system) is that file; with none or several, `rel` is kept as given (and
    is then a `missing_audio` reject).
    """
    if rel in present_rels:
        return rel
    nfc = unicodedata.normalize("NFC", rel)
    matches = lookup.get(nfc.casefold(), [])
    same_case = [m for m in matches if unicodedata.normalize("NFC", m) == nfc]
    if len(same_case) == 1:
        return same_case[0]
    return matches[0] if len(matches) == 1 else rel


def claimed_file(
    file_name: str | None, present_rels: set[str], lookup: dict[str, list[str]], root: str = ""
) -> str | None:
    """The audio file (relative path) a broken metadata line still names by its file_name field, or None."""
    if file_name is None:
        return None
    try:
        rel = on_disk(resolve_file_name(file_name, root), present_rels, lookup)
    except RowReject:
        return None
    return rel if rel in present_rels and is_audio_file(rel) else None


def folder_symlink_escape(root: str, uri: str) -> str | None:
    """Where a local symlink below `root` really points, when that is outside `root` (S3 has none)."""
    if fs.is_s3(root):
        return None
    real_root, real = _realpath(root), os.path.realpath(uri)
    return None if os.path.commonpath([real_root, real]) == real_root else real


@lru_cache(maxsize=8)
def _realpath(root: str) -> str:
    return os.path.realpath(root)


def native_ids(rels: set[str]) -> dict[str, str]:
    """rel path -> native id: the path without extension, unless another file shares that stem."""
    stems: dict[str, list[str]] = {}
    for rel in rels:
        stems.setdefault(posixpath.splitext(rel)[0], []).append(rel)
    # an absolute path (below a declared audio root) keeps its full path, without the leading "/"
    return {rel: (stem if len(group) == 1 else rel).lstrip("/") for stem, group in stems.items() for rel in group}
