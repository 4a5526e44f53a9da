"""Cut the ingested items of every source into hash shards without holding the corpus in one frame.

Why: the shard of an item is the low bits of `stable_hash(utterance_id)` over a power-of-two shard
count, which depends on the total number of items. Reading every source into one frame to cut it
needs memory in proportion to the corpus (several GB at millions of items). Instead: count the items
from the Parquet footers, then read one source at a time and write its rows into hash *buckets*
(a bucket holds every shard whose number is congruent to it modulo the bucket count, both powers of
two), then cut one bucket at a time into its shards. Peak memory is the largest source plus one
bucket. The shards (rows, column order, dtypes, file names) are exactly those of cutting the whole
frame at once, which is what a small build still does (one bucket).
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pandas as pd
import pyarrow.parquet as pq

from manifests import uri as fs
from tasks.core import storage
from tasks.core.shards import shard_count, shard_numbers, write_frame
from tasks.core.work import Log, noop, read_all

BUCKET_ROWS = 200_000  # items per bucket (about one source's worth of memory at a time)


def item_count(uris: list[str]) -> int:
    """Rows of the ingest item files, from their Parquet footers (a local file: only its footer is read)."""
    return sum(pq.read_metadata(io.BytesIO(fs.read_bytes(u)) if fs.is_s3(u) else u).num_rows for u in uris)


def bucket_count(n_items: int, n_shards: int) -> int:
    """A power of two near n_items / BUCKET_ROWS, at least 1 and at most the shard count."""
    wanted = max(1, min(n_shards, -(-n_items // BUCKET_ROWS)))
    return min(n_shards, 1 << (wanted - 1).bit_length())


def cut(items: pd.DataFrame, n_shards: int) -> Iterator[tuple[int, pd.DataFrame]]:
    """(shard number, rows sorted by utterance_id) of each non-empty shard, in shard order."""
    if items.empty:
        return
    for shard, part in items.groupby(shard_numbers(items["utterance_id"], n_shards), sort=True):
        yield int(shard), part.sort_values("utterance_id").reset_index(drop=True)


def shard_frames(uris: list[str], shard_size: int, scratch: str, log: Log = noop) -> Iterator[tuple[int, pd.DataFrame]]:
    """(shard number, rows) of every shard of the items in `uris` (one file per source); bounded memory.

    `scratch` is a work folder for the buckets (removed when done). One bucket: the whole frame is cut
    at once, as before. Several: sources are read one at a time into bucket files, then each bucket
    is read and cut; the concatenation order within a bucket follows `uris`, as in the whole frame.
    Shards come bucket by bucket (b, b + n_buckets, ...), not in shard order: sort by the number.
    """
    n_items = item_count(uris)
    n_shards = shard_count(n_items, shard_size)
    n_buckets = bucket_count(n_items, n_shards)
    if n_buckets == 1:
        yield from cut(read_all(uris), n_shards)
        return
    log("sharding %d items into %d shards through %d buckets (one source at a time)", n_items, n_shards, n_buckets)
    try:
        for s, uri in enumerate(uris):
            items = read_all([uri])
            if items.empty:
                continue
            buckets = shard_numbers(items["utterance_id"], n_shards) % n_buckets
            for b, rows in items.groupby(buckets, sort=True):
                write_frame(fs.join(scratch, f"b-{int(b):05d}", f"src-{s:05d}.parquet"), rows.reset_index(drop=True))
        for b in range(n_buckets):
            folder = fs.join(scratch, f"b-{b:05d}")
            names = sorted(n for n in fs.list_prefix(folder) if n.endswith(".parquet"))
            yield from cut(read_all([fs.join(folder, n) for n in names]), n_shards)
    finally:
        storage.delete_tree(scratch)
