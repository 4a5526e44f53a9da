"""The plan's per-shard files (DESIGN-16 section 2): what publish and augment map over."""

from __future__ import annotations

import pandas as pd

from tasks.core.shards import read_frame, stable_hash
from tasks.plan.step import write_plan_shards


def _frames(n: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    items = pd.DataFrame({"utterance_id": [f"s/u{i}" for i in range(n)], "split": ["train"] * n})
    rows = pd.DataFrame({"utterance_id": [f"s/u{i // 2}" for i in range(2 * n)],
                         "row_id": [f"s/u{i // 2}#{i % 2}" for i in range(2 * n)]})
    rejects = pd.DataFrame({"source": ["s"] * 3, "input_ref": ["s/r0", "s/r1", "s/r2"], "stage": ["plan"] * 3,
                            "reason": ["missing_label"] * 3, "detail": ["x"] * 3})
    return items, rows, rejects


def test_rows_lie_in_their_utterance_shard_and_rejects_by_hash(tmp_path):
    items, rows, rejects = _frames(40)
    shards = write_plan_shards(str(tmp_path), items, rows, rejects, shard_size=8)
    assert [s["index"] for s in shards] == list(range(len(shards))) and len(shards) > 1
    seen_utts, seen_rows, seen_rejects = [], [], []
    for shard in shards:
        utts = read_frame(shard["utterances_uri"])
        mine = read_frame(shard["rows_uri"])
        assert set(mine["utterance_id"]) <= set(utts["utterance_id"])  # rows beside their utterance
        assert list(utts["utterance_id"]) == sorted(utts["utterance_id"])
        seen_utts += list(utts["utterance_id"])
        seen_rows += list(mine["row_id"])
        seen_rejects += list(read_frame(shard["rejects_uri"])["input_ref"])
    assert sorted(seen_utts) == sorted(items["utterance_id"]) and sorted(seen_rows) == sorted(rows["row_id"])
    assert sorted(seen_rejects) == sorted(rejects["input_ref"])
    # one modulus for utterances and rejects: a reject of utterance u would sit in u's shard
    n = 8  # shard_count(40, 8) = 8 (a power of two >= 5)
    groups = sorted({int(stable_hash(k)[:12], 16) % n for k in [*items["utterance_id"], *rejects["input_ref"]]})
    assert len(groups) == len(shards)


def test_nothing_planned_gives_one_empty_shard_with_columns(tmp_path):
    items, rows, rejects = (df.iloc[0:0] for df in _frames(4))
    (shard,) = write_plan_shards(str(tmp_path), items, rows, rejects, shard_size=8)
    assert shard["index"] == 0
    assert list(read_frame(shard["rows_uri"]).columns) == ["utterance_id", "row_id"]
    assert read_frame(shard["utterances_uri"]).empty
