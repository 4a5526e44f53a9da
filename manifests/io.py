"""The reference writer and reader of manifests and releases (schema version 1 files, version 2 folders).

Every stage of the pipeline writes manifests through `to_arrow` (`write_manifest` for a single v1
file, `manifests.parts.write_part` for a v2 part), so each Parquet file has the contract's columns
and types and carries `voicetone.schema_version`. `content_sha256` is computed
here, from rows sorted by id with timing fields left out, so two builds of the same inputs compare
equal whatever their release names or build times.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import uri as fs
from manifests.locations import RELEASE_AUDIO_DIR, release_relative
from manifests.schema import (
    ADDED_COLUMN_TYPES,
    CLASS_INDEX,
    ID_COLUMNS,
    MANIFEST_NAMES,
    READABLE_VERSIONS,
    SCHEMA_V1,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    SCHEMAS,
    TIMING_FIELDS,
)

LATEST = "LATEST"
RELEASES_DIR = "releases"
CARD_JSON = "dataset_card.json"
CARD_MD = "dataset_card.md"
RELEASE_PLACEHOLDER = "<release>"


class ManifestError(ValueError):
    """A manifest or release that does not follow the contract."""


def to_arrow(df: pd.DataFrame, name: str, metadata: Mapping[str, Any] | None = None,
             version: str = SCHEMA_VERSION) -> pa.Table:
    """Cast a DataFrame to the contract schema of `name`; extra columns are kept after the contract's.

    `version` is the schema version the file metadata declares (a single-file manifest is version 1).
    """
    schema = SCHEMAS[name]
    df = df.reset_index(drop=True)
    arrays, fields = [], []
    for field in schema:
        if field.name in df.columns:
            col = df[field.name]
            try:
                arr = pa.array(_clean(col, field.type), type=field.type, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as err:
                raise ManifestError(f"{name}.{field.name}: cannot store as {field.type}: {err}") from None
        else:
            arr = pa.nulls(len(df), type=field.type)
        arrays.append(arr)
        fields.append(field)
    for col in df.columns:
        if col in schema.names:
            continue
        try:
            arr = pa.array(df[col], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise ManifestError(f"{name}.{col}: extra column cannot be stored: {err}") from None
        added = ADDED_COLUMN_TYPES.get(name, {}).get(col)
        if added is not None and arr.type != added:  # one type in every part, so `harmonise_parts` rewrites none
            try:  # (pandas' str columns convert as large_string, a part without a value as null or double)
                arr = arr.cast(added) if arr.null_count < len(arr) else pa.nulls(len(arr), type=added)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                pass  # values of another kind: the parts' values decide (`unified_schema`)
        arrays.append(arr)
        fields.append(pa.field(col, arr.type))
    meta = {SCHEMA_VERSION_KEY: version.encode(), b"voicetone.manifest": name.encode()}
    meta[b"voicetone.class_index"] = json.dumps(CLASS_INDEX, sort_keys=True).encode()
    for key, value in (metadata or {}).items():
        meta[f"voicetone.{key}".encode()] = (value if isinstance(value, str) else json.dumps(value, sort_keys=True)).encode()
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta))


def _clean(col: pd.Series, arrow_type: pa.DataType) -> Any:
    """Turn pandas' mixed None/NaN/numpy values into what pyarrow converts without surprises.

    A column whose dtype already is the field's kind (a pandas string column for a string field,
    numpy bool/int/float for bool/int/float) converts as it is: `pa.array(..., from_pandas=True)`
    gives the same values and nulls as the per-value list, without building it.
    """
    dtype = col.dtype
    if isinstance(dtype, pd.StringDtype) and pa.types.is_string(arrow_type):
        return col
    if isinstance(dtype, np.dtype) and (
            (dtype.kind == "b" and pa.types.is_boolean(arrow_type))
            or (dtype.kind in "iu" and pa.types.is_integer(arrow_type))
            or (dtype.kind == "f" and pa.types.is_floating(arrow_type))):
        return col
    if pa.types.is_string(arrow_type):
        return [None if _is_null(v) else str(v) for v in col]
    if pa.types.is_boolean(arrow_type):
        return [None if _is_null(v) else bool(v) for v in col]
    if pa.types.is_integer(arrow_type):
        return [None if _is_null(v) else int(v) for v in col]
    if pa.types.is_floating(arrow_type):
        return [None if _is_null(v) else float(v) for v in col]
    return col


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def write_manifest(df: pd.DataFrame, name: str, uri: str, metadata: Mapping[str, Any] | None = None) -> None:
    """Write one single-file (schema version 1) manifest atomically (local temp + rename, or one S3 PUT).

    Releases are written as version 2 folders (`manifests.parts.write_part`); this stays for v1
    fixtures and tools that want one file."""
    table = to_arrow(df, name, metadata, version=SCHEMA_V1)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    fs.write_bytes(uri, buf.getvalue())


def read_table(uri: str) -> pa.Table:
    """One manifest as Arrow: a v1 file, a v2 folder of parts, or a v1 file name whose release holds
    the v2 folder instead (`manifests/<name>.parquet` -> `manifests/<name>/`)."""
    folder = manifest_folder(uri)
    if folder is not None:
        from manifests.parts import read_folder

        return read_folder(folder)
    try:
        return pq.read_table(io.BytesIO(fs.read_bytes(uri)))
    except (pa.ArrowInvalid, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ManifestError(f"{uri}: not a readable Parquet manifest ({err})") from None


def manifest_folder(uri: str) -> str | None:
    """The v2 folder `uri` names (itself, or `<name>/` beside a missing `<name>.parquet`); None for a file."""
    from manifests.parts import list_parts

    if uri.endswith(".parquet"):
        if fs.exists(uri):
            return None
        folder = uri[: -len(".parquet")]
        return folder if list_parts(folder) else None
    return uri if list_parts(uri) else None


def read_manifest(uri: str, check_version: bool = True) -> pd.DataFrame:
    """Read one manifest (v1 file or v2 folder) as pandas; refuses a schema version this reader lacks."""
    table = read_table(uri)
    if check_version:
        from manifests.parts import check_version as check

        check(table, uri, READABLE_VERSIONS)
    return table.to_pandas()


def file_metadata(uri: str) -> dict[str, str]:
    meta = read_table(uri).schema.metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if k.startswith(b"voicetone.")}


# ---------------------------------------------------------------- releases


@dataclass(frozen=True)
class ReleasePaths:
    """Where the files of one release live."""

    root: str

    def manifest(self, name: str) -> str:
        """The v1 file of a manifest (`read_manifest` reads the v2 folder beside it when that is there)."""
        return fs.join(self.root, "manifests", f"{name}.parquet")

    def manifest_dir(self, name: str) -> str:
        """The v2 folder of a manifest's parts."""
        return fs.join(self.root, "manifests", name)

    def layout(self) -> str:
        """"2" when the release holds manifest folders of parts, "1" when single files."""
        from manifests.parts import list_parts

        return "2" if list_parts(self.manifest_dir(MANIFEST_NAMES[0])) else SCHEMA_V1

    @property
    def card_json(self) -> str:
        return fs.join(self.root, CARD_JSON)

    @property
    def card_md(self) -> str:
        return fs.join(self.root, CARD_MD)

    @property
    def plots(self) -> str:
        return fs.join(self.root, "plots")

    @property
    def audio(self) -> str:
        return fs.join(self.root, "audio")

    @property
    def name(self) -> str:
        return self.root.rstrip("/").rsplit("/", 1)[-1]


