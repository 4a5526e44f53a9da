"""Column helpers for the validator's per-part checks: pandas semantics without its slow paths.

pandas' `isin` on an Arrow-backed string column turns every allowed value into an Arrow scalar in
Python (`ArrowStringArray.isin`), which dominated validation (issue #16); `isin` here builds the
value set once, with the same rules, and asks pyarrow. `objects` gives a column as Python objects
with missing values as the one `np.nan` object, as iterating the pandas column does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def _null_like(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def isin(values: pd.Series, allowed: Iterable[Any]) -> np.ndarray:
    """`values.isin(allowed).to_numpy()`: for an Arrow string column, strings in `allowed` match
    equal strings and a missing value in `allowed` matches missing values; other values never match."""
    if not isinstance(allowed, set | frozenset | list | tuple | pd.Index | pd.Series):
        allowed = list(allowed)
    if not (isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow"):
        return np.asarray(values.isin(allowed), dtype=bool)
    column = pa.array(values)
    value_set = _string_value_set(allowed)
    if value_set is None:
        strings = [v for v in allowed if isinstance(v, str)]
        value_set = pa.array(strings + ([None] if any(_null_like(v) for v in allowed) else []), type=pa.large_string())
    if not len(value_set):
        return np.zeros(len(values), dtype=bool)
    found = pc.is_in(column, value_set=value_set.cast(column.type))
    return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _string_value_set(allowed: Any) -> pa.Array | None:
    """`allowed` as one Arrow string array when it holds only strings and missing values (a string
    column or index, or a set of ids): built in C, not a Python test per value. None: other values
    are in it, which the caller's loop drops (they never match a string column)."""
    if isinstance(allowed, pd.Index | pd.Series) and isinstance(allowed.dtype, pd.StringDtype):
        arr = pa.array(allowed.array, from_pandas=True)
    else:
        try:
            arr = pa.array(allowed if isinstance(allowed, list | tuple) else list(allowed), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            return None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_null(arr.type):
        return pa.array([None] if len(arr) else [], type=pa.large_string())
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    return arr.cast(pa.large_string())


def objects(values: pd.Series) -> np.ndarray:
    """The column as an object array; missing values are the single `np.nan` object (as iterating
    an Arrow string column gives), so sets and sorts of it behave as they do on the column."""
    if isinstance(values.dtype, pd.StringDtype):
        return values.to_numpy(dtype=object, na_value=np.nan)
    return values.to_numpy(dtype=object)


# The ASCII characters `str.split()` cuts at (str.isspace): \t \n \v \f \r, \x1c-\x1f and the space.
_ASCII_SPACE = r"[\t\n\x0b\x0c\r\x1c-\x1f ]"


def chars_without_space(values: pd.Series) -> np.ndarray:
    """Per value, its characters less whitespace as `len("".join(text.split()))` counts them (NaN for
    a missing or non-string value): ASCII strings by Arrow kernels, the rest one by one in Python."""
    def one(text: Any) -> float:
        return float(len("".join(text.split()))) if isinstance(text, str) else np.nan

    if not (isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow"):
        return np.array([one(v) for v in values.tolist()], dtype=np.float64)
    arr = pa.array(values)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lengths = pc.subtract(pc.utf8_length(arr), pc.count_substring_regex(arr, _ASCII_SPACE))
    out = lengths.cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls -> NaN
    other = pc.fill_null(pc.invert(pc.string_is_ascii(arr)), False).to_numpy(zero_copy_only=False)
    if other.any():
        at = np.flatnonzero(other)
        out[at] = [one(v) for v in arr.take(pa.array(at)).to_pylist()]
    return out


def key_counts(df: pd.DataFrame, keys: list[str], distinct: bool = False) -> Counter:
    """Rows (or distinct non-null utterance ids) per key tuple, rows with a null key left out: what
    `df.groupby(keys)["utterance_id"].size()` (`.nunique()`) gives, keys as strings, without a groupby
    (codes per column, one int64 per row; `key_counts_by_row` is the row loop it replaces, the tests' oracle)."""
    if df.empty:
        return Counter()
    columns = [objects(df[k]) for k in keys]
    keep = ~np.logical_or.reduce([pd.isna(c) for c in columns])
    if not keep.any():
        return Counter()
    codes, uniques = zip(*(pd.factorize(c[keep], sort=False) for c in columns), strict=True)
    sizes = [len(u) for u in uniques]
    if float(np.prod(sizes, dtype=float)) * max(len(df), 1) >= 2.0**62:  # codes would overflow: the row loop
        return key_counts_by_row(df, keys, distinct)
    row_key = np.zeros(int(keep.sum()), dtype=np.int64)
    for code, size in zip(codes, sizes, strict=True):
        row_key = row_key * size + code
    present = np.unique(row_key)
    if distinct:  # a key whose ids are all null still counts, with 0
        uid, _ = pd.factorize(objects(df["utterance_id"])[keep], sort=False, use_na_sentinel=True)
        known = uid >= 0
        width = int(uid.max()) + 1 if known.any() else 1  # (key, id) pairs as key * width + id
        found, n = np.unique(np.unique(row_key[known] * width + uid[known]) // width, return_counts=True)
        per_key = dict.fromkeys(present.tolist(), 0) | dict(zip(found.tolist(), n.tolist(), strict=True))
    else:
        found, n = np.unique(row_key, return_counts=True)
        per_key = dict(zip(found.tolist(), n.tolist(), strict=True))
    out: Counter = Counter()
    for combined, count in per_key.items():
        key = []
        for size, values in zip(sizes[::-1], uniques[::-1], strict=True):
            combined, code = divmod(combined, size)
            key.append(str(values[code]))
        out[tuple(key[::-1])] = int(count)
    return out


def key_counts_by_row(df: pd.DataFrame, keys: list[str], distinct: bool = False) -> Counter:
    """`key_counts` a row at a time (for key spaces too large for one int64 code)."""
    columns = [objects(df[k]) for k in keys]
    keep = ~np.logical_or.reduce([pd.isna(c) for c in columns])
    tuples = zip(*(c[keep] for c in columns), strict=True)
    if distinct:
        ids: dict[tuple, set] = {}
        for key, uid in zip(tuples, objects(df["utterance_id"])[keep], strict=True):
            seen = ids.setdefault(key, set())
            if not pd.isna(uid):  # None too: `nunique` counts no missing id (the loop once counted None)
                seen.add(uid)
        sizes = {key: len(seen) for key, seen in ids.items()}
    else:
        sizes = Counter(tuples)
    return Counter({tuple(str(k) for k in key): int(n) for key, n in sizes.items()})
