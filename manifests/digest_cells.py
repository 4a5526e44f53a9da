"""The JSON text of manifest cells, a column at a time: what the content digest hashes.

`manifests.io.table_digest` hashes each row as the compact JSON list of its `canonical` cells. Encoding
a row at a time in Python was the release's slowest step, so cells are encoded per column with Arrow
kernels and NumPy, each path giving exactly the bytes the row loop gave (tests/manifests/test_io.py
keeps the row loop as the oracle; tests/manifests/test_digest_cells.py checks the float and string
fast paths against the per-value code on adversarial values). A changed byte would change the identity
of every published release, so every fast path has an exact fallback for the values it cannot prove.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# What a path inside the release folder hashes as (the release may be renamed or moved).
RELEASE_PLACEHOLDER = "<release>"

# json.dumps(value, separators=(",", ":"), default=str) without rebuilding the encoder per cell.
_CELL_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_encode_str = json.encoder.encode_basestring_ascii  # what that encoder uses for str (ensure_ascii)

# A character `json.encoder.encode_basestring_ascii` escapes: not printable ASCII, or " or \.
_NEEDS_ESCAPE = r"[^\x20\x21\x23-\x5b\x5d-\x7e]"

# The vectorised float text is proven for |rounded value| in [1e-4, 1e4) (and 0): `repr` is positional
# there, and value * 1e9 < 2**44 keeps its rounding error (<= 0.001) far below the tie margin below.
_FLOAT_FAST_MAX = 1e4
_FLOAT_FAST_MIN = 1e-4
_TIE_MARGIN = 0.01


def is_null(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def canonical(value: Any, release_root: str | None) -> Any:
    """A cell as the digest sees it: floats rounded to 9 places, nulls None, release paths relative."""
    if isinstance(value, list | tuple) or type(value).__name__ == "ndarray":
        return [canonical(v, release_root) for v in list(value)]
    if is_null(value):
        return None
    if isinstance(value, float):
        return float(repr(round(value, 9)))
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return canonical(value.item(), release_root)
    if isinstance(value, str) and release_root and value.startswith(release_root):
        return RELEASE_PLACEHOLDER + value[len(release_root) :]
    return value


@functools.lru_cache(maxsize=16)
def text(value: str) -> pa.Scalar:
    return pa.scalar(value, type=pa.large_string())


def update_with(digest: Any, cells: pa.Array) -> None:
    """Feed the bytes of a null-free large_string array (its values back to back) into `digest`."""
    digest.update(_value_bytes(cells))


def _value_bytes(arr: pa.Array) -> memoryview:
    """The bytes of a (large_)string array's values back to back (null slots included, usually empty)."""
    data = arr.buffers()[2]
    if data is None or not len(arr):
        return memoryview(b"")
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    return memoryview(data)[int(offsets[0]) : int(offsets[-1])]


def cell_json(value: Any, release_root: str | None) -> str:
    """The general path: one cell exactly as the row-wise `json.dumps(canonical row)` wrote it."""
    return _CELL_ENCODER.encode(canonical(value, release_root))


def float_json(value: float) -> str:
    """`cell_json` of a built-in float: NaN is null, else rounded to 9 places (repr round-trips)."""
    if value != value:
        return "null"
    value = round(value, 9)
    if value == math.inf:
        return "Infinity"
    if value == -math.inf:
        return "-Infinity"
    return float.__repr__(value)


