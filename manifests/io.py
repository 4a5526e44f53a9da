"""The reference writer and reader of manifests and releases (schema version 1 files, version 2 folders).

Every stage of the pipeline writes manifests through `to_arrow` (`write_manifest` for a single v1
file, `manifests.parts.write_part` for a v2 part), so each Parquet file has the contract's columns
and types and carries `voicetone.schema_version`. `content_sha256` is computed
here, from rows sorted by id with timing fields left out, so two builds of the same inputs compare
equal whatever their release names or build times.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import uri as fs
from manifests.digest_cells import RELEASE_PLACEHOLDER, column_cells, large_strings, text, update_with
from manifests.digest_cells import is_null as _is_null
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

# Rows canonicalised at once: bounds the memory of the cell strings, large enough to amortise pandas calls.
_DIGEST_CHUNK_ROWS = 16_384


def table_digest(df: pd.DataFrame, name: str, release_root: str | None = None,
                 release_name: str | None = None) -> str:
    """sha256 of a manifest's rows sorted by id, columns sorted by name, timing fields excluded.

    Paths inside the release folder are hashed relative to it (`<release>/audio/x.flac`), so
    identical builds published under different release names, or a release copied elsewhere, hash
    the same; a release-relative `audio_uri` (`audio/x.flac`, the current form) and the absolute
    form older releases wrote hash alike (`_canonical_audio_uris`). Each row is hashed as the compact JSON list of its
    `_canonical` cells plus a newline; the cells are built a column at a time (`manifests.digest_cells`), which
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
        cells = [column_cells(col, release_root) for _, col in chunk.items()]
        joined = (pc.binary_join_element_wise(*cells, text(",")) if cells
                  else pa.array(itertools.repeat("", len(chunk)), type=pa.large_string()))
        update_with(digest, pc.binary_join_element_wise(text("["), joined, text("]\n"), text("")))
    return digest.hexdigest()


def _sorted_by(df: pd.DataFrame, keys: list[str]) -> bool:
    """Rows already in the order a stable sort by the one id column gives (a part as written is): the
    sort can be skipped. False (sort) for several keys, a repeated column name or a null id."""
    if len(keys) != 1 or not df.columns.is_unique:
        return False
    return bool(df[keys[0]].is_monotonic_increasing)


def _canonical_audio_uris(df: pd.DataFrame, release_root: str | None, release_name: str | None) -> pd.DataFrame:
    """`df` with every `audio_uri` naming a file of the release written `<release>/<relative path>`.

    Whether the release lies where it was built, and whether it names its files relatively (current)
    or absolutely (older releases), does not change its hash. Other URIs are left as they are.
    A column of strings and nulls is rewritten with Arrow kernels and returned as a string column (so
    `column_cells` encodes it with kernels too); only the absolute URIs that may name a release file
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
    uris = large_strings(col)
    absolute = pc.fill_null(pc.or_(pc.or_(pc.match_substring(uris, "://"), pc.starts_with(uris, "/")),
                                   pc.starts_with(uris, "~")), True)
    relative = pc.and_(pc.invert(absolute), pc.greater(pc.utf8_length(uris), 0))
    out = pc.if_else(relative, pc.binary_join_element_wise(text(RELEASE_PLACEHOLDER + "/"), uris, text("")), uris)
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