def release_paths(output: str, release: str) -> ReleasePaths:
    return ReleasePaths(fs.join(output, RELEASES_DIR, release))


def resolve_release(uri: str) -> ReleasePaths:
    """A release folder, or an output folder whose LATEST names one.

    A local path is made absolute: the content hash treats `audio_uri`s under the release folder as
    relative to it, and they were written with the absolute root, so `validate out/x` from the shell
    must hash like `validate /abs/out/x`."""
    uri = uri.rstrip("/") if fs.is_s3(uri) else os.path.abspath(os.path.expanduser(uri))
    latest = fs.join(uri, LATEST)
    if fs.exists(latest):
        name = fs.read_bytes(latest).decode().strip()
        if not name:
            raise ManifestError(f"{latest} is empty")
        return release_paths(uri, name)
    if fs.exists(fs.join(uri, "manifests")) or fs.exists(fs.join(uri, CARD_JSON)):
        return ReleasePaths(uri)
    raise ManifestError(f"{uri}: neither a release folder (manifests/, {CARD_JSON}) nor an output folder with {LATEST}")


def point_latest(output: str, release: str) -> None:
    """Move LATEST last, atomically: readers never see a half-written release."""
    fs.write_bytes(fs.join(output, LATEST), (release + "\n").encode())


def read_card(paths: ReleasePaths) -> dict[str, Any]:
    try:
        return json.loads(fs.read_bytes(paths.card_json))
    except json.JSONDecodeError as err:
        raise ManifestError(f"{paths.card_json}: not valid JSON ({err})") from None