def float_texts(values: np.ndarray) -> pa.Array:
    """`float_json` of every float64 value, as one large_string array, without a Python call per value.

    Where |value| < 1e4 and value * 1e9 is not within 0.01 of a tie, `round(value, 9)` is the double
    nearest n / 1e9 with n = rint(value * 1e9) (what CPython's correctly rounded `round` gives: the
    product's error is under 0.001), and `repr` of that double is the decimal n / 1e9 itself written
    positionally with trailing zeros dropped (it has at most 13 significant digits, and two decimals
    of at most 15 digits never share a double, so no shorter one round-trips), once the rounded value
    is 0 or at least 1e-4 (below, `repr` switches to an exponent). Every other value (ties, large,
    tiny, NaN, infinities) takes `float_json`.
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = values * 1e9
        fast = np.isfinite(values) & (np.abs(values) < _FLOAT_FAST_MAX)
        fast &= np.abs(scaled - np.floor(scaled) - 0.5) > _TIE_MARGIN
        n = np.rint(np.where(fast, scaled, 0.0))
        rounded = n / 1e9
    fast &= (n == 0) | (np.abs(rounded) >= _FLOAT_FAST_MIN)
    magnitude = np.abs(np.where(fast, n, 0.0)).astype(np.int64)
    whole = pa.array(magnitude // 1_000_000_000).cast(pa.large_string())
    frac = pc.utf8_rtrim(pc.utf8_lpad(pa.array(magnitude % 1_000_000_000).cast(pa.large_string()), 9, "0"), "0")
    frac = pc.if_else(pc.equal(pc.binary_length(frac), 0), text("0"), frac)
    sign = pc.if_else(pa.array(np.signbit(rounded)), text("-"), text(""))
    out = pc.binary_join_element_wise(sign, whole, text("."), frac, text(""))
    if not fast.all():
        texts = [float_json(v) for v in values[~fast].tolist()]
        out = pc.replace_with_mask(out, pa.array(~fast), pa.array(texts, type=pa.large_string()))
    return out


def object_cells(values: Iterable[Any], release_root: str | None) -> list[str]:
    """Cells of a column of Python objects: str/None/float/bool inline, anything else via `cell_json`."""
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
            append(float_json(value))
        elif kind is bool:
            append("true" if value else "false")
        else:
            append(cell_json(value, release_root))
    return out


def column_cells(col: pd.Series, release_root: str | None) -> pa.Array:
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
            return pc.if_else(pa.array(values, type=pa.bool_()), text("true"), text("false"))
        if dtype.kind in "iu":
            return pa.array(values).cast(pa.large_string())
        if dtype.itemsize <= 8:  # float16/32 widen to float64 exactly, as ndarray.item does
            bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
            codes, uniques = pd.factorize(bits)
            return float_texts(uniques.view(np.float64)).take(pa.array(codes))
    if isinstance(dtype, pd.StringDtype):
        return string_cells(large_strings(col), release_root)
    return pa.array(object_cells(col, release_root), type=pa.large_string())


def large_strings(col: pd.Series) -> pa.Array:
    """A string column (str, or a missing value: None, NaN, pd.NA) as one large_string Arrow array."""
    try:
        arr = pa.array(col.array, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):  # python-backed StringDtype, object column
        arr = pa.array(col.to_numpy(dtype=object, na_value=None), type=pa.large_string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.cast(pa.large_string())


def string_cells(arr: pa.Array, release_root: str | None) -> pa.Array:
    """Cells of a large_string array (str or null) with Arrow kernels: what `object_cells` writes.

    A string under `release_root` is rewritten `<release>...`; a missing value is `null`; a string
    of printable ASCII without `"` or `\\` is its text in quotes (as `encode_basestring_ascii`
    writes it); the rest (unicode, control characters, quotes) are encoded one by one in Python.
    The per-row kernels for the first and the last case run only when the column's bytes, scanned
    at once, hold the root or a byte to escape.
    """
    data = _value_bytes(arr)
    if release_root and release_root.encode() in data.tobytes():
        inside = pc.fill_null(pc.starts_with(arr, release_root), False)
        if pc.any(inside).as_py():
            prefix = "^" + "".join(f"\\x{{{ord(c):x}}}" for c in release_root)  # RE2: every character literal
            arr = pc.replace_substring_regex(arr, prefix, RELEASE_PLACEHOLDER, max_replacements=1)
            data = _value_bytes(arr)
    cells = pc.fill_null(pc.binary_join_element_wise(text('"'), arr, text('"'), text("")), text("null"))
    raw = np.frombuffer(data, dtype=np.uint8)
    if not ((raw < 0x20) | (raw > 0x7E) | (raw == 0x22) | (raw == 0x5C)).any():
        return cells
    escape = pc.fill_null(pc.match_substring_regex(arr, _NEEDS_ESCAPE), False)
    if pc.any(escape).as_py():
        texts = [_encode_str(v) for v in pc.filter(arr, escape).to_pylist()]
        cells = pc.replace_with_mask(cells, escape, pa.array(texts, type=pa.large_string()))
    return cells
