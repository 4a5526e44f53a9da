"""Mergeable partial reductions: what each shard computes so a whole-release summary needs no whole table.

A *reduction* is a JSON-able dict with up to six kinds of entries, each merged by its own rule; the
merge is associative and commutative, so the merged result is the same whatever the shard layout,
the grouping and the order of merging (tests/tasks/core/test_reduce.py):

- ``sums``: nested dicts whose leaves are ints or lists of ints, added element-wise. Seconds are
  summed as integer nanoseconds (`ns`), so the sum is exact and independent of the order;
- ``minmax``: ``{name: [min, max]}`` (None when empty);
- ``flags``: ``{name: bool}``, or-ed (e.g. "some part had this column");
- ``values``: capped value histograms ``{name: {"q": quantum, "exact": bool, "counts": {repr(v): n}}}``:
  exact value counts while at most `VALUE_CAP` distinct values are seen, then counts on FIXED bins of
  width ``q`` (``round(v / q) * q``). Medians and plots read them; exact below the cap;
- ``top``: ``{name: {"k": k, "groups": {group: [[key, row], ...]}}}``: per group the `k` records
  with the lowest key (a seeded hash rank, or an id); the k lowest of a union are among the k lowest
  of each part, so the merged sample does not depend on the layout. ``k`` None keeps every record;
- ``hashes``: ``{name: {group: base64 of sorted uint64}}``: 64-bit hashes of keys (8 bytes a row),
  to count keys repeated across parts (collisions: ~n^2 / 2^65, 3e-6 at 10 million keys).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

VALUE_CAP = 10_000
KINDS: tuple[str, ...] = ("sums", "minmax", "flags", "values", "top", "hashes")


def empty() -> dict[str, Any]:
    """A reduction with nothing in it (the identity of `merge`)."""
    return {k: {} for k in KINDS}


def ns(seconds: Any) -> int:
    """Seconds as integer nanoseconds (exact, order-independent sums)."""
    return int(round(float(seconds) * 1e9))


def ns_series(seconds: pd.Series) -> pd.Series:
    """A column of seconds as int64 nanoseconds; null and unparsable count as 0."""
    values = pd.to_numeric(seconds, errors="coerce").fillna(0.0).astype(float)
    return (values * 1e9).round().astype("int64")


def hours(nanoseconds: int) -> float:
    return round(nanoseconds / 3.6e12, 6)


# ----------------------------------------------------------------------------------------- sums
def add(a: Any, b: Any) -> Any:
    """Element-wise sum of two nested dicts/lists/ints (a new object; inputs are not changed)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = {k: _copy(v) for k, v in a.items()}
        for k, v in b.items():
            out[k] = add(out[k], v) if k in out else _copy(v)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            raise ValueError(f"cannot add lists of lengths {len(a)} and {len(b)}")
        return [add(x, y) for x, y in zip(a, b, strict=True)]
    return int(a) + int(b)