def read_release(uri: str) -> dict[str, pd.DataFrame]:
    """All four manifests of a release (or of the LATEST one under an output folder), v1 or v2."""
    paths = resolve_release(uri)
    return {name: read_manifest(paths.manifest(name)) for name in MANIFEST_NAMES}


# ---------------------------------------------------------------- content hash


def _canonical(value: Any, release_root: str | None) -> Any:
    if isinstance(value, list | tuple) or type(value).__name__ == "ndarray":
        return [_canonical(v, release_root) for v in list(value)]
    if _is_null(value):
        return None
    if isinstance(value, float):
        return float(repr(round(value, 9)))
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return _canonical(value.item(), release_root)
    if isinstance(value, str) and release_root and value.startswith(release_root):
        return RELEASE_PLACEHOLDER + value[len(release_root) :]
    return value


def table_digest(df: pd.DataFrame, name: str, release_root: str | None = None,
                 release_name: str | None = None) -> str:
    """sha256 of a manifest's rows sorted by id, columns sorted by name, timing fields excluded.

    Paths inside the release folder are hashed relative to it (`<release>/audio/x.flac`), so
    identical builds published under different release names, or a release copied elsewhere, hash
    the same; a release-relative `audio_uri` (`audio/x.flac`, the current form) and the absolute
    form older releases wrote hash alike (`_canonical_audio_uris`). Each row is hashed as the compact JSON list of its
    `_canonical` cells plus a newline; the cells are built a column at a time (`_column_cells`), which
    gives the same bytes as encoding row by row (tests/manifests/test_io.py keeps the row loop as the
    oracle) at a fraction of the cost.
    """
    df = _canonical_audio_uris(df, release_root, release_name)
    cols = sorted(c for c in df.columns if c not in TIMING_FIELDS)
    keys = [c for c in ID_COLUMNS[name] if c in df.columns]
    ordered = df.sort_values(keys, kind="mergesort") if keys and len(df) and not _sorted_by(df, keys) else df
    digest = hashlib.sha256()
    digest.update(json.dumps(cols).encode())
    table = ordered[cols]
    for start in range(0, len(table), _DIGEST_CHUNK_ROWS):
        chunk = table if len(table) <= _DIGEST_CHUNK_ROWS else table.iloc[start : start + _DIGEST_CHUNK_ROWS]
        # Positional columns, as DataFrame.itertuples reads them (duplicate names included).
        cells = [_column_cells(col, release_root) for _, col in chunk.items()]
        joined = (pc.binary_join_element_wise(*cells, _text(",")) if cells
                  else pa.array(itertools.repeat("", len(chunk)), type=pa.large_string()))
        _update_with(digest, pc.binary_join_element_wise(_text("["), joined, _text("]\n"), _text("")))
    return digest.hexdigest()


