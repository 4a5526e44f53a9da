"""Sharding through buckets, one source at a time, gives exactly the shards of cutting the whole frame."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.core.shards import read_frame, shard_count, write_frame
from tasks.ingest import sharding
from tasks.ingest.corpora.base import utterances_frame
from tasks.ingest.step import make_shards
from tasks.spec import DatasetSpec


def _source(name: str, n: int, with_age: bool) -> pd.DataFrame:
    rows = [{"utterance_id": f"{name}/{i:05d}", "source": name, "audio_uri": f"/data/{name}/{i}.wav",
             "duration_s": 1.0 + i % 7 / 10, "sample_rate": 16000, "num_channels": 1, "speaker_id": f"{name}-spk{i % 13}",
             "transcript": f"utterance {i}" if i % 5 else None, "sentiment": ["negative", "neutral", "positive"][i % 3],
             "age": ("twenties" if i % 2 else "thirties") if with_age else None} for i in range(n)]
    return utterances_frame(rows)


def _ingest(tmp_path: Path) -> list[dict]:
    results = []
    for name, n, age in (("cv", 700, True), ("libri", 450, False), ("empty", 0, False), ("calls", 333, True)):
        uri = str(tmp_path / "ingest" / f"{name}.items.parquet")
        write_frame(uri, _source(name, n, age))
        results.append({"source": name, "items_uri": uri, "rejects_uri": "", "found": n, "notes": []})
    return results


def _spec(tmp_path: Path, out: str) -> DatasetSpec:
    return DatasetSpec.model_validate({
        "name": "sharding", "output": str(tmp_path / out),
        "sources": [{"name": "cv", "kind": "folder", "path": str(tmp_path)}],
        "run": {"shard_size": 50}})


def test_bucket_count_is_a_power_of_two_within_the_shard_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sharding, "BUCKET_ROWS", 100)
    assert sharding.bucket_count(50, 1) == 1
    assert sharding.bucket_count(1483, 32) == 16  # ceil(14.83) = 15 -> 16
    assert sharding.bucket_count(1483, 8) == 8  # never more buckets than shards
    assert sharding.bucket_count(0, 1) == 1


def test_bucketed_shards_equal_the_whole_frame_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ingest = _ingest(tmp_path)
    whole = make_shards(_spec(tmp_path, "whole"), ingest)  # 1,483 items: one bucket at the default size
    monkeypatch.setattr(sharding, "BUCKET_ROWS", 100)  # 16 buckets of 32 shards
    logged: list[str] = []
    bucketed = make_shards(_spec(tmp_path, "bucketed"), ingest, log=lambda m, *a: logged.append(m % a))
    assert len(whole) == shard_count(1483, 50) == 32
    assert [Path(u).name for u in bucketed] == [Path(u).name for u in whole]  # same content names, same order
    for a, b in zip(whole, bucketed, strict=True):
        fa, fb = read_frame(a), read_frame(b)
        assert list(fa.columns) == list(fb.columns) and fa.dtypes.to_dict() == fb.dtypes.to_dict()
        pd.testing.assert_frame_equal(fa, fb)
    every = pd.concat([read_frame(u) for u in bucketed], ignore_index=True)
    assert len(every) == 1483 and every["utterance_id"].is_unique  # nothing lost, nothing twice
    assert any("through 16 buckets" in line for line in logged)
    assert not (tmp_path / "bucketed" / "work" / "shards" / "buckets").exists() or not any(
        (tmp_path / "bucketed" / "work" / "shards" / "buckets").rglob("*.parquet"))  # scratch removed
