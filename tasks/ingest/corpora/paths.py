"""Paths that corpus metadata names: kept inside the corpus folder (or a declared audio root), or refused.

Metadata is input we do not control: a `../` or absolute path, or a symlink out of the root, could
make a build read and publish files the corpus never contained. Adapters run every path they take
from a metadata file through `safe_relative_path` / `absolute_audio_path`; `build_result` checks
`symlink_escape` for every candidate. A refusal is an `UnsafePathError` (reject reason `unsafe_path`).
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence

from tasks.spec import SourceSpec


def relative_path(root: str, uri: str) -> str:
    """`uri` relative to `root` with '/' separators (works for local paths and s3:// URIs)."""
    root = root.rstrip("/")
    if not uri.startswith(root + "/"):
        raise ValueError(f"{uri} is not below {root}")
    return uri[len(root) + 1 :]


class UnsafePathError(ValueError):
    """A path from a metadata file that could leave the corpus root (reject reason `unsafe_path`)."""

    reason = "unsafe_path"


_ABSOLUTE = re.compile(r"^(?:[/\\]|[A-Za-z]:|[A-Za-z][A-Za-z0-9+.-]*://)")


def safe_relative_path(name: str, what: str = "path") -> str:
    """`name` from a metadata file as a normalised path relative to the corpus root.

    Refuses absolute paths (`/x`, `C:\\x`, `\\\\server`), URLs (`s3://`, `https://`) and any path
    whose `..` parts climb out of the root, by raising UnsafePathError: metadata is input we do not
    control, and reading outside the root could publish files the corpus never contained.
    """
    text = name.strip()
    if _ABSOLUTE.match(text):
        raise UnsafePathError(f"{what} {name!r} is absolute; it must be relative to the corpus folder")
    rel = posixpath.normpath(text.replace("\\", "/"))
    if rel == ".." or rel.startswith("../"):
        raise UnsafePathError(f"{what} {name!r} points outside the corpus folder")
    return rel


def audio_roots_option(source: SourceSpec) -> tuple[str, ...]:
    """`options.audio_roots` of a source: absolute local folders whose files its metadata may name by
    absolute path (besides the source's own `path`). ValueError when an entry is not one."""
    roots = source.options.get("audio_roots") or []
    out = []
    for entry in roots:
        if not isinstance(entry, str) or not os.path.isabs(entry) or "://" in entry:
            raise ValueError(f"source {source.name!r} ({source.kind}): options.audio_roots entries must be absolute "
                             f"local folders (got {entry!r})")
        out.append(os.path.normpath(entry))
    return tuple(out)


def absolute_audio_path(name: str, root: str, audio_roots: Sequence[str], what: str = "file_name") -> tuple[str, str]:
    """(base, path) for an absolute local path from a metadata file: `path` relative to the source root
    when it lies below it (base = root), else the normalised absolute path below a declared audio root
    (base = that root). Anywhere else is UnsafePathError naming the fix: metadata is input we do not
    control, and reading outside the declared folders could publish files the corpus never held."""
    norm = os.path.normpath(name.strip())
    root_n = os.path.normpath(root)
    if "://" not in root and (norm == root_n or norm.startswith(root_n.rstrip("/") + "/")):
        return root, norm[len(root_n.rstrip("/")) + 1 :]
    for base in audio_roots:
        if norm.startswith(base.rstrip("/") + "/"):
            return base, norm
    declared = f"the source folder {root}" + (f" or options.audio_roots ({', '.join(audio_roots)})" if audio_roots else "")
    raise UnsafePathError(f"{what} {name!r} is absolute and outside {declared}; make it relative to the source "
                          "folder, or add its folder to the source's options.audio_roots")


def symlink_escape(root: str, uri: str) -> str | None:
    """Where local `uri` really points when a symlink takes it outside `root`; None when it stays inside.

    S3 has no symlinks; a `uri` not lexically below `root` (a cache the adapter wrote) is not judged.
    """
    if "://" in root or "://" in uri:
        return None
    root_n = os.path.normpath(root)
    if os.path.commonpath([root_n, os.path.normpath(uri)]) != root_n:
        return None
    real_root, real = os.path.realpath(root_n), os.path.realpath(uri)
    return None if os.path.commonpath([real_root, real]) == real_root else real
