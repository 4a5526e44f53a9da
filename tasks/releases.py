"""Release bookkeeping for refreshes: what changed since the previous release, and pruning old ones."""

from __future__ import annotations

import shutil
from typing import Any

import pandas as pd

from manifests import io as mio
from manifests import uri as fs
from manifests.schema import UTTERANCES

# Columns whose change means an utterance's training content changed.
_COMPARED = ("segment_key", "transcript", "sentiment", "split", "transcript_origin", "sentiment_origin")
_MAX_LISTED = 20


def previous_release(output: str) -> mio.ReleasePaths | None:
    """The release LATEST points at now (before this build moves it), if any."""
    try:
        return mio.resolve_release(output)
    except (mio.ManifestError, FileNotFoundError):
        return None


def release_changes(previous: pd.DataFrame | None, current: pd.DataFrame, previous_name: str | None) -> dict[str, Any]:
    """Added, removed and changed utterances (by utterance_id) relative to the previous release."""
    if previous is None:
        return {"previous_release": None, "added": int(len(current)), "removed": 0, "changed": 0, "unchanged": 0}
    prev = previous.set_index("utterance_id")
    cur = current.set_index("utterance_id")
    added = sorted(set(cur.index) - set(prev.index))
    removed = sorted(set(prev.index) - set(cur.index))
    common = sorted(set(cur.index) & set(prev.index))
    cols = [c for c in _COMPARED if c in prev.columns and c in cur.columns]
    a = prev.loc[common, cols].astype(object).where(prev.loc[common, cols].notna(), None)
    b = cur.loc[common, cols].astype(object).where(cur.loc[common, cols].notna(), None)
    differs = (a != b).any(axis=1)
    changed = sorted(differs[differs].index)
    by_column = {c: int((a[c] != b[c]).sum()) for c in cols if int((a[c] != b[c]).sum())}
    return {
        "previous_release": previous_name,
        "added": len(added),
        "removed": len(removed),
        "changed": len(changed),
        "unchanged": len(common) - len(changed),
        "changed_columns": by_column,
        "examples": {"added": added[:_MAX_LISTED], "removed": removed[:_MAX_LISTED], "changed": changed[:_MAX_LISTED]},
    }


def previous_utterances(output: str) -> tuple[pd.DataFrame | None, str | None]:
    paths = previous_release(output)
    if paths is None:
        return None, None
    try:
        return mio.read_manifest(paths.manifest(UTTERANCES)), paths.name
    except (FileNotFoundError, mio.ManifestError):
        return None, None


def prune_releases(output: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` releases (never the one LATEST names); returns deleted names."""
    releases_dir = fs.join(output, mio.RELEASES_DIR)
    names = sorted(fs.list_prefix(releases_dir))
    latest = previous_release(output)
    protected = {latest.name} if latest else set()
    doomed = [n for n in names[: max(0, len(names) - keep)] if n not in protected]
    for name in doomed:
        _delete_tree(fs.join(releases_dir, name))
    return doomed


def _delete_tree(uri: str) -> None:
    if fs.is_s3(uri):
        from tasks import storage

        for key in storage.list_files(uri):
            storage.delete(key, missing_ok=True)
        return
    shutil.rmtree(uri, ignore_errors=True)
