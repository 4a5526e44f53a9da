"""Shards: the unit of work Prefect sees, persisted so a killed run resumes where it stopped.

A shard is a few hundred to a few thousand utterance rows. Rows are assigned to shards by a hash of
`utterance_id` (not by position), and every shard result is stored under a name derived from the
shard's content and the stage's settings: a re-run finds the finished shards and skips them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from manifests import uri as fs

Log = Callable[..., None]
_LOGGER = logging.getLogger(__name__)


class WorkFileError(ValueError):
    """A work file that exists but cannot be read (0 bytes, truncated, not Parquet): names the file."""


def stable_hash(*parts: object) -> str:
    """sha256 hex of the parts joined with ':' (stable across processes, unlike hash())."""
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()


def shard_count(n_items: int, shard_size: int) -> int:
    """A power of two >= n_items / shard_size.

    Powers of two keep shards stable under inserts: an id's shard is the low bits of its hash, so a
    refresh that adds data moves ids only when the count doubles, and then each old shard splits in two.
    """
    needed = max(1, math.ceil(n_items / shard_size))
    return 1 << (needed - 1).bit_length()


def assign_shards(ids: pd.Series, shard_size: int) -> pd.Series:
    """Shard number per id when `ids` are all the items: the low bits of hash(id)."""
    return shard_numbers(ids, shard_count(len(ids), shard_size))


def shard_numbers(ids: pd.Series, n_shards: int) -> pd.Series:
    """Shard number per id among `n_shards` (a power of two): the low bits of hash(id)."""
    return pd.Series(buckets(ids.tolist(), n_shards), index=ids.index, dtype="int64")


def buckets(keys: Iterable[object], n: int) -> list[int]:
    """`int(stable_hash(key)[:12], 16) % n` for each key, from the digest's first 6 bytes.

    The same numbers as the hex form, ~3x faster: at 10 M items the shuffle routes every key."""
    sha256 = hashlib.sha256
    return [int.from_bytes(sha256(str(k).encode()).digest()[:6], "big") % n for k in keys]


def frame_digest(df: pd.DataFrame, settings: Mapping[str, Any] | None = None) -> str:
    """Content identity of a shard plus the settings of the stage about to process it."""
    digest = hashlib.sha256(json.dumps(settings or {}, sort_keys=True, default=str).encode())
    digest.update(json.dumps(sorted(df.columns)).encode())
    ordered = df[sorted(df.columns)]
    for row in ordered.itertuples(index=False, name=None):
        digest.update(json.dumps([_plain(v) for v in row], default=str).encode())
    return digest.hexdigest()[:24]


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple) or type(value).__name__ == "ndarray":
        return [_plain(v) for v in list(value)]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NA:
        return None
    return value


def write_frame(uri: str, df: pd.DataFrame) -> None:
    """A work file: no column statistics (nothing filters work files by them; their min/max of every
    string column was a third of the write), LZ4 and no dictionary pages: written ~2x faster than
    zstd with dictionaries, ~40 % larger (work files are read once or twice and dropped; measured in
    benchmarks/RESULTS.md, twelfth session). Release parts and the label cache keep zstd and statistics."""
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False), buf, compression="lz4",
                   use_dictionary=False, write_statistics=False)
    fs.write_bytes(uri, buf.getvalue())


def read_frame(uri: str) -> pd.DataFrame:
    """A work file as pandas; `WorkFileError` naming the file when it is not readable Parquet."""
    data = fs.read_bytes(uri)
    try:
        with pq.ParquetFile(pa.BufferReader(data)) as parquet:
            return parquet.read().to_pandas()
    except (pa.ArrowException, OSError, ValueError) as err:
        raise WorkFileError(f"work file {uri} ({len(data)} bytes) cannot be read as Parquet: {err}") from None


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A work file as Arrow, only `columns` (those present) when given: a local file is read in place
    (only the columns' pages), an S3 object once; `WorkFileError` naming the file when unreadable."""
    data = fs.read_bytes(uri) if fs.is_s3(uri) else None
    source = pa.BufferReader(data) if data is not None else uri
    try:
        # One open and one footer parse (a schema read then `pq.read_table` parsed it twice, and the
        # dataset machinery behind `read_table` costs more than the read of a 500-row shard).
        with pq.ParquetFile(source) as parquet:
            if columns is None:
                return parquet.read()
            names = parquet.schema_arrow.names
            return parquet.read(columns=[c for c in columns if c in names])
    except FileNotFoundError:
        raise fs.not_found(uri) from None
    except (pa.ArrowException, OSError, ValueError) as err:
        size = len(data) if data is not None else fs.size(uri)
        raise WorkFileError(f"work file {uri} ({size} bytes) cannot be read as Parquet: {err}") from None


