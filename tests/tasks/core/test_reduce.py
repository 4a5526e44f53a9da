"""Mergeable reductions: every kind merges associatively and in any order to the same result."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pandas as pd
import pytest

from tasks.core import reduce


def _part(rng: random.Random, n: int) -> dict:
    values = [round(rng.uniform(0.5, 9.0), 4) for _ in range(n)]
    frame = pd.DataFrame({"a": [rng.choice("xyz") for _ in range(n)], "b": [rng.choice("pq") for _ in range(n)]})
    ids = [f"u{rng.randrange(10_000):05d}" for _ in range(n)]
    return {
        "sums": {"t": reduce.nested_counts(frame, ["a", "b"], {"ns": pd.Series([reduce.ns(v) for v in values])})},
        "minmax": {"v": [min(values), max(values)] if values else [None, None]},
        "flags": {"f": rng.random() < 0.3},
        "values": {"v": reduce.value_counts(values, 0.01)},
        "top": {"ids": reduce.top(5, {g: [([i], {"i": i})] for g, i in zip(frame["a"], ids, strict=True)})},
        "hashes": {"keys": {"all": reduce.key_hashes(ids)}},
    }


def _merge_tree(parts: list[dict], rng: random.Random) -> dict:
    """Merge in a random binary grouping."""
    parts = list(parts)
    while len(parts) > 1:
        i = rng.randrange(len(parts) - 1)
        parts[i:i + 2] = [reduce.merge(parts[i], parts[i + 1])]
    return parts[0]


@pytest.mark.parametrize("cap", [reduce.VALUE_CAP, 7])
def test_merge_is_associative_and_order_independent(monkeypatch, cap):
    monkeypatch.setattr(reduce, "VALUE_CAP", cap)  # 7: the value histograms switch to fixed bins mid-merge
    rng = random.Random(3)
    parts = [_part(rng, n) for n in (0, 4, 9, 1, 6, 3)]
    expected = reduce.canonical(reduce.merge_all(parts))
    for seed in range(8):
        shuffled = parts[:]
        random.Random(seed).shuffle(shuffled)
        assert reduce.canonical(_merge_tree(shuffled, random.Random(seed + 100))) == expected
    for a, b in itertools.combinations(range(len(parts)), 2):
        left = reduce.merge(reduce.merge(parts[a], parts[b]), reduce.merge_all(p for i, p in enumerate(parts)
                                                                                if i not in (a, b)))
        assert reduce.canonical(left) == expected
    assert reduce.canonical(reduce.merge(reduce.empty(), reduce.merge_all(parts))) == expected


def test_value_histogram_exact_below_the_cap_and_binned_above(monkeypatch):
    values = [1.0, 2.0, 2.0, 3.5, 10.0]
    exact = reduce.value_counts(values, 0.5)
    assert exact["exact"] and reduce.median(exact) == 2.0
    assert reduce.median(reduce.value_counts([1.0, 2.0, 3.0, 4.0], 0.5)) == 2.5  # pandas' even-count rule
    monkeypatch.setattr(reduce, "VALUE_CAP", 2)
    binned = reduce.merge_values(reduce.value_counts([1.1, 1.2], 0.5), reduce.value_counts([3.3], 0.5))
    assert not binned["exact"]
    assert binned["counts"] == {"1.0": 2, "3.5": 1}


def test_top_keeps_the_k_lowest_of_the_union_whatever_the_split():
    keys = [f"{i:04d}" for i in random.Random(1).sample(range(1000), 60)]
    whole = reduce.top(7, {"g": [(k, {"k": k}) for k in keys]})
    chunks = [keys[i:i + 9] for i in range(0, 60, 9)]
    merged = reduce.merge_all({"top": {"s": reduce.top(7, {"g": [(k, {"k": k}) for k in c]})}} for c in chunks)
    assert merged["top"]["s"] == whole == {"k": 7, "groups": {"g": [[k, {"k": k}] for k in sorted(keys)[:7]]}}


def test_sums_are_exact_integers_and_hashes_count_repeats():
    a = reduce.nested_counts(pd.DataFrame({"s": ["x", "x", "y"]}), ["s"], {"ns": pd.Series([1, 2, 3])})
    assert a == {"x": [2, 3], "y": [1, 3]}
    assert reduce.add(a, {"x": [1, 10]}) == {"x": [3, 13], "y": [1, 3]}
    h = reduce.merge({"hashes": {"k": {"s": reduce.key_hashes(["a", "b"])}}},
                     {"hashes": {"k": {"s": reduce.key_hashes(["b", "c"])}}})
    values, counts = np.unique(reduce.decode_hashes(h["hashes"]["k"]["s"]), return_counts=True)
    assert len(values) == 3 and sorted(counts.tolist()) == [1, 1, 2]


def _nested_counts_by_row_unique(frame, columns, weights=None):
    """The previous `nested_counts` (a 2-D np.unique over the code rows), kept as the oracle."""
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
        np.add.at(acc, inverse, w.to_numpy().astype(np.int64))
        sums.append(acc)
    out: dict = {}
    for i, key in enumerate(keys):
        node = out
        for level, code in enumerate(key[:-1]):
            node = node.setdefault(uniques[level][code], {})
        node[uniques[-1][key[-1]]] = [int(n[i]), *(int(acc[i]) for acc in sums)] if weights else int(n[i])
    return out


@pytest.mark.parametrize("n", [0, 1, 7, 500])
def test_nested_counts_equals_the_row_unique_oracle(n):
    """Same nesting, key order and leaves as the 2-D unique, with nulls (None, NaN), str and object
    columns, one to three levels and int64 weights beyond float precision."""
    rng = np.random.default_rng(n)
    frame = pd.DataFrame({
        "a": pd.Series([("x", None, "é", "y")[i] for i in rng.integers(0, 4, n)], dtype="str"),
        "b": pd.Series([("p", None, float("nan"), "q", "")[i] for i in rng.integers(0, 5, n)], dtype=object),
        "c": pd.Series([f"v{i}" for i in rng.integers(0, 50, n)], dtype=object),
    })
    w = {"ns": pd.Series(rng.integers(0, 2**62, n), dtype="int64"), "k": pd.Series(rng.integers(-5, 5, n))}
    for columns in (["a"], ["b", "a"], ["a", "b", "c"], ["c", "c"]):
        for weights in (None, w):
            got = reduce.nested_counts(frame, columns, weights)
            assert got == _nested_counts_by_row_unique(frame, columns, weights)
            assert reduce.canonical({"s": got}) == reduce.canonical({"s": _nested_counts_by_row_unique(frame, columns, weights)})
            assert list(got) == list(_nested_counts_by_row_unique(frame, columns, weights))


def test_value_counts_of_arrays_equals_the_value_loop():
    """The array path keeps repr keys per distinct value (-0.0 apart from 0.0), drops NaN, keeps first-seen order."""
    values = [0.5, -0.0, 0.0, float("nan"), 0.1 + 0.2, 0.5, float("inf"), -0.0, 1e-7, 3.0]
    for arr in (pd.Series(values), np.array(values), pd.Series(values, dtype=np.float32), pd.Series([], dtype=float)):
        got = reduce.value_counts(arr, 0.01)
        loop = reduce.value_counts(list(arr), 0.01)
        assert got == loop
        assert list(got["counts"]) == list(loop["counts"])
    assert reduce.value_counts(pd.Series(values), 0.01)["counts"]["-0.0"] == 2


def test_top_cut_as_it_grows_picks_what_one_cut_at_the_end_picks():
    """Parts merged from a generator, cut to k whenever a group reaches 2k, pick the k lowest of all."""
    rng = random.Random(5)
    keys = [f"{i:06d}" for i in rng.sample(range(100_000), 2_000)]
    cuts = sorted(rng.sample(range(1, len(keys)), 80))
    parts = [keys[a:b] for a, b in zip([0, *cuts], [*cuts, len(keys)], strict=True)]
    merged = reduce.merge_all({"top": {"s": reduce.top(3, {"g": [(k, {"k": k}) for k in p], "h": [(k, {}) for k in p[:1]]})}}
                              for p in parts)
    assert merged["top"]["s"]["groups"]["g"] == [[k, {"k": k}] for k in sorted(keys)[:3]]
    assert merged["top"]["s"]["groups"]["h"] == [[k, {}] for k in sorted({p[0] for p in parts})[:3]]


def _recount_by_unique(groups):
    """The previous card recount (np.unique of per-group and of all hashes), kept as the oracle."""
    per_group = [np.unique(reduce.decode_hashes(c)) for c in groups.values()]
    every = [reduce.decode_hashes(c) for c in groups.values()]
    if not every:
        return 0, 0
    _, n_rows = np.unique(np.concatenate(every), return_counts=True)
    _, n_groups = np.unique(np.concatenate(per_group), return_counts=True)
    return int((n_groups > 1).sum()), int((n_rows > 1).sum())


@pytest.mark.parametrize("seed", range(6))
def test_recount_keys_equals_the_unique_oracle(seed):
    rng = random.Random(seed)
    names = ["train", "dev", "test", "unknown"][: rng.randrange(1, 5)]
    pool = [f"key-{i}" for i in range(rng.randrange(1, 400))]
    groups = {name: [reduce.key_hashes(rng.choices(pool, k=rng.randrange(0, 60))) for _ in range(rng.randrange(1, 5))]
              for name in names}
    groups = {name: [c for chunks in parts for c in chunks] for name, parts in groups.items()}
    assert reduce.recount_keys(groups) == _recount_by_unique(groups)


def test_recount_keys_names_the_cases():
    one = {"train": reduce.key_hashes(["a", "b", "b"]), "test": reduce.key_hashes(["c", "a"]),
           "dev": reduce.key_hashes(["d"]) + reduce.key_hashes(["d", "e"])}
    assert reduce.recount_keys(one) == (1, 3)  # "a" in two splits; "a", "b", "d" repeated
    assert reduce.recount_keys({}) == (0, 0)
    assert reduce.recount_keys({"train": reduce.key_hashes(["x"])}) == (0, 0)
