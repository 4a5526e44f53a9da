"""Hash partitions under work/: shards write small keyed rows, one task per partition reads them back.

Why: a whole-corpus question (which listing of a segment wins, how many speakers a source has) needs
every row with the same key in one place, but no process may hold the corpus. Each plan shard writes
the few columns the question needs into `<root>/p-PPPPP/s-SSSSS.parquet` by `stable_hash(key) % n_parts`;
a partition task reads only its own folder, so memory is bounded by a partition, not the corpus.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from manifests import uri as fs
from tasks.core.shards import buckets, read_frames, read_table, write_frame

MAX_PARTS = 256
SHARDS_PER_PART = 32


def part_count(n_shards: int) -> int:
    """A power of two near n_shards / 32 (at most 256), for n_shards plan shards.

    Why 32: the shuffle writes up to n_shards x n_parts files, so the file count grows as the square of
    the corpus; at 8 plan shards a partition, 10 M items (328 plan shards) wrote ~21,000 small files and
    the shuffle grew 24x for 10x the items. A partition's rows are a few narrow columns (~100 bytes a
    row), so 32 plan shards (~1.6 M rows at the default `run.part_rows`) are ~200 MB in one task. The
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


def read_part(root: str, part: int) -> pd.DataFrame:
    """Every shard's rows of one partition (empty frame when no shard wrote any)."""
    folder = part_dir(root, part)
    return read_frames([fs.join(folder, n) for n in fs.list_prefix(folder) if n.endswith(".parquet")], skip_empty=True)


def read_repeated(root: str, part: int, key: str) -> pd.DataFrame:
    """The rows of one partition whose `key` occurs more than once in it, in `read_part`'s order.

    Why: the duplicate-segment partitions hold ~1.25 M rows each at 10 M items; as pandas objects that
    is ~0.9 GB a task (two at once in a threads build took the flow process to 2 GB), in Arrow ~0.2 GB.
    The keys are counted in Arrow and only the repeated keys' rows (a few) become pandas.
    """
    folder = part_dir(root, part)
    uris = [fs.join(folder, n) for n in fs.list_prefix(folder) if n.endswith(".parquet")]
    tables = [t for t in (read_table(u) for u in uris) if t.num_rows]
    if not tables:
        return pd.DataFrame()
    try:
        table = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # one column typed differently in two files: pandas' rules
        rows = read_frames(uris, skip_empty=True)
        return rows[rows[key].duplicated(keep=False)].reset_index(drop=True)
    keys = table.column(key)
    counts = pc.value_counts(keys)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    return table.filter(pc.is_in(keys, value_set=repeated)).to_pandas()


def shard_file(root: str, shard: int) -> str:
    """Where a partition task leaves rows addressed back to one shard (e.g. its duplicate losers)."""
    return fs.join(root, f"s-{shard:05d}")


def read_for_shard(root: str, shard: int) -> pd.DataFrame:
    """Rows the partition tasks addressed to `shard` (`<root>/s-SSSSS/p-PPPPP.parquet`)."""
    folder = shard_file(root, shard)
    return read_frames([fs.join(folder, n) for n in fs.list_prefix(folder) if n.endswith(".parquet")], skip_empty=True)
