"""`buckets`: shard and shuffle-partition numbers from sha256's first 6 bytes, equal to the hex formula.

The numbers decide which labelling shard an item lands in (`shard_numbers`) and which partition a
key is shuffled to; work folders from earlier runs and DESIGN-16's `int(sha256(key)[:12], 16) % n`
depend on them, so the faster form must give exactly the same numbers.
"""

from __future__ import annotations

import pandas as pd

from tasks.core.shards import buckets, shard_numbers, stable_hash
from tasks.plan.shuffle import part_of


def _hex_rule(key: object, n: int) -> int:
    return int(stable_hash(key)[:12], 16) % n


KEYS = ["utt-1", "msp_podcast:ep_7.wav:12.500-15.000", "é⚡ unicode", "", "x" * 500, 12345, 3.5]


def test_buckets_equal_the_hex_formula_for_every_count() -> None:
    for n in (1, 2, 7, 64, 256, 1 << 20):
        assert buckets(KEYS, n) == [_hex_rule(k, n) for k in KEYS]


def test_shard_numbers_and_shuffle_parts_keep_the_index_and_the_numbers() -> None:
    ids = pd.Series([f"id-{i}" for i in range(1000)], index=range(5, 1005))
    got = shard_numbers(ids, 32)
    assert got.index.equals(ids.index) and got.dtype == "int64"
    assert got.tolist() == [_hex_rule(i, 32) for i in ids]
    parts = part_of(ids, 16)
    assert parts.index.equals(ids.index) and parts.tolist() == [_hex_rule(i, 16) for i in ids]
    assert part_of(ids, 1).eq(0).all()
