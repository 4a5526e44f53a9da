"""Release bookkeeping for refreshes: what changed since the previous release, and pruning old ones.

Only *complete* releases (`is_complete`: every manifest and both cards) count toward
`run.keep_releases`; half-written releases of interrupted builds are removed and reported.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from manifests import io as mio
from manifests import uri as fs
from manifests.schema import MANIFEST_NAMES
from tasks.core import (
    guards,
    storage,
)

# Columns whose change means an utterance's training content changed: its audio, its labels (and where
# they came from), who speaks, what it may be used for. Scores (p_*, confidences) follow the labels.
COMPARED_COLUMNS: tuple[str, ...] = (
    "segment_key", "audio_sha256", "offset_s", "duration_s", "language",
    "transcript", "transcript_raw", "transcript_origin", "sentiment", "sentiment_origin",
    "emotion", "emotion_intensity", "split", "speaker_id", "gender", "age", "accent", "license",
)
_MAX_LISTED = 20
Log = Callable[..., None]


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


def latest_content_sha256(output: str) -> tuple[mio.ReleasePaths, str] | None:
    """(LATEST's release, the content_sha256 its card records), or None when there is none to read."""
    paths = previous_release(output)
    if paths is None:
        return None
    try:
        digest = mio.read_card(paths).get("content_sha256")
    except (FileNotFoundError, mio.ManifestError):
        return None
    return (paths, digest) if isinstance(digest, str) and digest else None


def unchanged_release(output: str, digest: str) -> mio.ReleasePaths | None:
    """LATEST's release when its content equals `digest` (a refresh that changed nothing), else None."""
    latest = latest_content_sha256(output)
    return latest[0] if latest is not None and latest[1] == digest else None


def discard_release(root: str) -> None:
    """Remove a release folder this build started but will not publish (never one LATEST names)."""
    storage.delete_tree(root)


# What `tasks.publish.step.release_name` makes; other names under releases/ are not ours and are left alone.
RELEASE_NAME = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")


def release_files(paths: mio.ReleasePaths) -> list[str]:
    """The files every complete release has: the four manifests, then the card (publish writes it last).

    A version-2 release names each manifest by its folder's part 0 (every manifest has one); the
    card's part records list the rest (`validate` checks them)."""
    from manifests.parts import part_uri

    v1 = paths.layout() == "1" and fs.exists(paths.manifest(MANIFEST_NAMES[0]))
    manifests = [paths.manifest(name) if v1 else part_uri(paths.root, name, 0) for name in MANIFEST_NAMES]
    return [*manifests, paths.card_json, paths.card_md]


INVALID_MARKER = "INVALID.txt"


def mark_invalid(paths: mio.ReleasePaths, problems: list[str]) -> str:
    """Mark a release that failed validation: it stays for inspection, never counts, the next publish removes it."""
    uri = fs.join(paths.root, INVALID_MARKER)
    fs.write_bytes(uri, ("This release failed validation; LATEST was not moved to it.\n"
                         + "".join(f"- {p}\n" for p in problems)).encode())
    return uri


def is_complete(paths: mio.ReleasePaths) -> bool:
    """Complete = every manifest and both cards exist, the JSON card parses with a content_sha256, and
    the release is not marked invalid.

    Publish writes the manifests, then card.json, then card.md, and moves LATEST after validating,
    so a build killed while publishing leaves a release without some of these; a release that failed
    validation carries `INVALID.txt` (`mark_invalid`). Neither counts toward keep_releases.
    """
    try:
        if fs.exists(fs.join(paths.root, INVALID_MARKER)):
            return False
        if not all(fs.exists(uri) for uri in release_files(paths)):
            return False
        card = mio.read_card(paths)
    except (FileNotFoundError, mio.ManifestError, UnicodeDecodeError):
        return False
    return isinstance(card, dict) and bool(card.get("content_sha256"))


def release_names(output: str) -> list[str]:
    """Names of the release folders under `<output>/releases/`, oldest first."""
    return [n for n in fs.list_prefix(fs.join(output, mio.RELEASES_DIR)) if RELEASE_NAME.match(n)]


def incomplete_releases(output: str, current: str | None = None) -> list[str]:
    """Releases left half-written by interrupted builds (never LATEST's, never `current`, the one in progress)."""
    latest = previous_release(output)
    skip = {current, latest.name if latest else None}
    return [n for n in release_names(output)
            if n not in skip and not is_complete(mio.release_paths(output, n))]


def incomplete_release_guards(output: str, current: str | None = None) -> list[dict[str, Any]]:
    """The `incomplete_releases_removed` guard when interrupted builds left half-written releases."""
    names = incomplete_releases(output, current)
    if not names:
        return []
    return [guards.guard(
        "incomplete_releases_removed",
        f"{len(names)} incomplete release(s) left by interrupted builds were removed: {', '.join(names)} "
        "(no card or a manifest missing; they never were LATEST and do not count toward run.keep_releases)",
        releases=names)]


@dataclass(frozen=True)
class PruneReport:
    """What `prune_releases` removed: complete releases beyond keep, and incomplete ones."""

    pruned: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)