def _copy(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def nested_counts(frame: pd.DataFrame, columns: list[str], weights: Mapping[str, pd.Series] | None = None
                  ) -> dict[str, Any]:
    """{v1: {v2: ... n}} counts over string columns of `frame`; with `weights` each leaf is
    [n, sum(w) for w in weights] (int64 columns, e.g. nanoseconds)."""
    if frame.empty:
        return {}
    codes, uniques = [], []
    for c in columns:
        code, uniq = pd.factorize(frame[c].astype(object), sort=False, use_na_sentinel=False)
        codes.append(code)
        uniques.append([str(v) for v in uniq])
    keys, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    n = np.bincount(inverse, minlength=len(keys))
    sums = []
    for w in (weights or {}).values():
        acc = np.zeros(len(keys), dtype=np.int64)
        np.add.at(acc, inverse, w.to_numpy().astype(np.int64))  # exact int64, unlike bincount's floats
        sums.append(acc)
    out: dict[str, Any] = {}
    for i, key in enumerate(keys):
        node = out
        for level, code in enumerate(key[:-1]):
            node = node.setdefault(uniques[level][code], {})
        node[uniques[-1][key[-1]]] = [int(n[i]), *(int(acc[i]) for acc in sums)] if weights else int(n[i])
    return out


# ----------------------------------------------------------------------------------------- values
def _quantise(key: str, q: float) -> str:
    return repr(round(round(float(key) / q) * q, 10))


def value_counts(values: Iterable[float], q: float) -> dict[str, Any]:
    """A capped value histogram of `values` (NaN dropped); see the module docstring."""
    counts: dict[str, int] = {}
    for v in values:
        f = float(v)
        if f == f:
            key = repr(f)
            counts[key] = counts.get(key, 0) + 1
    return _capped({"q": q, "exact": True, "counts": counts})


def _capped(vm: dict[str, Any]) -> dict[str, Any]:
    if vm["exact"] and len(vm["counts"]) <= VALUE_CAP:
        return vm
    q, out = vm["q"], {}
    for key, n in vm["counts"].items():
        qk = _quantise(key, q)
        out[qk] = out.get(qk, 0) + n
    return {"q": q, "exact": False, "counts": out}


def merge_values(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    if a["q"] != b["q"]:
        raise ValueError(f"value histograms with different bins ({a['q']} vs {b['q']})")
    exact = a["exact"] and b["exact"]
    if not exact:  # bin both sides first: binning is idempotent and commutes with adding
        a, b = _capped({**a, "exact": False}), _capped({**b, "exact": False})
    return _capped({"q": a["q"], "exact": exact, "counts": add(a["counts"], b["counts"])})


def sorted_values(vm: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """(values ascending, counts) of a value histogram."""
    if not vm or not vm["counts"]:
        return np.array([], dtype=float), np.array([], dtype=np.int64)
    items = sorted((float(k), int(n)) for k, n in vm["counts"].items())
    return np.array([v for v, _ in items]), np.array([n for _, n in items], dtype=np.int64)


def median(vm: Mapping[str, Any] | None) -> float | None:
    """The median (pandas' rule: mean of the two middle values for an even count)."""
    values, counts = sorted_values(vm)
    total = int(counts.sum())
    if total == 0:
        return None
    cum = np.cumsum(counts)

    def at(i: int) -> float:
        return float(values[int(np.searchsorted(cum, i + 1))])

    return at(total // 2) if total % 2 else (at(total // 2 - 1) + at(total // 2)) / 2.0


# ----------------------------------------------------------------------------------------- top-k
def _order(record: list[Any]) -> tuple[list[Any], str]:
    key = record[0] if isinstance(record[0], list) else [record[0]]
    return key, json.dumps(record[1], sort_keys=True, default=str)


def top(k: int | None, groups: Mapping[str, Iterable[tuple[Any, Mapping[str, Any]]]]) -> dict[str, Any]:
    """A top-k entry: per group the k records (key, row) with the lowest key (a string or a list of
    strings, compared as Python compares them; ties broken by the row's JSON text)."""
    out = {}
    for g, records in groups.items():
        recs = sorted(([key, dict(row)] for key, row in records), key=_order)
        out[str(g)] = recs if k is None else recs[:k]
    return {"k": k, "groups": out}


def merge_top(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    if a["k"] != b["k"]:
        raise ValueError(f"top-k samples with different k ({a['k']} vs {b['k']})")
    groups = {g: list(v) for g, v in a["groups"].items()}
    for g, recs in b["groups"].items():
        groups[g] = [*groups.get(g, []), *recs]
    return top(a["k"], {g: [(r[0], r[1]) for r in recs] for g, recs in groups.items()})


# ----------------------------------------------------------------------------------------- hashes
def key_hashes(keys: Iterable[str]) -> str:
    """base64 of the sorted uint64 hashes (first 8 bytes of sha256) of `keys`."""
    h = np.array(sorted(int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:8], "little") for k in keys),
                 dtype="<u8")
    return base64.b64encode(h.tobytes()).decode()


def decode_hashes(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<u8")


def _merge_hashes(a: str, b: str) -> str:
    both = np.sort(np.concatenate([decode_hashes(a), decode_hashes(b)]))
    return base64.b64encode(both.astype("<u8").tobytes()).decode()


# ----------------------------------------------------------------------------------------- merge
def _merge_minmax(a: list[Any], b: list[Any]) -> list[Any]:
    lo = [v for v in (a[0], b[0]) if v is not None]
    hi = [v for v in (a[1], b[1]) if v is not None]
    return [min(lo) if lo else None, max(hi) if hi else None]


def _union(a: Mapping[str, Any], b: Mapping[str, Any], merge_one: Any) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge_one(out[k], v) if k in out else v
    return out


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two reductions (associative, commutative; `empty()` is the identity)."""
    return {
        "sums": add(a.get("sums", {}), b.get("sums", {})),
        "minmax": _union(a.get("minmax", {}), b.get("minmax", {}), _merge_minmax),
        "flags": _union(a.get("flags", {}), b.get("flags", {}), lambda x, y: bool(x or y)),
        "values": _union(a.get("values", {}), b.get("values", {}), merge_values),
        "top": _union(a.get("top", {}), b.get("top", {}), merge_top),
        "hashes": {n: _union(a.get("hashes", {}).get(n, {}), b.get("hashes", {}).get(n, {}), _merge_hashes)
                   for n in sorted({*a.get("hashes", {}), *b.get("hashes", {})})},
    }


def merge_all(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    out = empty()
    for part in parts:
        out = merge(out, part)
    return out


def canonical(reduction: Mapping[str, Any]) -> str:
    """The reduction as canonical JSON text: equal text = equal reductions (used by the tests)."""
    return json.dumps(reduction, sort_keys=True, separators=(",", ":"))