def read_frames(uris: list[str], columns: list[str] | None = None, skip_empty: bool = False) -> pd.DataFrame:
    """Several work files' rows as one frame, in the order given (one Arrow concatenation, one conversion).

    Why: a plan shard reads the files of several labelling shards, a partition task one file per shard;
    converting each small file to pandas and concatenating frames costs more than the reading. Columns
    missing from a file, or all null in it, are filled with nulls (as `pd.concat` would). `skip_empty`
    drops files without rows first (a partition's empty shuffle files may lack columns).
    """
    tables = [read_table(u, columns) for u in uris]
    if skip_empty:
        tables = [t for t in tables if t.num_rows]
    return frame_of_tables(tables)


def frame_of_tables(tables: list[pa.Table]) -> pd.DataFrame:
    """Work files' Arrow tables as one pandas frame, in order (empty frame for none): one concatenation and
    one conversion; files typing a column differently follow pandas' rules."""
    if not tables:
        return pd.DataFrame()
    if len(tables) == 1:
        return tables[0].to_pandas()
    try:
        merged = pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # one column typed differently in two files: pandas' rules
        return pd.concat([t.to_pandas() for t in tables], ignore_index=True)
    # pandas dtypes (e.g. Int64) from the file with the most typed (not all-null) columns, not the first one
    typed = max(tables, key=lambda t: sum(not pa.types.is_null(f.type) for f in t.schema))
    return merged.replace_schema_metadata(typed.schema.metadata).to_pandas()


def work_rows(uri: str) -> int:
    """A work file's row count from its footer (no column is read)."""
    return read_table(uri, []).num_rows


def reusable_rows(uri: str, log: Log | None = None) -> int | None:
    """The rows of `uri` when it exists and reads as Parquet; None when it is absent or unreadable
    (logged, so it is redone).

    A crash or a full disk can leave a 0-byte or truncated work file (S3 and local rename are atomic,
    but a copied or synced work folder is not); reusing it would fail every later run.
    """
    if not fs.exists(uri):
        return None
    try:
        return len(read_frame(uri))
    except WorkFileError as err:
        (log or _LOGGER.warning)("%s; treating it as absent and redoing it", err)
        return None


def reusable_frame(uri: str, log: Log | None = None) -> bool:
    """True when `uri` exists and reads as Parquet (`reusable_rows`)."""
    return reusable_rows(uri, log) is not None


def keep_columns(out: pd.DataFrame, source: pd.DataFrame) -> pd.DataFrame:
    """`out` with every column of `source` when it has no rows (a stage that kept nothing).

    A stage file may hold no rows, but the next stage still selects columns of it: a row filter
    over zero rows (`df[[]]`) or `pd.DataFrame()` loses them, which used to fail the next stage
    with `KeyError: 'segment_key'`.
    """
    if len(out):
        return out
    missing = [c for c in source.columns if c not in out.columns]
    if not missing and len(out.columns):
        return out
    extra = source.iloc[0:0][missing].reset_index(drop=True)
    return pd.concat([out.reset_index(drop=True), extra], axis=1) if len(out.columns) else extra


def run_shard(
    work_dir: str,
    stage: str,
    shard: pd.DataFrame,
    settings: Mapping[str, Any],
    fn: Callable[[pd.DataFrame], tuple[pd.DataFrame, pd.DataFrame]],
    log: Log | None = None,
) -> tuple[str, str, bool, int]:
    """Run `fn` on a shard unless a finished, readable result for the same input and settings exists.

    Returns (items uri, rejects uri, reused, items rows; the plan sizes its shards by the rows). The
    rejects file is written first and the items file last, so the presence of the items file means the shard is complete. A result file that cannot
    be read (0 bytes, truncated) is treated as absent: logged through `log` and redone. The items
    keep every input column even when `fn` keeps no row, so the next stage can read them.
    """
    key = frame_digest(shard, settings)
    items_uri = fs.join(work_dir, stage, f"{key}.items.parquet")
    rejects_uri = fs.join(work_dir, stage, f"{key}.rejects.parquet")
    rows = reusable_rows(items_uri, log) if reusable_frame(rejects_uri, log) else None
    if rows is not None:  # the check read the items file: its rows come with it
        return items_uri, rejects_uri, True, rows
    items, rejects = fn(shard)
    items = keep_columns(items, shard)
    write_frame(rejects_uri, rejects)
    write_frame(items_uri, items)
    return items_uri, rejects_uri, False, len(items)
