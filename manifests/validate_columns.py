"""Column helpers for the validator's per-part checks: pandas semantics without its slow paths.

pandas' `isin` on an Arrow-backed string column turns every allowed value into an Arrow scalar in
Python (`ArrowStringArray.isin`), which dominated validation (issue #16); `isin` here builds the
value set once, with the same rules, and asks pyarrow. `objects` gives a column as Python objects
with missing values as the one `np.nan` object, as iterating the pandas column does.
"""

from __future__ import annotations

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
    allowed = list(allowed) if not isinstance(allowed, (set, frozenset, list, tuple)) else allowed
    if not (isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "pyarrow"):
        return np.asarray(values.isin(allowed), dtype=bool)
    column = pa.array(values)
    value_set = [v for v in allowed if isinstance(v, str)]
    if any(_null_like(v) for v in allowed):
        value_set.append(None)
    if not value_set:
        return np.zeros(len(values), dtype=bool)
    found = pc.is_in(column, value_set=pa.array(value_set, type=column.type))
    return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def objects(values: pd.Series) -> np.ndarray:
    """The column as an object array; missing values are the single `np.nan` object (as iterating
    an Arrow string column gives), so sets and sorts of it behave as they do on the column."""
    if isinstance(values.dtype, pd.StringDtype):
        return values.to_numpy(dtype=object, na_value=np.nan)
    return values.to_numpy(dtype=object)
