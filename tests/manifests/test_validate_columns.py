"""The validator's `isin` against pandas' own on Arrow string columns, for every form of `allowed`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manifests.validate_columns import chars_without_space, isin

VALUES = ["a", "b", None, "c", "a", "", "ü", None]


def _column() -> pd.Series:
    return pd.Series(VALUES, dtype="string[pyarrow]")


ALLOWED = [
    ["a", "c"],
    ("a", None),
    {"b", float("nan")},
    [pd.NA, "ü"],
    ["a", 1, 2.5],  # other values never match a string column
    [1, 2],
    [],
    [None],
    [float("nan")],
    {""},
    pd.Index(["a", "", None], dtype="string[pyarrow]"),
    pd.Series(["b", "zzz"], dtype="string[pyarrow]"),
    pd.Index(["a", "b"], dtype=object),
    np.array(["c", "b"], dtype=object),
    (v for v in ["a", "b"]),
]


@pytest.mark.parametrize("allowed", ALLOWED, ids=range(len(ALLOWED)))
def test_isin_matches_pandas_on_arrow_strings(allowed):
    materialised = list(allowed) if not isinstance(allowed, list | tuple | set | pd.Index | pd.Series | np.ndarray) else allowed
    expected = np.asarray(_column().isin(list(materialised)), dtype=bool)
    assert isin(_column(), materialised).tolist() == expected.tolist()


def test_isin_of_many_ids_takes_the_column_as_it_is():
    ids = pd.Series([f"u{i:06d}" for i in range(20_000)], dtype="string[pyarrow]")
    known = pd.Index(ids[::3].tolist() + [None], dtype="string[pyarrow]")
    column = pd.concat([ids, pd.Series([None], dtype="string[pyarrow]")], ignore_index=True)
    assert isin(column, known).tolist() == np.asarray(column.isin(list(known)), dtype=bool).tolist()
    assert isin(column, set(ids[::3].tolist())).sum() == len(ids[::3])


def _old_chars(text):
    """The per-value rule the speaking-rate check used (the plan's `transcript_chars`)."""
    return None if not isinstance(text, str) else len("".join(text.split()))


def test_chars_without_space_counts_as_str_split_does():
    rng = np.random.default_rng(3)
    pieces = ["word", " ", "\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1f", "\x85", "\u00a0", "\u2003", "\u3000",
              "\u200b", "é", "日本", "😀", "x y", "", "  lead", "trail  "]
    texts = ["".join(rng.choice(pieces, rng.integers(0, 6)).tolist()) for _ in range(3_000)] + [None]
    for dtype in ("string[pyarrow]", object, "str"):
        col = pd.Series(texts, dtype=dtype)
        expected = pd.to_numeric(col.map(_old_chars), errors="coerce").to_numpy(dtype=float)
        np.testing.assert_array_equal(chars_without_space(col), expected)