def _sorted_by(df: pd.DataFrame, keys: list[str]) -> bool:
    """Rows already in the order a stable sort by the one id column gives (a part as written is): the
    sort can be skipped. False (sort) for several keys, a repeated column name or a null id."""
    if len(keys) != 1 or not df.columns.is_unique:
        return False
    return bool(df[keys[0]].is_monotonic_increasing)


@functools.lru_cache(maxsize=16)
def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, type=pa.large_string())


def _update_with(digest: Any, cells: pa.Array) -> None:
    """Feed the bytes of a null-free large_string array (its values back to back) into `digest`."""
    if not len(cells):
        return
    offsets = np.frombuffer(cells.buffers()[1], dtype=np.int64)[cells.offset : cells.offset + len(cells) + 1]
    digest.update(memoryview(cells.buffers()[2])[int(offsets[0]) : int(offsets[-1])])


def _canonical_audio_uris(df: pd.DataFrame, release_root: str | None, release_name: str | None) -> pd.DataFrame:
    """`df` with every `audio_uri` naming a file of the release written `<release>/<relative path>`.

    Whether the release lies where it was built, and whether it names its files relatively (current)
    or absolutely (older releases), does not change its hash. Other URIs are left as they are.
    A column of strings and nulls is rewritten with Arrow kernels and returned as a string column (so
    `_column_cells` encodes it with kernels too); only the absolute URIs that may name a release file
    (under `release_root`, or an applied recipe's `/<release_name>/audio/`) go through
    `release_relative` one by one. Any other column takes the row loop (`_canonical_audio_uris_rows`).
    """
    if "audio_uri" not in df.columns or not len(df):
        return df
    if release_name is None and release_root:
        release_name = release_root.rstrip("/").rsplit("/", 1)[-1]
    col = df["audio_uri"]
    if not isinstance(col.dtype, pd.StringDtype) and not (
            col.dtype == object and all(v is None or type(v) is str or (type(v) is float and v != v)
                                        for v in col.tolist())):
        return _canonical_audio_uris_rows(df, release_root, release_name)
    uris = _large_strings(col)
    absolute = pc.fill_null(pc.or_(pc.or_(pc.match_substring(uris, "://"), pc.starts_with(uris, "/")),
                                   pc.starts_with(uris, "~")), True)
    relative = pc.and_(pc.invert(absolute), pc.greater(pc.utf8_length(uris), 0))
    out = pc.if_else(relative, pc.binary_join_element_wise(_text(RELEASE_PLACEHOLDER + "/"), uris, _text("")), uris)
    maybe = np.zeros(len(uris), dtype=bool)  # absolute URIs that may name a file of the release
    if release_root:
        maybe |= pc.fill_null(pc.starts_with(uris, release_root.rstrip("/") + "/"), False).to_numpy(zero_copy_only=False)
    applied = (df["recipe_applied"].fillna(False).astype(bool).to_numpy() if "recipe_applied" in df.columns
               else np.zeros(len(df), dtype=bool))
    if release_name and applied.any():
        marker = pc.match_substring(uris, f"/{release_name}/{RELEASE_AUDIO_DIR}/")
        maybe |= applied & pc.fill_null(marker, False).to_numpy(zero_copy_only=False)
    maybe &= absolute.to_numpy(zero_copy_only=False)
    if maybe.any():
        at = np.flatnonzero(maybe)
        found = [release_relative(v, release_root, release_name, bool(done))
                 for v, done in zip(uris.take(pa.array(at)).to_pylist(), applied[at].tolist(), strict=True)]
        texts = out.take(pa.array(at)).to_pylist()
        fixed = pa.array([t if rel is None else f"{RELEASE_PLACEHOLDER}/{rel}" for t, rel in zip(texts, found, strict=True)],
                         type=pa.large_string())
        mask = np.zeros(len(uris), dtype=bool)
        mask[at] = True
        out = pc.replace_with_mask(out, pa.array(mask), fixed)
    return df.assign(audio_uri=pd.Series(pd.arrays.ArrowStringArray(out), index=df.index))


