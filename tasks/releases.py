"""Release bookkeeping for refreshes: what changed since the previous release, and pruning old ones."""

from __future__ import annotations

import shutil
from typing import Any

import pandas as pd

from manifests import io as mio
from manifests import uri as fs
from manifests.schema import UTTERANCES

# Columns whose change means an utterance's training content changed: its audio, its labels (and where
# they came from), who speaks, what it may be used for. Scores (p_*, confidences) follow the labels.
COMPARED_COLUMNS: tuple[str, ...] = (
    "segment_key", "audio_sha256", "offset_s", "duration_s", "language",
    "transcript", "transcript_raw", "transcript_origin", "sentiment", "sentiment_origin",
    "emotion", "emotion_intensity", "split", "speaker_id", "gender", "age", "accent", "license",
)
_MAX_LISTED = 20


def previous_release(output: str) -> mio.ReleasePaths | None:
    """The release LATEST points at now (before this build moves it), if any."""
    try:
        return mio.resolve_release(output)
    except (mio.ManifestError, FileNotFoundError):
        return None


def _cells(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as objects, every missing value (None, NaN, NA) as None so missing equals missing."""
    col = frame[column].astype(object)
    return col.where(col.notna(), None)


def _differs(a: pd.Series, b: pd.Series) -> pd.Series:
    """Cell-wise inequality where two missing cells are equal (pandas' `!=` says None != None)."""
    both_missing = a.isna() & b.isna()
    return (a != b) & ~both_missing


def release_changes(previous: pd.DataFrame | None, current: pd.DataFrame, previous_name: str | None) -> dict[str, Any]:
    """Added, removed and changed utterances (by utterance_id) relative to the previous release.

    "Changed" compares `COMPARED_COLUMNS` (a column one side lacks counts as missing there), so an
    edited transcript, sentiment, speaker or licence is a change, not only new audio.
    """
    if previous is None:
        return {"previous_release": None, "added": int(len(current)), "removed": 0, "changed": 0, "unchanged": 0}
    prev = previous.set_index("utterance_id")
    cur = current.set_index("utterance_id")
    added = sorted(set(cur.index) - set(prev.index))
    removed = sorted(set(prev.index) - set(cur.index))
    common = sorted(set(cur.index) & set(prev.index))
    cols = [c for c in COMPARED_COLUMNS if c in prev.columns or c in cur.columns]
    old = prev.loc[common].reindex(columns=cols)
    new = cur.loc[common].reindex(columns=cols)
    per_column = {c: _differs(_cells(old, c), _cells(new, c)) for c in cols}
    differs = pd.DataFrame(per_column, index=pd.Index(common)).any(axis=1) if cols else pd.Series(False, index=common)
    changed = sorted(differs[differs].index)
    by_column = {c: int(d.sum()) for c, d in per_column.items() if int(d.sum())}
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
