"""Where the audio a manifest row names lives: the URI rule that makes a release relocatable as a folder.

The rule (docs/manifest-contract.md, "Audio URIs"): an `audio_uri` that is *relative* (no scheme, no
leading `/`) names a file inside the release and is relative to the release root (`audio/x.flac`);
an absolute path or an `s3://` URI names a file outside it (the source corpora), which
`audio_roots` may remap. A release copied, moved or synced elsewhere therefore still reads its own
files, and its `content_sha256` does not depend on where it lies.

Releases written before this rule name their materialised files by the absolute path of the folder
they were built in (`/build/out/releases/<name>/audio/x.flac`). `release_relative` recognises those
too (under the current root, or, for a moved release, by the `/<name>/audio/` marker of a row whose
recipe was applied), so old releases read, hash and validate as they did where they were built.
"""

from __future__ import annotations

import posixpath

from manifests import uri as fs

RELEASE_AUDIO_DIR = "audio"


def is_relative(uri: str) -> bool:
    """True for a release-relative URI: no scheme (`s3://`, `file://`), not an absolute path."""
    return bool(uri) and "://" not in uri and not uri.startswith("/") and not uri.startswith("~")


def unsafe_reason(uri: str) -> str | None:
    """Why a relative URI may not be used (it would leave the release folder), or None."""
    if "\\" in uri:
        return "contains a backslash"
    parts = uri.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "is not a normalised path below the release root (empty, '.' or '..' component)"
    return None


def resolve(root: str, uri: str) -> str:
    """The URI a reader opens: a relative one joined to the release root, any other one unchanged."""
    if not is_relative(uri):
        return uri
    reason = unsafe_reason(uri)
    if reason:
        raise ValueError(f"audio_uri {uri!r} {reason}; a relative audio_uri names a file inside the release")
    return fs.join(root, uri)


def release_relative(uri: str | None, root: str | None, release_name: str | None = None,
                     recipe_applied: bool = False) -> str | None:
    """The release-relative form of `uri` when it names a file of the release, else None.

    Relative URIs are returned as they are. An absolute URI under `root` is made relative. A moved
    release of the old (absolute) form is recognised by `/<release_name>/audio/` in a row whose
    recipe was applied: the materialiser only ever wrote such rows into the release's `audio/`.
    """
    if not isinstance(uri, str) or not uri:
        return None
    if is_relative(uri):
        return uri
    if root:
        prefix = root.rstrip("/") + "/"
        if uri.startswith(prefix):
            return uri[len(prefix):]
    if recipe_applied and release_name:
        marker = f"/{release_name}/{RELEASE_AUDIO_DIR}/"
        if marker in uri:
            return f"{RELEASE_AUDIO_DIR}/{uri.split(marker, 1)[1]}"
    return None


def relative_audio_path(name: str) -> str:
    """The manifest URI of a materialised file named `name` in the release's `audio/` folder."""
    return posixpath.join(RELEASE_AUDIO_DIR, name)
