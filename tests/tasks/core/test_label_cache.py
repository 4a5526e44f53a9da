"""The label cache: round trips, settings isolation, concurrent writers, re-runs, corrupt segments, S3."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core import storage
from tasks.core.label_cache import LabelCache, settings_hash, text_key

SETTINGS = {"model": "tiny.en", "beam_size": 1, "thresholds": {"a": 0.5}}


def _segments(cache: LabelCache) -> list[str]:
    return storage.list_files(cache.segments_uri, suffixes=(".parquet",))


def test_round_trip_and_stats(tmp_path: Path) -> None:
    cache = LabelCache(str(tmp_path), "whisper", SETTINGS)
    labels = {
        "k1": {"transcript": "hello there", "confidence": 0.93, "words": 2, "ok": True, "lang": None},
        "k2": {"transcript": "née à Zürich", "confidence": 0.5, "words": 3, "ok": False, "lang": "fr"},
    }
    cache.put_many(labels)
    assert cache.get_many(["k1", "k2", "nope"]) == labels
    assert cache.stats["hits"] == 2 and cache.stats["misses"] == 1 and cache.stats["writes"] == 2
    assert len(cache) == 2

    # The documented layout: <root>/<labeler>/<settings_hash>/{settings.json, segments/*.parquet}.
    folder = tmp_path / "whisper" / cache.settings_hash
    assert json.loads((folder / "settings.json").read_text())["settings"] == SETTINGS
    (segment,) = sorted((folder / "segments").glob("*.parquet"))
    table = pq.read_table(segment)
    assert table.schema.names == ["key", "value"]
    assert json.loads(table.column("value")[0].as_py()) in labels.values()


def test_settings_hash_is_canonical_and_text_key_is_sha256() -> None:
    reordered = {"thresholds": {"a": 0.5}, "beam_size": 1, "model": "tiny.en"}
    assert settings_hash(SETTINGS) == settings_hash(reordered)
    assert len(settings_hash(SETTINGS)) == 16 and int(settings_hash(SETTINGS), 16) >= 0
    assert settings_hash(SETTINGS) != settings_hash({**SETTINGS, "beam_size": 5})
    assert text_key("I am so happy") == hashlib.sha256(b"I am so happy").hexdigest()
    assert text_key("café") == hashlib.sha256("café".encode()).hexdigest()


def test_different_settings_or_labeler_miss(tmp_path: Path) -> None:
    LabelCache(str(tmp_path), "whisper", SETTINGS).put_many({"k": {"transcript": "hi"}})
    assert LabelCache(str(tmp_path), "whisper", SETTINGS).get_many(["k"]) == {"k": {"transcript": "hi"}}
    other = LabelCache(str(tmp_path), "whisper", {**SETTINGS, "beam_size": 5})
    assert other.get_many(["k"]) == {} and other.stats["misses"] == 1
    assert LabelCache(str(tmp_path), "vader", SETTINGS).get_many(["k"]) == {}


def test_empty_put_writes_nothing_and_values_must_be_flat_scalars(tmp_path: Path) -> None:
    cache = LabelCache(str(tmp_path), "vader", {})
    cache.put_many({})
    assert not (tmp_path / "vader").exists()
    with pytest.raises(TypeError, match="field 'nested'"):
        cache.put_many({"k": {"nested": {"a": 1}}})
    with pytest.raises(ValueError, match="labeler name"):
        LabelCache(str(tmp_path), "../escape", {})
    cache.put_many({"k": {"score": float("nan")}})  # JSON has no NaN: stored as null
    assert LabelCache(str(tmp_path), "vader", {}).get_many(["k"]) == {"k": {"score": None}}


def test_new_instance_sees_earlier_segments_and_writes_nothing(tmp_path: Path) -> None:
    first = LabelCache(str(tmp_path), "whisper", SETTINGS)
    first.put_many({f"k{i}": {"i": i} for i in range(5)})
    first.put_many({f"k{i}": {"i": i} for i in range(5, 8)})
    rerun = LabelCache(str(tmp_path), "whisper", SETTINGS)
    got = rerun.get_many([f"k{i}" for i in range(8)])
    assert got == {f"k{i}": {"i": i} for i in range(8)}
    assert rerun.stats == {**rerun.stats, "hits": 8, "misses": 0, "writes": 0, "segments_loaded": 2}
    assert len(_segments(rerun)) == 2


def test_two_writers_each_add_their_own_segment_and_see_each_other(tmp_path: Path) -> None:
    a = LabelCache(str(tmp_path), "whisper", SETTINGS)
    b = LabelCache(str(tmp_path), "whisper", SETTINGS)
    assert a.get_many(["from_b"]) == {}  # a has loaded (nothing) before b writes: the resumed-run case
    a.put_many({"from_a": {"w": "a"}, "both": {"w": "a"}})
    b.put_many({"from_b": {"w": "b"}, "both": {"w": "a"}})
    assert len(_segments(a)) == 2
    assert a.get_many(["from_b"]) == {"from_b": {"w": "b"}}  # a miss re-lists and finds b's segment
    assert b.get_many(["from_a", "both"]) == {"from_a": {"w": "a"}, "both": {"w": "a"}}
    assert len(LabelCache(str(tmp_path), "whisper", SETTINGS)) == 3


def test_concurrent_writers_in_threads_lose_nothing(tmp_path: Path) -> None:
    def work(worker: int) -> None:
        cache = LabelCache(str(tmp_path), "vader", {"kind": "vader"})
        for batch in range(3):
            cache.put_many({f"w{worker}-{batch}-{i}": {"n": i} for i in range(20)})

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = LabelCache(str(tmp_path), "vader", {"kind": "vader"})
    assert len(_segments(reader)) == 12
    assert len(reader) == 4 * 3 * 20
    assert reader.get_many(["w3-2-19"]) == {"w3-2-19": {"n": 19}}


def test_corrupt_segment_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = LabelCache(str(tmp_path), "whisper", SETTINGS)
    good.put_many({"k1": {"t": "one"}})
    seg_dir = Path(good.segments_uri)
    (seg_dir / "00000000T000000000000Z-garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"other": ["x"]}), seg_dir / "00000000T000000000001Z-wrongschema.parquet")
    (seg_dir / ".k.parquet.abc.tmp").write_bytes(b"half-written temp file of an atomic write")

    caplog.set_level(logging.WARNING, logger="tasks.core.label_cache")
    fresh = LabelCache(str(tmp_path), "whisper", SETTINGS)
    assert fresh.get_many(["k1", "k2"]) == {"k1": {"t": "one"}}
    assert fresh.stats["segments_skipped"] == 2 and fresh.stats["segments_loaded"] == 1
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and any("garbage.parquet" in m for m in warned)
    # A corrupt segment is reported once, not on every re-list; writing still works.
    fresh.get_many(["still-missing"])
    assert fresh.stats["segments_skipped"] == 2
    fresh.put_many({"k2": {"t": "two"}})
    assert LabelCache(str(tmp_path), "whisper", SETTINGS).get_many(["k2"]) == {"k2": {"t": "two"}}


@pytest.mark.aws
def test_s3_round_trip_and_two_writers(s3_bucket: str) -> None:
    root = f"s3://{s3_bucket}/runs/label-cache"
    a = LabelCache(root, "whisper", SETTINGS)
    assert a.get_many(["k"]) == {}  # nothing under the prefix yet: an empty cache, not an error
    a.put_many({"k": {"transcript": "hello", "confidence": 0.9}})
    LabelCache(root, "whisper", SETTINGS).put_many({"k2": {"transcript": "bye", "confidence": 0.8}})

    keys = storage.list_files(f"{root}/whisper/{a.settings_hash}")
    assert sum(k.endswith(".parquet") for k in keys) == 2 and any(k.endswith("settings.json") for k in keys)
    assert a.get_many(["k", "k2"]) == {
        "k": {"transcript": "hello", "confidence": 0.9},
        "k2": {"transcript": "bye", "confidence": 0.8},
    }
    rerun = LabelCache(root, "whisper", SETTINGS)
    assert len(rerun) == 2 and rerun.stats["segments_loaded"] == 2


def test_shared_instance_per_root_labeler_and_settings(tmp_path: Path) -> None:
    one = LabelCache.shared(str(tmp_path), "whisper", SETTINGS)
    assert LabelCache.shared(str(tmp_path), "whisper", dict(reversed(list(SETTINGS.items())))) is one
    assert LabelCache.shared(str(tmp_path), "whisper", {**SETTINGS, "beam_size": 2}) is not one
    assert LabelCache.shared(str(tmp_path / "other"), "whisper", SETTINGS) is not one
    # Another writer's segment still reaches the shared instance: a miss re-lists.
    assert one.get_many(["late"]) == {}
    LabelCache(str(tmp_path), "whisper", SETTINGS).put_many({"late": {"t": "x"}})
    assert one.get_many(["late"]) == {"late": {"t": "x"}}
