"""Schema version 2: each manifest is a folder of Parquet parts, written one part per shard.

`releases/<name>/manifests/<manifest>/part-NNNNN.parquet`; part `i` holds the rows of planned shard
`i` (plus rows that belong to no shard, placed by `part_of`). Every manifest has the same number of
parts, rows in a part are sorted by the manifest's id columns, and the card lists a record per part
(`part_record`). The release identity is the hash of the ordered part digests (`release_digest`), so
it does not depend on which worker wrote which part. pandas, pyarrow, DuckDB, Polars and
`datasets.load_dataset("parquet", data_dir=...)` open a manifest folder directly.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from manifests import uri as fs
from manifests.schema import ID_COLUMNS, MANIFEST_NAMES, SCHEMA_VERSION, SCHEMA_VERSION_KEY

PART_DIGITS = 5
ROW_GROUP_ROWS = 131_072  # row groups <= 128 Ki rows: a reader streams a part a group at a time
_PART_FILE = re.compile(r"^part-(\d{5})\.parquet$")


def part_file(index: int) -> str:
    """`part-00007.parquet`."""
    return f"part-{index:0{PART_DIGITS}d}.parquet"


def part_path(name: str, index: int) -> str:
    """The part's path relative to the release root (what the card records)."""
    return f"manifests/{name}/{part_file(index)}"


def manifest_dir(root: str, name: str) -> str:
    return fs.join(root, "manifests", name)


def part_uri(root: str, name: str, index: int) -> str:
    return fs.join(root, part_path(name, index))


def part_of(key: str, n_parts: int) -> int:
    """The part of a row that belongs to no shard: `int(sha256(key)[:12], 16) % n_parts`.

    The same formula as `tasks.core.shards.stable_hash` with one part (DESIGN-16 section 1), so a
    reader can check where such a row lies without the pipeline."""
    return int(hashlib.sha256(str(key).encode()).hexdigest()[:12], 16) % max(1, n_parts)


def list_parts(folder: str) -> list[str]:
    """The part files of a manifest folder, in part order ([] when the folder is absent)."""
    names = [n for n in fs.list_prefix(folder) if _PART_FILE.match(n)]
    return [fs.join(folder, n) for n in sorted(names)]


def part_index(uri: str) -> int:
    match = _PART_FILE.match(uri.rstrip("/").rsplit("/", 1)[-1])
    if match is None:
        raise ValueError(f"{uri}: not a manifest part (part-NNNNN.parquet)")
    return int(match.group(1))


def sort_rows(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rows in the order a part stores them: by the manifest's id columns (stable)."""
    keys = [c for c in ID_COLUMNS[name] if c in df.columns]
    if not keys or not len(df):
        return df.reset_index(drop=True)
    return df.sort_values(keys, kind="mergesort").reset_index(drop=True)


def part_bytes(df: pd.DataFrame, name: str, metadata: Mapping[str, Any] | None = None) -> tuple[bytes, pa.Table]:
    """One part's Parquet bytes (zstd, row groups of <= ROW_GROUP_ROWS) and the Arrow table written."""
    from manifests.io import to_arrow

    table = to_arrow(sort_rows(df, name), name, metadata, version=SCHEMA_VERSION)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=ROW_GROUP_ROWS)
    return buf.getvalue(), table


def write_part(df: pd.DataFrame, name: str, root: str, index: int,
               metadata: Mapping[str, Any] | None = None, release_name: str | None = None) -> dict[str, Any]:
    """Write part `index` of manifest `name` under release `root`; return its card record."""
    return write_part_frame(df, name, root, index, metadata, release_name)[0]


