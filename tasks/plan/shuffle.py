"""Hash partitions under work/: shards write small keyed rows, one task per partition reads them back.

Why: a whole-corpus question (which listing of a segment wins, how many speakers a source has) needs
every row with the same key in one place, but no process may hold the corpus. Each plan shard writes
the few columns the question needs into `<root>/p-PPPPP/s-SSSSS.parquet` by `stable_hash(key) % n_parts`;
a partition task reads only its own folder, so memory is bounded by a partition, not the corpus.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from manifests import uri as fs
from tasks.core.shards import buckets, frame_of_tables, read_frames, read_table, write_frame

MAX_PARTS = 256
SHARDS_PER_PART = 32


def part_count(n_shards: int) -> int:
    """A power of two near n_shards / 32 (at most 256), for n_shards plan shards.

    Why 32: the shuffle writes up to n_shards x n_parts files, so the file count grows as the square of
    the corpus; at 8 plan shards a partition, 10 M items (328 plan shards) wrote ~21,000 small files and
    the shuffle grew 24x for 10x the items. A partition's rows are a few narrow columns (~100 bytes a
    row in Parquet), so 32 plan shards hold ~1.6 M rows at the default `run.part_rows`; the partition
    tasks never hold them as pandas objects (`read_repeated`, `distinct_per`). The
    partition count never changes the plan (tested), only how the work is cut."""
    wanted = max(1, min(MAX_PARTS, n_shards // SHARDS_PER_PART))
    return 1 << (wanted - 1).bit_length()


def part_of(keys: pd.Series, n_parts: int) -> pd.Series:
    """Partition number of each key (the same rule as the release's part numbers)."""
    if n_parts == 1:
        return pd.Series(0, index=keys.index, dtype="int64")
    return pd.Series(buckets(keys.tolist(), n_parts), index=keys.index, dtype="int64")


def part_dir(root: str, part: int) -> str:
    return fs.join(root, f"p-{part:05d}")


def write_parts(root: str, shard: int, frame: pd.DataFrame, key: str, n_parts: int) -> int:
    """Write `frame`'s rows into the partitions of their `key`; returns the partitions written."""
    if frame.empty:
        return 0
    parts = part_of(frame[key].astype(str), n_parts)
    written = 0
    for part, rows in frame.groupby(parts, sort=True):
        write_frame(fs.join(part_dir(root, int(part)), f"s-{shard:05d}.parquet"), rows.reset_index(drop=True))
        written += 1
    return written


def _files(folder: str) -> list[str]:
    """The Parquet files of one shuffle folder, in listing order."""
    return [fs.join(folder, n) for n in fs.list_prefix(folder) if n.endswith(".parquet")]


def read_part(root: str, part: int) -> pd.DataFrame:
    """Every shard's rows of one partition (empty frame when no shard wrote any)."""
    return read_frames(_files(part_dir(root, part)), skip_empty=True)


def read_part_table(root: str, part: int) -> pa.Table | None:
    """Every shard's rows of one partition as one Arrow table (no row: an empty table), in `read_part`'s
    order; None when two files type a column differently (the caller then reads with `read_part`).

    Why: a partition holds up to ~1.25 M rows at 10 M items, and as pandas objects they take several
    times their Arrow size; `distinct_per` counts them in Arrow.
    """
    tables = [t for t in (read_table(uri) for uri in _files(part_dir(root, part))) if t.num_rows]
    if not tables:
        return pa.table({})
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def read_repeated(root: str, part: int, key: str) -> pd.DataFrame:
    """The rows of one partition whose `key` occurs more than once in it, in `read_part`'s order.

    Why not read the partition: ~1.25 M rows at 10 M items took ~0.9 GB a task as pandas objects and
    still ~0.55 GB in Arrow with a hash count of the keys (two such tasks at once took a threads build's
    flow process to 1.85-2 GB). Here each file's keys become 64-bit hashes (8 bytes a row, one file's
    strings at a time), the repeated hashes are found in one sorted array, and each file is read again
    for the rows whose hash repeats: a few. A hash collision only adds a row to the result (the caller
    groups by the key itself), so the result is the same as from the whole partition.
    """
    from manifests.validate_leakage import key_hashes

    uris = _files(part_dir(root, part))
    hashes = []
    for uri in uris:
        column = read_table(uri, [key])
        hashes.append(key_hashes(column.column(key).to_pylist()) if column.num_rows and key in column.column_names
                      else np.zeros(0, dtype=np.uint64))
    every = np.sort(np.concatenate(hashes)) if hashes else np.zeros(0, dtype=np.uint64)
    repeated = np.unique(every[1:][every[1:] == every[:-1]])
    if not len(repeated):
        return pd.DataFrame()
    masks = [np.isin(h, repeated) for h in hashes]
    return frame_of_tables([read_table(uri).filter(pa.array(mask))
                            for uri, mask in zip(uris, masks, strict=True) if mask.any()])  # as `read_part` converts


def distinct_per(root: str, part: int, by: str) -> dict[str, int]:
    """Distinct rows of one partition per value of column `by` (counted in Arrow), sorted by value."""
    table = read_part_table(root, part)
    if table is None:
        rows = read_part(root, part).drop_duplicates()
        return {str(k): int(v) for k, v in rows.groupby(by).size().items()}
    if not table.num_rows:
        return {}
    distinct = table.group_by(table.column_names, use_threads=False).aggregate([])
    counted = distinct.group_by(by, use_threads=False).aggregate([([], "count_all")])
    pairs = zip(counted.column(by).to_pylist(), counted.column("count_all").to_pylist(), strict=True)
    return {str(k): int(v) for k, v in sorted((k, v) for k, v in pairs if k is not None)}


def shard_file(root: str, shard: int) -> str:
    """Where a partition task leaves rows addressed back to one shard (e.g. its duplicate losers)."""
    return fs.join(root, f"s-{shard:05d}")


def read_for_shard(root: str, shard: int) -> pd.DataFrame:
    """Rows the partition tasks addressed to `shard` (`<root>/s-SSSSS/p-PPPPP.parquet`)."""
    return read_frames(_files(shard_file(root, shard)), skip_empty=True)
