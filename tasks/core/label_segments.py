"""The label cache's segment files: one Parquet file of (key, value) strings, its names and merges.

Why a module of its own: `tasks.core.label_cache` decides *which* segments a lookup reads (the
partitions of its keys); this module only knows what one segment is, so the format, the naming
rules that make concurrent writers safe, and the merge plan are written (and tested) once.
"""

from __future__ import annotations

import bisect
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SCHEMA = pa.schema([("key", pa.string()), ("value", pa.string())])
MERGED = "~m-"  # "<earliest member stem>~m-<utc>-<uuid>.parquet": sorts right after its earliest member
_SCALARS = (str, int, float, bool, type(None))
COVERS = b"voicetone.covers"  # merged segments: JSON list of the segment names they hold
ROW_GROUP_ROWS = 256  # a lookup reads only the row groups whose key range holds a wanted key
MERGE_FANIN = 8  # a merge takes this many segments of one size tier (each row is rewritten O(log n) times)


def _stamp() -> str:
    """A name no other writer can pick: UTC time (for humans and ordering) plus a random UUID."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}"


def new_name() -> str:
    """The file name of a segment written by `put_many` or by a migration."""
    return f"{_stamp()}.parquet"


def merged_name(members: Sequence[str]) -> str:
    """The name of a segment merging `members`: it sorts where its earliest member sorted."""
    return f"{min(members).removesuffix('.parquet')}{MERGED}{_stamp()}.parquet"


def is_merged(name: str) -> bool:
    return MERGED in name


def created(name: str) -> str:
    """When a segment was written (its own stamp, also for a merged one): newest merges are read first."""
    return name.rsplit(MERGED, 1)[-1]


def is_hidden(uri: str) -> bool:
    """Hidden names are in-flight temporary files of an atomic write, not segments."""
    return uri.rsplit("/", 1)[-1].startswith(".")


def encode_value(key: str, value: Mapping[str, Any]) -> str:
    """A label as a JSON object; only flat scalars are allowed so every reader can decode it."""
    if not isinstance(value, Mapping):
        raise TypeError(f"label for key {key!r} must be a mapping, got {type(value).__name__}")
    flat: dict[str, Any] = {}
    for name, item in value.items():
        if hasattr(item, "item") and not isinstance(item, _SCALARS):  # numpy scalar -> Python scalar
            item = item.item()
        if not isinstance(name, str) or not isinstance(item, _SCALARS):
            raise TypeError(
                f"label for key {key!r}: field {name!r} must be a str/int/float/bool/None, "
                f"got {type(item).__name__}"
            )
        if isinstance(item, float) and not math.isfinite(item):
            item = None  # JSON has no NaN/inf; a missing score is null
        flat[name] = item
    return json.dumps(flat, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode(entries: Mapping[str, str], metadata: Mapping[str, str], covers: Iterable[str] = ()) -> bytes:
    """A segment's bytes: rows sorted by key (so a merge of the same rows gives the same file)."""
    keys = sorted(entries)
    meta = {k.encode(): v.encode() for k, v in metadata.items()}
    covered = sorted(covers)
    if covered:
        meta[COVERS] = json.dumps(covered).encode()
    table = pa.table({"key": keys, "value": [entries[k] for k in keys]}, schema=SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return sink.getvalue().to_pybytes()


Source = Callable[[], AbstractContextManager[Any]]  # opens the segment: a seekable file or an Arrow buffer


@dataclass
class Segment:
    """One segment whose footer was read; its rows are read on demand (`read`), reopening it, so a
    partition of many small segments never holds many files open at once."""

    name: str
    rows: int
    covers: frozenset[str]
    source: Source

    def read(self, wanted: Sequence[str] | None = None) -> pa.Table:
        """Its rows (key, value), or only those whose key is in sorted `wanted`.

        Rows are sorted by key in row groups of ROW_GROUP_ROWS, so a lookup reads and decodes only
        the row groups whose key range holds a wanted key: the work of a lookup grows with the keys
        asked for, not with the size of the cache.
        """
        with self.source() as src:
            file = pq.ParquetFile(src)
            groups = [i for i in range(file.num_row_groups) if wanted is None or _may_hold(file, i, wanted)]
            table = file.read_row_groups(groups, columns=["key", "value"]) if groups else SCHEMA.empty_table()
        table = table.cast(SCHEMA)
        if wanted is not None:
            table = table.filter(pc.is_in(table.column("key"), value_set=pa.array(wanted, pa.string())))
        for value in table.column("value").to_pylist():
            if value is not None and not isinstance(json.loads(value), dict):
                raise ValueError("a value is not a JSON object")
        return table


def _may_hold(file: pq.ParquetFile, group: int, wanted: Sequence[str]) -> bool:
    """Whether row group `group` can hold one of the sorted `wanted` keys (by its min/max statistics)."""
    stats = file.metadata.row_group(group).column(0).statistics
    if stats is None or not stats.has_min_max:
        return True
    j = bisect.bisect_left(wanted, stats.min)
    return j < len(wanted) and wanted[j] <= stats.max


def open_segment(name: str, source: Source) -> Segment:
    """Read and check a segment's footer; raises when it is not a segment."""
    with source() as src:
        file = pq.ParquetFile(src)
        if file.schema_arrow.names[:2] != ["key", "value"]:
            raise ValueError(f"expected columns key, value; found {file.schema_arrow.names}")
        raw = (file.schema_arrow.metadata or {}).get(COVERS)
        return Segment(name, int(file.metadata.num_rows), frozenset(json.loads(raw)) if raw else frozenset(), source)


def buffer_source(data: bytes) -> Source:
    """A source over bytes already read (an S3 object: read once, reopened for free)."""
    return lambda: nullcontext(pa.BufferReader(data))


def live(segments: Iterable[Segment]) -> list[Segment]:
    """The segments no other one holds, in name order (the order in which a key's first value wins)."""
    segments = list(segments)
    covered = set().union(*(s.covers for s in segments)) if segments else set()
    return sorted((s for s in segments if s.name not in covered), key=lambda s: s.name)


def tier(rows: int) -> int:
    """Size tier of a segment: segments of one tier are within a factor MERGE_FANIN of each other."""
    return int(math.log(max(rows, 1), MERGE_FANIN))


def merge_plan(segments: Sequence[Segment]) -> list[Segment]:
    """The live segments to merge now: MERGE_FANIN or more of the smallest crowded tier (else none).

    Size-tiered merging keeps a partition at most ~MERGE_FANIN segments per tier (a few dozen even
    at 10 M labels) while each label is rewritten only once per tier it climbs.
    """
    by_tier: dict[int, list[Segment]] = {}
    for segment in segments:
        by_tier.setdefault(tier(segment.rows), []).append(segment)
    for _, members in sorted(by_tier.items()):
        if len(members) >= MERGE_FANIN:
            return members
    return []


def merged_entries(members: Sequence[Segment]) -> dict[str, str]:
    """The rows of `members` with one value per key: the first in name order wins."""
    out: dict[str, str] = {}
    for segment in sorted(members, key=lambda s: s.name):
        table = segment.read()
        keys = table.column("key").to_pylist()
        values = table.column("value").to_pylist()
        for key, value in zip(keys, values, strict=True):
            if key is not None and value is not None:
                out.setdefault(key, value)
    return out


def metadata(labeler: str, settings_hash: str) -> dict[str, Any]:
    return {"voicetone.labeler": labeler, "voicetone.settings_hash": settings_hash}
