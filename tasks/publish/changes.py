"""What changed since the previous release, computed part by part without loading either whole table.

Both releases' utterance rows (only `utterance_id` and `releases.COMPARED_COLUMNS`) are streamed
part by part (a v2 release's `manifests/utterances/part-*.parquet`, a v1 file by row groups) and
written into `n_buckets` hash buckets of `utterance_id` under a work folder; each bucket then holds
both sides of the same ids and `releases.release_changes` compares them. The bucket results are
partial aggregates merged by `merge_changes` (sums, and the 20 lowest ids of each example list), so
the result equals `release_changes` of the whole tables whatever the layout of either release.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from manifests import io as mio
from manifests import uri as fs
from manifests.schema import UTTERANCES
from tasks.core import storage
from tasks.core.shards import stable_hash
from tasks.publish.releases import _MAX_LISTED, COMPARED_COLUMNS, previous_release, release_changes

ROWS_PER_BUCKET = 200_000
SIDES = ("previous", "current")


def n_buckets_for(rows: int) -> int:
    """Enough buckets that one holds about ROWS_PER_BUCKET rows of each side."""
    return max(1, math.ceil(rows / ROWS_PER_BUCKET))


def _bucket(utterance_id: Any, n_buckets: int) -> int:
    return int(stable_hash(utterance_id)[:12], 16) % n_buckets


def write_buckets(frame: pd.DataFrame, side: str, work: str, part: int, n_buckets: int) -> None:
    """Write `frame`'s compared columns into `<work>/<side>/bucket-BBBBB/part-NNNNN.parquet`."""
    if frame.empty:
        return
    cols = ["utterance_id", *(c for c in COMPARED_COLUMNS if c in frame.columns)]
    buckets = frame["utterance_id"].map(lambda u: _bucket(u, n_buckets))
    for b, rows in frame[cols].groupby(buckets, sort=True):
        buf = io.BytesIO()
        rows.reset_index(drop=True).to_parquet(buf, index=False)
        fs.write_bytes(fs.join(work, side, f"bucket-{int(b):05d}", f"part-{part:05d}.parquet"), buf.getvalue())


def _read_side(work: str, side: str, bucket: int) -> pd.DataFrame:
    folder = fs.join(work, side, f"bucket-{bucket:05d}")
    names = sorted(n for n in fs.list_prefix(folder) if n.endswith(".parquet")) if fs.exists(folder) or \
        fs.is_s3(folder) else []
    frames = [pd.read_parquet(io.BytesIO(fs.read_bytes(fs.join(folder, n)))) for n in names]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"utterance_id": pd.Series(dtype=object)})


def bucket_changes(work: str, bucket: int, previous_name: str | None) -> dict[str, Any]:
    """The partial changes of one bucket (both sides of the same ids), mergeable by `merge_changes`."""
    return release_changes(_read_side(work, "previous", bucket), _read_side(work, "current", bucket), previous_name)


def merge_changes(parts: Iterable[Mapping[str, Any]], previous_name: str | None) -> dict[str, Any]:
    """Merge bucket results (associative, order-independent) into `release_changes`' shape."""
    out: dict[str, Any] = {"previous_release": previous_name, "added": 0, "removed": 0, "changed": 0, "unchanged": 0}
    columns: dict[str, int] = {}
    examples: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
    for part in parts:
        for key in ("added", "removed", "changed", "unchanged"):
            out[key] += int(part.get(key) or 0)
        for c, n in (part.get("changed_columns") or {}).items():
            columns[c] = columns.get(c, 0) + int(n)
        for key in examples:
            examples[key] = sorted([*examples[key], *((part.get("examples") or {}).get(key) or [])])[:_MAX_LISTED]
    out["changed_columns"] = {c: columns[c] for c in COMPARED_COLUMNS if columns.get(c)}
    out["examples"] = examples
    return out


def release_changes_by_parts(previous_parts: Iterable[pd.DataFrame] | None, current_parts: Iterable[pd.DataFrame],
                             previous_name: str | None, work: str, n_buckets: int,
                             current_rows: int | None = None) -> dict[str, Any]:
    """`release_changes` of two releases given as streams of parts; memory: one part or one bucket.

    `work` is a scratch folder (local or s3://), emptied first and removed after. `current_rows`, when
    known, spares reading the current parts when there is no previous release.
    """
    if previous_parts is None:  # a first release: every row is new; known rows need no part read
        added = current_rows if current_rows is not None else sum(len(p) for p in current_parts)
        return {"previous_release": None, "added": int(added), "removed": 0, "changed": 0, "unchanged": 0}
    storage.delete_tree(work)
    for side, parts in zip(SIDES, (previous_parts, current_parts), strict=True):
        for i, frame in enumerate(parts):
            write_buckets(frame, side, work, i, n_buckets)
    try:
        return merge_changes((bucket_changes(work, b, previous_name) for b in range(n_buckets)), previous_name)
    finally:
        storage.delete_tree(work)


def previous_utterance_parts(output: str) -> tuple[Iterator[pd.DataFrame] | None, str | None, int]:
    """(the previous release's utterance rows part by part, its name, its row count), or (None, None, 0).

    Reads a v2 release's `manifests/utterances/part-*.parquet` one part at a time, a v1 file by row
    group; only `utterance_id` and the compared columns.
    """
    paths = previous_release(output)
    if paths is None:
        return None, None, 0
    single = paths.manifest(UTTERANCES)
    folder = fs.join(paths.root, "manifests", UTTERANCES)
    try:
        if fs.exists(single):
            uris = [single]
        else:
            uris = [fs.join(folder, n) for n in sorted(fs.list_prefix(folder)) if n.endswith(".parquet")]
        rows = int(((mio.read_card(paths).get("utterances") or {}).get("total")) or 0)
    except (FileNotFoundError, OSError, mio.ManifestError, ValueError):
        return None, None, 0
    if not uris:
        return None, None, 0

    return (frame for uri in uris for frame in compared_rows(uri)), paths.name, rows


def compared_rows(uri: str) -> Iterator[pd.DataFrame]:
    """`utterance_id` and the compared columns of one utterances file, row group by row group (a v2 part
    or a v1 file): one file open at a time."""
    f = pq.ParquetFile(io.BytesIO(fs.read_bytes(uri)) if fs.is_s3(uri) else uri)
    cols = [c for c in ("utterance_id", *COMPARED_COLUMNS) if c in f.schema_arrow.names]
    for g in range(f.num_row_groups):
        yield f.read_row_group(g, columns=cols).to_pandas()
