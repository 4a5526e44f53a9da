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
  with the lowest key (a seeded hash rank, or an id; unique within a group); the k lowest of a union
  are among the k lowest of each part, so the merged sample does not depend on the layout. ``k``
  None keeps every record;
- ``hashes``: ``{name: {group: [base64 chunk, ...]}}``: 64-bit hashes of keys (8 bytes a row), one
  sorted chunk per part, kept as a sorted list of chunks; they count keys repeated across parts
  (collisions: ~n^2 / 2^65, 3e-6 at 10 million keys).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import math
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


Factorized = tuple[np.ndarray, list[str]]  # (codes, the string of each code), as `factorized` gives


def factorized(values: pd.Series | np.ndarray) -> Factorized:
    """A column's codes and their values as strings (the grouping `nested_counts` uses): factorize a
    column once when it is grouped with several others."""
    code, uniq = pd.factorize(np.asarray(values, dtype=object), sort=False, use_na_sentinel=False)
    return code, [str(v) for v in uniq]


def nested_counts(frame: pd.DataFrame, columns: list[str], weights: Mapping[str, pd.Series] | None = None
                  ) -> dict[str, Any]:
    """{v1: {v2: ... n}} counts over string columns of `frame`; with `weights` each leaf is
    [n, sum(w) for w in weights] (int64 columns, e.g. nanoseconds)."""
    if frame.empty:
        return {}
    return nested_counts_of([factorized(frame[c]) for c in columns], weights)


def nested_counts_of(columns: list[Factorized], weights: Mapping[str, pd.Series] | None = None) -> dict[str, Any]:
    """`nested_counts` of already factorized columns (all of one length)."""
    if not len(columns[0][0]):
        return {}
    codes, uniques = [c for c, _ in columns], [u for _, u in columns]
    keys, inverse = _unique_rows(codes)
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


