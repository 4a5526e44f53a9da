"""The label cache's segment files: one Parquet file of (key, value) strings, its names and merges.

Why a module of its own: `tasks.core.label_cache` decides *which* segments a lookup reads (the
partitions of its keys); this module only knows what one segment is, so the format, the naming
rules that make concurrent writers safe, and the merge plan are written (and tested) once.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([("key", pa.string()), ("value", pa.string())])
MERGED = "~m-"  # "<earliest member stem>~m-<utc>-<uuid>.parquet": sorts right after its earliest member
COVERS = b"voicetone.covers"  # merged segments: JSON list of the segment names they hold
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


def encode(entries: Mapping[str, str], metadata: Mapping[str, str], covers: Iterable[str] = ()) -> bytes:
    """A segment's bytes: rows sorted by key (so a merge of the same rows gives the same file)."""
    keys = sorted(entries)
    meta = {k.encode(): v.encode() for k, v in metadata.items()}
    covered = sorted(covers)
    if covered:
        meta[COVERS] = json.dumps(covered).encode()
    table = pa.table({"key": keys, "value": [entries[k] for k in keys]}, schema=SCHEMA)
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink, compression="zstd")
    return sink.getvalue().to_pybytes()


@dataclass
class Segment:
    """One segment as read: its rows (an Arrow table of key, value) and the segments it holds."""

    name: str
    table: pa.Table
    covers: frozenset[str]


def decode(name: str, data: bytes) -> Segment:
    """Parse and check a segment; raises ValueError (or an Arrow error) when it is not one."""
    table = pq.read_table(pa.BufferReader(data))
    if table.schema.names[:2] != ["key", "value"]:
        raise ValueError(f"expected columns key, value; found {table.schema.names}")
    raw = (table.schema.metadata or {}).get(COVERS)
    table = table.select(["key", "value"]).cast(SCHEMA)
    for value in table.column("value").to_pylist():
        if value is not None and not isinstance(json.loads(value), dict):
            raise ValueError("a value is not a JSON object")
    covers = frozenset(json.loads(raw)) if raw else frozenset()
    return Segment(name, table, covers)


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
        by_tier.setdefault(tier(segment.table.num_rows), []).append(segment)
    for _, members in sorted(by_tier.items()):
        if len(members) >= MERGE_FANIN:
            return members
    return []


def merged_entries(members: Sequence[Segment]) -> dict[str, str]:
    """The rows of `members` with one value per key: the first in name order wins."""
    out: dict[str, str] = {}
    for segment in sorted(members, key=lambda s: s.name):
        keys = segment.table.column("key").to_pylist()
        values = segment.table.column("value").to_pylist()
        for key, value in zip(keys, values, strict=True):
            if key is not None and value is not None:
                out.setdefault(key, value)
    return out


def metadata(labeler: str, settings_hash: str) -> dict[str, Any]:
    return {"voicetone.labeler": labeler, "voicetone.settings_hash": settings_hash}
