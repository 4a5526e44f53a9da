"""The digest's fast cell paths against the per-value code they replace (which defines the identity)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from manifests import digest_cells as dc

ROOT = "/data/out/releases/r1"


def _oracle_floats(values: np.ndarray) -> list[str]:
    return [dc.float_json(v) for v in np.asarray(values, dtype=np.float64).tolist()]


def _awkward_floats(rng: np.random.Generator) -> np.ndarray:
    """Magnitudes from subnormal to huge, ties at the 9th place, the fast path's edges, specials."""
    magnitudes = 10.0 ** rng.uniform(-14, 9, 40_000)
    signs = rng.choice([-1.0, 1.0], 40_000)
    ties = (rng.integers(-10**12, 10**12, 5_000) + 0.5) / 1e9  # exactly or nearly half a 1e-9 step
    near_ties = ties + rng.choice([-1, 1], 5_000) * rng.uniform(0, 2e-11, 5_000)
    short = rng.integers(-10**7, 10**7, 5_000) / 10.0 ** rng.integers(0, 10, 5_000)  # few decimals
    probs = rng.dirichlet([1, 1, 1], 3_000).ravel()
    edges = []
    for edge in (1e-4, 5e-5, 1e-9, 5e-10, 1e4, 9999.9999999996, 9999.9999999994, 0.9999999995, 1.0, 0.1 + 0.2):
        edges += [edge, -edge, np.nextafter(edge, 0), np.nextafter(edge, np.inf)]
    specials = [0.0, -0.0, np.nan, np.inf, -np.inf, 5e-324, -5e-324, 2.2250738585072014e-308,
                np.finfo(np.float64).max, 1e16, 123456789.123456789, 4503599627370496.5]
    return np.concatenate([magnitudes * signs, ties, near_ties, short, probs, edges, specials])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_float_texts_equal_float_json_for_every_value(seed):
    values = _awkward_floats(np.random.default_rng(seed))
    assert dc.float_texts(values).to_pylist() == _oracle_floats(values)


def test_float_texts_fall_back_only_where_unproven():
    """Exponent forms and ties still come out as `repr` writes them."""
    values = np.array([3e-5, -7.5e-6, 2.5e-9, 1.5e-9, 12345.678, -0.0, 1e-10, 0.00015, 1e20, np.nan])
    texts = dc.float_texts(values).to_pylist()
    assert texts == _oracle_floats(values)
    assert texts[:2] + texts[4:] == ["3e-05", "-7.5e-06", "12345.678", "-0.0", "0.0", "0.00015", "1e+20", "null"]


def test_float_texts_of_an_empty_column():
    assert dc.float_texts(np.array([], dtype=np.float64)).to_pylist() == []


def _strings(rng: np.random.Generator, n: int) -> list[str | None]:
    pieces = ["plain", "with space", ROOT + "/audio/a.flac", "x" + ROOT, 'say "hi"', "back\\slash", "tab\there",
              "new\nline", "café", "日本語", "emoji 😀", "", "~tilde", "\x7f", "bell\x07", ROOT, ROOT + "x"]
    out: list[str | None] = []
    for _ in range(n):
        if rng.random() < 0.1:
            out.append(None)
        else:
            out.append("".join(rng.choice(pieces, rng.integers(1, 4)).tolist()))
    return out


@pytest.mark.parametrize("root", [ROOT, None])
def test_string_cells_equal_the_per_value_encoding(root):
    values = _strings(np.random.default_rng(5), 3_000)
    arr = pa.array(values, type=pa.large_string())
    assert dc.string_cells(arr, root).to_pylist() == dc.object_cells(values, root)


def test_string_cells_of_a_slice_scan_only_the_slice():
    """A slice's bytes are its own: an escape or the root outside it must not matter, and inside it must."""
    values = ['need "escape"', ROOT + "/a", "plain", "also plain", "café"]
    arr = pa.array(values, type=pa.large_string())
    for start, stop in ((2, 4), (0, 2), (1, 5), (4, 5)):
        part = arr.slice(start, stop - start)
        assert dc.string_cells(part, ROOT).to_pylist() == dc.object_cells(values[start:stop], ROOT)


def test_root_in_the_middle_is_not_rewritten():
    values = ["prefix" + ROOT + "/a", ROOT + "/b"]
    assert dc.string_cells(pa.array(values, type=pa.large_string()), ROOT).to_pylist() == [
        '"prefix' + ROOT + '/a"', '"<release>/b"']


def test_column_cells_of_a_float_column_match_the_object_path():
    values = _awkward_floats(np.random.default_rng(9))[:20_000]
    col = pd.Series(values)
    assert dc.column_cells(col, None).to_pylist() == dc.object_cells(values.tolist(), None)
    assert dc.column_cells(col.astype(np.float32), None).to_pylist() == dc.object_cells(
        col.astype(np.float32).tolist(), None)