def _unique_rows(codes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)` (keys in lexicographic order),
    through one mixed-radix int64 key per row when the code ranges allow (a 1-D unique is far cheaper)."""
    sizes = [int(c.max()) + 1 if len(c) else 1 for c in codes]
    if math.prod(sizes) >= 2**62:
        keys, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
        return keys, inverse.reshape(-1)
    combined = np.zeros(len(codes[0]), dtype=np.int64)
    for code, size in zip(codes, sizes, strict=True):
        combined = combined * size + code
    uniq, inverse = np.unique(combined, return_inverse=True)
    keys = np.empty((len(uniq), len(codes)), dtype=np.int64)
    for level in range(len(codes) - 1, -1, -1):
        uniq, keys[:, level] = np.divmod(uniq, sizes[level])
    return keys, inverse.reshape(-1)


# ----------------------------------------------------------------------------------------- values
def _quantise(key: str, q: float) -> str:
    return repr(round(round(float(key) / q) * q, 10))


def value_counts(values: Iterable[float], q: float) -> dict[str, Any]:
    """A capped value histogram of `values` (NaN dropped); see the module docstring."""
    if isinstance(values, pd.Series | np.ndarray) and np.asarray(values).dtype.kind == "f":
        floats = np.asarray(values, dtype=np.float64)
        floats = floats[~np.isnan(floats)]
        # one key per bit pattern (so -0.0 and 0.0 stay apart, as repr keeps them), first-seen order
        bits, first, n = np.unique(floats.view(np.uint64), return_index=True, return_counts=True)
        order = np.argsort(first, kind="stable")
        keys = [repr(v) for v in bits[order].view(np.float64).tolist()]
        return _capped({"q": q, "exact": True, "counts": dict(zip(keys, n[order].tolist(), strict=True))})
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
def _order(record: list[Any]) -> list[Any]:
    return record[0] if isinstance(record[0], list) else [record[0]]


def _select(k: int | None, records: list[list[Any]]) -> list[list[Any]]:
    return sorted(records, key=_order) if k is None else heapq.nsmallest(k, records, key=_order)


def top(k: int | None, groups: Mapping[str, Iterable[tuple[Any, Mapping[str, Any]]]]) -> dict[str, Any]:
    """A top-k entry: per group the k records (key, row) with the lowest key (a string or a list of
    strings, compared as Python compares them). Keys must be unique within a group unless their
    records are identical (include the id), so the pick does not depend on the order of records."""
    return {"k": k, "groups": {str(g): _select(k, [[key, dict(row)] for key, row in records])
                               for g, records in groups.items()}}


# ----------------------------------------------------------------------------------------- hashes
def key_hashes(keys: Iterable[str]) -> list[str]:
    """[base64 of the sorted uint64 hashes (first 8 bytes of sha256) of `keys`] (one chunk; a merge keeps
    the sorted list of every part's chunk, so merging copies no arrays)."""
    h = np.array(sorted(int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:8], "little") for k in keys),
                 dtype="<u8")
    return [base64.b64encode(h.tobytes()).decode()] if len(h) else []


def decode_hashes(chunks: list[str]) -> np.ndarray:
    """Every hash of the chunks, as one uint64 array."""
    arrays = [np.frombuffer(base64.b64decode(c), dtype="<u8") for c in chunks]
    return np.concatenate(arrays) if arrays else np.array([], dtype="<u8")


def _chunk_rows(chunk: str) -> int:
    """Hashes in one base64 chunk, from its length (no decoding)."""
    return (len(chunk) * 3 // 4 - (len(chunk) - len(chunk.rstrip("=")))) // 8


def recount_keys(groups: Mapping[str, list[str]]) -> tuple[int, int]:
    """(keys in two or more groups, keys seen more than once) from the hash chunks of each group, sorted
    once in place (`manifests.key_runs`: ~2x the hashes at the peak, 160 MB at 10 million keys)."""
    from manifests import key_runs

    names = sorted(groups)
    bits = key_runs.code_bits(len(names))
    total = sum(_chunk_rows(c) for name in names for c in groups[name])
    packed = key_runs.pack(((np.frombuffer(base64.b64decode(c), dtype="<u8"), code)
                            for code, name in enumerate(names) for c in groups[name]), total, bits)
    _, in_two = key_runs.repeated(packed, bits)
    return int(np.count_nonzero(in_two)), len(in_two)


# ----------------------------------------------------------------------------------------- merge
def _add_into(acc: dict[str, Any], b: Mapping[str, Any]) -> None:
    """`add` in place into `acc` (no copy of the accumulated side: merging n parts is linear)."""
    for k, v in b.items():
        if k not in acc:
            acc[k] = _copy(v)
        elif isinstance(v, Mapping):
            _add_into(acc[k], v)
        elif isinstance(v, list):
            acc[k] = add(acc[k], v)
        else:
            acc[k] = int(acc[k]) + int(v)


def merge_all(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge any number of reductions (associative, commutative; `empty()` is the identity).

    One pass with in-place accumulators: value histograms are binned as soon as they pass the cap,
    and each top-k group is cut to k whenever it reaches 2k records (the k lowest of a union are
    among the k lowest of any subset, so the pick is the same) and once at the end. `parts` may be a
    generator: a caller that reads one part at a time holds only the accumulators and that part.
    """
    out = empty()
    records: dict[str, dict[str, list[list[Any]]]] = {}
    top_k: dict[str, int | None] = {}
    for part in parts:
        _add_into(out["sums"], part.get("sums", {}))
        for name, (lo, hi) in part.get("minmax", {}).items():
            cur = out["minmax"].get(name, [None, None])
            los, his = [v for v in (cur[0], lo) if v is not None], [v for v in (cur[1], hi) if v is not None]
            out["minmax"][name] = [min(los) if los else None, max(his) if his else None]
        for name, flag in part.get("flags", {}).items():
            out["flags"][name] = bool(out["flags"].get(name) or flag)
        for name, vm in part.get("values", {}).items():
            cur = out["values"].get(name)
            out["values"][name] = _copy(vm) if cur is None else _merge_values_into(cur, vm)
        for name, entry in part.get("top", {}).items():
            if name in top_k and top_k[name] != entry["k"]:
                raise ValueError(f"top-k samples {name!r} with different k ({top_k[name]} vs {entry['k']})")
            top_k[name] = entry["k"]
            groups = records.setdefault(name, {})
            for g, recs in entry["groups"].items():
                acc = groups.setdefault(g, [])
                acc.extend(recs)
                if entry["k"] is not None and len(acc) >= 2 * max(int(entry["k"]), 1):
                    groups[g] = _select(entry["k"], acc)  # cut as it grows: memory ~2k records, same pick
        for name, groups in part.get("hashes", {}).items():
            acc = out["hashes"].setdefault(name, {})
            for g, chunks in groups.items():
                acc.setdefault(g, []).extend(chunks)
    out["top"] = {name: {"k": top_k[name], "groups": {g: _select(top_k[name], recs) for g, recs in groups.items()}}
                  for name, groups in records.items()}
    out["hashes"] = {name: {g: sorted(chunks) for g, chunks in groups.items()} for name, groups in out["hashes"].items()}
    return out


def _merge_values_into(acc: dict[str, Any], vm: Mapping[str, Any]) -> dict[str, Any]:
    if acc["q"] != vm["q"]:
        raise ValueError(f"value histograms with different bins ({acc['q']} vs {vm['q']})")
    if acc["exact"] and not vm["exact"]:
        acc = _capped({**acc, "exact": False})
    if not acc["exact"] and vm["exact"]:
        vm = _capped({**vm, "exact": False})
    for key, n in vm["counts"].items():
        acc["counts"][key] = acc["counts"].get(key, 0) + int(n)
    return _capped(acc)


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Merge two reductions (see `merge_all`)."""
    return merge_all([a, b])


def canonical(reduction: Mapping[str, Any]) -> str:
    """The reduction as canonical JSON text: equal text = equal reductions (used by the tests)."""
    return json.dumps(reduction, sort_keys=True, separators=(",", ":"))