def _large_strings(col: pd.Series) -> pa.Array:
    """A string column (str, or a missing value: None, NaN, pd.NA) as one large_string Arrow array."""
    try:
        arr = pa.array(col.array, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # python-backed StringDtype, object column
        arr = pa.array(col.to_numpy(dtype=object, na_value=None), type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.cast(pa.large_string())


def _canonical_audio_uris_rows(df: pd.DataFrame, release_root: str | None, release_name: str | None) -> pd.DataFrame:
    """`_canonical_audio_uris` a row at a time: for a column that is not all strings and nulls."""
    applied = (df["recipe_applied"].fillna(False).astype(bool).tolist() if "recipe_applied" in df.columns
               else [False] * len(df))
    memo: dict[tuple[Any, bool], Any] = {}
    values, changed = [], False
    for value, done in zip(df["audio_uri"].tolist(), applied, strict=True):
        key = (value, done) if isinstance(value, str) else (None, False)
        if key not in memo:
            rel = release_relative(value, release_root, release_name, done) if isinstance(value, str) else None
            memo[key] = value if rel is None else f"{RELEASE_PLACEHOLDER}/{rel}"
        out = memo[key] if isinstance(value, str) else value
        changed = changed or out != value
        values.append(out)
    if not changed:
        return df
    return df.assign(audio_uri=pd.Series(values, index=df.index, dtype=object))


# Rows canonicalised at once: bounds the memory of the cell strings, large enough to amortise pandas calls.
_DIGEST_CHUNK_ROWS = 16_384
# json.dumps(value, separators=(",", ":"), default=str) without rebuilding the encoder per cell.
_CELL_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_encode_str = json.encoder.encode_basestring_ascii  # what that encoder uses for str (ensure_ascii)


def _cell_json(value: Any, release_root: str | None) -> str:
    """The general path: one cell exactly as the row-wise `json.dumps(canonical row)` wrote it."""
    return _CELL_ENCODER.encode(_canonical(value, release_root))


def _float_json(value: float) -> str:
    """`_cell_json` of a built-in float: NaN is null, else rounded to 9 places (repr round-trips)."""
    if value != value:
        return "null"
    value = round(value, 9)
    if value == math.inf:
        return "Infinity"
    if value == -math.inf:
        return "-Infinity"
    return float.__repr__(value)


def _object_cells(values: Iterable[Any], release_root: str | None) -> list[str]:
    """Cells of a column of Python objects: str/None/float/bool inline, anything else via `_cell_json`."""
    out: list[str] = []
    append = out.append
    for value in values:
        kind = type(value)
        if kind is str:
            if release_root and value.startswith(release_root):
                value = RELEASE_PLACEHOLDER + value[len(release_root) :]
            append(_encode_str(value))
        elif value is None:
            append("null")
        elif kind is float:
            append(_float_json(value))
        elif kind is bool:
            append("true" if value else "false")
        else:
            append(_cell_json(value, release_root))
    return out


def _column_cells(col: pd.Series, release_root: str | None) -> pa.Array:
    """The JSON text of every cell of one column, in row order, per dtype (a large_string array, no null).

    Numpy bool/int/float columns iterate as built-in bool/int/float (`Series.__iter__` uses
    `ndarray.item`), so they are encoded from their values: ints in decimal (Arrow's cast writes
    `repr`'s digits), floats once per distinct bit pattern (so -0.0 and 0.0 stay apart).
    String-dtype columns hold str or a missing value (-> null). Every other dtype takes the values
    `Series.__iter__` yields, as the row loop did.
    """
    dtype = col.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "biuf":
        values = col.to_numpy()
        if dtype.kind == "b":
            return pc.if_else(pa.array(values, type=pa.bool_()), _text("true"), _text("false"))
        if dtype.kind in "iu":
            return pa.array(values).cast(pa.large_string())
        if dtype.itemsize <= 8:  # float16/32 widen to float64 exactly, as ndarray.item does
            bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
            codes, uniques = pd.factorize(bits)
            texts = pa.array([_float_json(v) for v in uniques.view(np.float64).tolist()], type=pa.large_string())
            return texts.take(pa.array(codes))
    if isinstance(dtype, pd.StringDtype):
        return _string_cells(col, release_root)
    return pa.array(_object_cells(col, release_root), type=pa.large_string())


# A character `json.encoder.encode_basestring_ascii` escapes: not printable ASCII, or " or \.
_NEEDS_ESCAPE = r"[^\x20\x21\x23-\x5b\x5d-\x7e]"


def _string_cells(col: pd.Series, release_root: str | None) -> pa.Array:
    """Cells of a string column (str or missing) with Arrow kernels: what `_object_cells` writes.

    A string under `release_root` is rewritten `<release>...`; a missing value is `null`; a string
    of printable ASCII without `"` or `\\` is its text in quotes (as `encode_basestring_ascii`
    writes it); the rest (unicode, control characters, quotes) are encoded one by one in Python.
    """
    arr = _large_strings(col)
    if release_root:
        inside = pc.fill_null(pc.starts_with(arr, release_root), False)
        if pc.any(inside).as_py():
            prefix = "^" + "".join(f"\\x{{{ord(c):x}}}" for c in release_root)  # RE2: every character literal
            arr = pc.replace_substring_regex(arr, prefix, RELEASE_PLACEHOLDER, max_replacements=1)
    cells = pc.fill_null(pc.binary_join_element_wise(_text('"'), arr, _text('"'), _text("")), _text("null"))
    escape = pc.fill_null(pc.match_substring_regex(arr, _NEEDS_ESCAPE), False)
    if pc.any(escape).as_py():
        texts = [_encode_str(v) for v in pc.filter(arr, escape).to_pylist()]
        cells = pc.replace_with_mask(cells, escape, pa.array(texts, type=pa.large_string()))
    return cells


def content_sha256(tables: Mapping[str, pd.DataFrame], release_root: str | None = None,
                   release_name: str | None = None) -> str:
    """The release identity: two releases are equal when this is equal.

    It covers every row of the four manifests (timing fields aside), hence every label, recipe and
    window, and through the stage files' `audio_sha256` the bytes of every audio file published in
    the release; not where the release lies (`release_root`, `release_name`: see `table_digest`).
    """
    return v1_identity({name: table_digest(tables[name], name, release_root, release_name) for name in MANIFEST_NAMES})


def v1_identity(digests: Mapping[str, str]) -> str:
    """A version-1 release's `content_sha256` from its four `table_digest`s (name, digest, in order)."""
    digest = hashlib.sha256()
    for name in MANIFEST_NAMES:
        digest.update(name.encode())
        digest.update(digests[name].encode())
    return digest.hexdigest()


def release_identity(paths: ReleasePaths, release_name: str | None = None) -> str:
    """The `content_sha256` of the release at `paths` recomputed from its manifests, v1 or v2.

    v2 reads one part at a time (`manifests.parts.release_digest`); v1 reads each whole file."""
    if paths.layout() == SCHEMA_V1:
        return content_sha256({n: read_manifest(paths.manifest(n)) for n in MANIFEST_NAMES}, paths.root, release_name)
    from manifests.parts import iter_parts, release_digest

    return release_digest({name: [table_digest(t.to_pandas(), name, paths.root, release_name)
                                  for _, t in iter_parts(paths.manifest_dir(name))] for name in MANIFEST_NAMES})