def prune_releases(output: str, keep: int, current: str | None = None) -> PruneReport:
    """Keep the newest `keep` complete releases; delete older complete ones and every incomplete one.

    Only complete releases (`is_complete`) count toward `keep`, so half-written leftovers of killed
    builds can never push a good release out. The release LATEST names is never deleted, nor
    `current` (a release being written). Run it while holding the output lock (`tasks.core.output_lock`),
    so another build's release in progress is not taken for a leftover.
    """
    latest = previous_release(output)
    protected = {n for n in (current, latest.name if latest else None) if n}
    names = release_names(output)
    complete = [n for n in names if n in protected or is_complete(mio.release_paths(output, n))]
    incomplete = [n for n in names if n not in complete]
    doomed = [n for n in complete[: max(0, len(complete) - keep)] if n not in protected]
    for name in [*incomplete, *doomed]:
        storage.delete_tree(fs.join(output, mio.RELEASES_DIR, name))
    return PruneReport(pruned=doomed, incomplete=incomplete)


def prune_and_log(output: str, keep: int, current: str, log: Log, warn: Log) -> PruneReport:
    """`prune_releases`, saying what went: incomplete leftovers at WARNING, old releases at INFO."""
    report = prune_releases(output, keep, current=current)
    if report.incomplete:
        warn("removed %d incomplete release(s) left by interrupted builds: %s", len(report.incomplete),
             ", ".join(report.incomplete))
    if report.pruned:
        log("pruned %d old release(s) (keep_releases=%d complete): %s", len(report.pruned), keep,
            ", ".join(report.pruned))
    return report


def publish_nothing(output: str, keep: int, new_root: str, same: mio.ReleasePaths, digest: str,
                    counts: Mapping[str, int], changes: dict[str, Any], found: dict[str, int],
                    fired: list[dict[str, Any]], log: Log, warn: Log) -> dict[str, Any]:
    """The build equals LATEST's release (`unchanged_release`): remove the new folder, leave LATEST, say so.

    `counts` (rows per manifest) and `changes` (against LATEST, computed part by part before the new
    folder is removed) come from the caller, so no table is read whole here.
    The result has publish's keys, naming LATEST's release, with `published: False` and `unchanged_since`.
    """
    discard_release(new_root)
    prune_and_log(output, keep, same.name, log, warn)
    log("no change since %s (content_sha256 %s...; %d added, %d removed, %d changed): nothing published, "
        "LATEST left on %s", same.name, digest[:16], changes["added"], changes["removed"], changes["changed"],
        same.name)
    return {"release": same.name, "release_uri": same.root, "content_sha256": digest, "published": False,
            "unchanged_since": same.name, "counts": dict(counts), "found": found, "changes": changes,
            "guards": fired}