def write_part_frame(df: pd.DataFrame, name: str, root: str, index: int,
                     metadata: Mapping[str, Any] | None = None,
                     release_name: str | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """`write_part`, also returning the rows as a reader reads them back (the written Arrow table as pandas).

    The record's `content_sha256` is `table_digest` of those rows, so the validator recomputes it from
    the file alone. They come from the Arrow table in memory, not from reading the bytes back: a
    Parquet file stores its Arrow schema, so the read-back table converts to the same frame
    (tests/manifests/test_parts.py compares the two); callers summarise the part from it too.
    """
    from manifests.io import table_digest

    data, table = part_bytes(df, name, metadata)
    fs.write_bytes(part_uri(root, name, index), data)
    written = table.to_pandas()
    return part_record(name, index, data, table_digest(written, name, root, release_name), table.num_rows), written


def part_record(name: str, index: int, data: bytes, content: str, rows: int) -> dict[str, Any]:
    """`{"part", "path", "rows", "sha256", "content_sha256"}` (DESIGN-16 section 3)."""
    return {"part": index, "path": part_path(name, index), "rows": int(rows),
            "sha256": hashlib.sha256(data).hexdigest(), "content_sha256": content}


def manifest_section(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The card's `manifests.<name>`: the part records in part order and the total row count."""
    parts = sorted((dict(r) for r in records), key=lambda r: int(r["part"]))
    return {"parts": parts, "rows": sum(int(r["rows"]) for r in parts)}


def release_digest(part_digests: Mapping[str, Sequence[str]]) -> str:
    """Release identity v2: sha256 of `"<name>/<part:05d>/<part content_sha256>"` lines, names in
    MANIFEST_NAMES order, parts in order."""
    lines = [f"{name}/{i:0{PART_DIGITS}d}/{digest}" for name in MANIFEST_NAMES
             for i, digest in enumerate(part_digests[name])]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def card_digests(card: Mapping[str, Any]) -> dict[str, list[str]]:
    """{manifest: [part content_sha256, ...]} from a v2 card's part records."""
    out = {}
    for name in MANIFEST_NAMES:
        parts = ((card.get("manifests") or {}).get(name) or {}).get("parts") or []
        out[name] = [str(p.get("content_sha256")) for p in sorted(parts, key=lambda p: int(p["part"]))]
    return out


def known_part_digests(card: Mapping[str, Any]) -> dict[int, dict[str, tuple[str, str]]]:
    """{part index: {manifest: (file sha256, content_sha256)}} as the card's part records list them
    (records without both hashes left out)."""
    out: dict[int, dict[str, tuple[str, str]]] = {}
    for name in MANIFEST_NAMES:
        for record in ((card.get("manifests") or {}).get(name) or {}).get("parts") or []:
            if record.get("part") is not None and record.get("sha256") and record.get("content_sha256"):
                out.setdefault(int(record["part"]), {})[name] = (str(record["sha256"]), str(record["content_sha256"]))
    return out


def read_part(uri: str) -> pa.Table:
    return read_part_with_sha256(uri)[0]


def read_part_with_sha256(uri: str) -> tuple[pa.Table, str]:
    """A part as Arrow and the sha256 of its file's bytes (read once)."""
    try:
        data = fs.read_bytes(uri)
        return pq.read_table(io.BytesIO(data)), hashlib.sha256(data).hexdigest()
    except (pa.ArrowInvalid, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        from manifests.io import ManifestError

        raise ManifestError(f"{uri}: not a readable Parquet manifest part ({err})") from None


def iter_parts(folder: str) -> Iterator[tuple[int, pa.Table]]:
    """(part index, Arrow table) for each part of a manifest folder, one part in memory at a time."""
    for uri in list_parts(folder):
        yield part_index(uri), read_part(uri)


def read_folder(folder: str) -> pa.Table:
    """A whole manifest folder as one Arrow table (parts in order; schemas unified)."""
    from manifests.io import ManifestError

    tables = [t for _, t in iter_parts(folder)]
    if not tables:
        if not fs.exists(folder) and not fs.is_s3(folder):
            raise FileNotFoundError(folder)
        raise ManifestError(f"{folder}: a manifest folder without parts (part-NNNNN.parquet)")
    try:
        return pa.concat_tables(tables, promote_options="default")
    except pa.ArrowInvalid as err:
        raise ManifestError(f"{folder}: parts with incompatible schemas ({err})") from None


def check_version(table: pa.Table, uri: str, versions: Sequence[str]) -> str:
    """The part's `voicetone.schema_version`; ManifestError when absent or not one of `versions`."""
    from manifests.io import ManifestError

    raw = (table.schema.metadata or {}).get(SCHEMA_VERSION_KEY)
    if raw is None:
        raise ManifestError(f"{uri}: no voicetone.schema_version in the Parquet metadata")
    if raw.decode() not in versions:
        raise ManifestError(f"{uri}: schema version {raw.decode()} but this reader understands {', '.join(versions)}")
    return raw.decode()


def harmonise_parts(root: str, name: str, records: Sequence[Mapping[str, Any]],
                    release_name: str | None = None, log: Callable[..., None] | None = None) -> list[dict[str, Any]]:
    """Give every part of a manifest the same Arrow schema, so the folder opens as one dataset.

    Parts are written independently: an extra column that is all null in one part has type null
    there, double (pandas' all-NaN column, or any column of a part without rows), or is absent, and
    DuckDB, pyarrow.dataset or `datasets` take the first file's schema. Parts whose schema differs
    from the unified one (`unified_schema`) are rewritten and their records updated (`log` names them:
    a rewrite costs a read, a write and a hash). The types follow only the values, never the part layout:
    a release cut into other parts has the same schema. `io.to_arrow` already gives this project's added
    columns their type when a part holds no value, so only corpus columns can need a rewrite.
    """
    from manifests.io import table_digest

    uris = [fs.join(root, str(r["path"])) for r in records]
    metas = [_footer(u) for u in uris]
    unified = unified_schema(name, metas)
    out: list[dict[str, Any]] = []
    rewritten: list[str] = []
    for record, uri, meta in zip(records, uris, metas, strict=True):
        schema = meta.schema.to_arrow_schema()
        if schema.remove_metadata().equals(unified):
            out.append(dict(record))
            continue
        table = read_part(uri)
        columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
                   else pa.nulls(table.num_rows, type=f.type) for f in unified]
        fixed = pa.Table.from_arrays(columns, schema=unified.with_metadata(schema.metadata))
        buf = io.BytesIO()
        pq.write_table(fixed, buf, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        data = buf.getvalue()
        fs.write_bytes(uri, data)
        content = table_digest(pq.read_table(io.BytesIO(data)).to_pandas(), name, root, release_name)
        out.append(part_record(name, int(record["part"]), data, content, fixed.num_rows))
        rewritten.append(f"part {record['part']}: {_type_changes(schema, unified)}")
    if rewritten and log is not None:  # each rewrite reads, writes and hashes a part again: say which and why
        log("manifest %s: %d of %d part(s) rewritten to one schema (%s)", name, len(rewritten), len(records),
            "; ".join(rewritten[:3]) + ("; ..." if len(rewritten) > 3 else ""))
    return out


def _type_changes(schema: pa.Schema, unified: pa.Schema) -> str:
    """The columns a part's rewrite changes, e.g. `mood null -> string, tag absent -> string`."""
    def was(column: str) -> str:
        return str(schema.field(column).type) if column in schema.names else "absent"

    return ", ".join(f"{f.name} {was(f.name)} -> {f.type}" for f in unified if was(f.name) != str(f.type))


def _footer(uri: str) -> pq.FileMetaData:
    """A part's Parquet footer (schema, row count, per-column null counts)."""
    if fs.is_s3(uri):
        return pq.ParquetFile(io.BytesIO(fs.read_bytes(uri))).metadata
    with pq.ParquetFile(uri) as parquet:
        return parquet.metadata


def _all_null_columns(meta: pq.FileMetaData) -> set[str]:
    """Top-level columns without a single value in this part (every column of a part without rows).

    From the footer's null counts; a column without them (or a nested one) counts as holding values."""
    fields = meta.schema.to_arrow_schema()
    if meta.num_rows == 0:
        return set(fields.names)
    nulls: dict[str, int] = {}
    uncounted: set[str] = set()
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            column = group.column(c)
            path = column.path_in_schema
            if "." in path:  # a leaf of a nested column
                continue
            stats = column.statistics
            if stats is None or not stats.has_null_count:
                uncounted.add(path)
            else:
                nulls[path] = nulls.get(path, 0) + stats.null_count
    return {f.name for f in fields if f.name not in uncounted and nulls.get(f.name) == meta.num_rows}


def unified_schema(name: str, metas: Sequence[pq.FileMetaData]) -> pa.Schema:
    """One schema for the parts of manifest `name`, from the types of the values they hold.

    A column that holds no value in a part does not vote for its type there (pandas writes an
    all-missing column as double, or as null). A column without a value in any part gets the contract's
    type (`manifests.schema.column_type`), else the first type a part with rows wrote, else null.
    `ManifestError` when two parts hold values of incompatible types."""
    from manifests.schema import column_type

    schemas = [m.schema.to_arrow_schema().remove_metadata() for m in metas]
    loose = [pa.schema([pa.field(f.name, pa.null()) if f.name in empty else f for f in schema])
             for schema, empty in zip(schemas, (_all_null_columns(m) for m in metas), strict=True)]
    try:
        unified = pa.unify_schemas(loose, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        from manifests.io import ManifestError

        raise ManifestError(f"manifest {name}: parts with incompatible column types ({err})") from None
    written: dict[str, pa.DataType] = {}
    for schema, meta in zip(schemas, metas, strict=True):
        for f in schema if meta.num_rows else ():
            if f.name not in written or pa.types.is_null(written[f.name]):
                written[f.name] = f.type
    fields = []
    for f in unified:
        if pa.types.is_null(f.type):
            f = pa.field(f.name, column_type(name, f.name) or written.get(f.name, pa.null()))
        fields.append(f)
    return pa.schema(fields)
