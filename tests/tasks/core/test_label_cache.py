"""The label cache: round trips, settings isolation, concurrent writers, re-runs, corrupt segments, S3,
partitioned lookups (a lookup reads only its keys' partitions), merges, layout-1 migration, pinned keys."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core import label_segments, storage
from tasks.core.label_cache import LabelCache, partition_of, settings_hash, text_key

SETTINGS = {"model": "tiny.en", "beam_size": 1, "thresholds": {"a": 0.5}}


def _segments(cache: LabelCache) -> list[str]:
    return storage.list_files(cache.parts_uri, suffixes=(".parquet",))


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

    # The documented layout: <root>/<labeler>/<settings_hash>/{settings.json, parts/<pp>/*.parquet},
    # pp = the first two hex digits of the key's sha256.
    folder = tmp_path / "whisper" / cache.settings_hash
    assert json.loads((folder / "settings.json").read_text())["settings"] == SETTINGS
    assert partition_of("k1") == hashlib.sha256(b"k1").hexdigest()[:2]
    for key, label in labels.items():
        (segment,) = sorted((folder / "parts" / partition_of(key)).glob("*.parquet"))
        table = pq.read_table(segment)
        assert table.schema.names == ["key", "value"]
        assert table.column("key").to_pylist() == [key]
        assert json.loads(table.column("value")[0].as_py()) == label


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
    files = _segments(rerun)
    assert len(files) == len({partition_of(f"k{i}") for i in range(5)}) + len({partition_of(f"k{i}") for i in range(5, 8)})
    assert rerun.stats == {**rerun.stats, "hits": 8, "misses": 0, "writes": 0, "segments_loaded": len(files)}


def test_two_writers_each_add_their_own_segment_and_see_each_other(tmp_path: Path) -> None:
    a = LabelCache(str(tmp_path), "whisper", SETTINGS)
    b = LabelCache(str(tmp_path), "whisper", SETTINGS)
    assert a.get_many(["from_b"]) == {}  # a has loaded (nothing) before b writes: the resumed-run case
    a.put_many({"from_a": {"w": "a"}, "both": {"w": "a"}})
    b.put_many({"from_b": {"w": "b"}, "both": {"w": "a"}})
    assert len(_segments(a)) == len({partition_of(k) for k in ("from_a", "both")}) + len(
        {partition_of(k) for k in ("from_b", "both")})
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
    expected = sum(len({partition_of(f"w{w}-{b}-{i}") for i in range(20)}) for w in range(4) for b in range(3))
    assert len(_segments(reader)) == expected
    assert len(reader) == 4 * 3 * 20
    assert reader.get_many(["w3-2-19"]) == {"w3-2-19": {"n": 19}}


def test_corrupt_segment_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = LabelCache(str(tmp_path), "whisper", SETTINGS)
    good.put_many({"k1": {"t": "one"}})
    seg_dir = Path(good.parts_uri) / partition_of("k1")
    (seg_dir / "00000000T000000000000Z-garbage.parquet").write_bytes(b"PAR1 this is not parquet")
    pq.write_table(pa.table({"other": ["x"]}), seg_dir / "00000000T000000000001Z-wrongschema.parquet")
    (seg_dir / ".k.parquet.abc.tmp").write_bytes(b"half-written temp file of an atomic write")

    caplog.set_level(logging.WARNING, logger="tasks.core.label_cache")
    fresh = LabelCache(str(tmp_path), "whisper", SETTINGS)
    assert fresh.get_many(["k1"]) == {"k1": {"t": "one"}}
    assert fresh.stats["segments_skipped"] == 2 and fresh.stats["segments_loaded"] == 1
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 2 and any("garbage.parquet" in m for m in warned)
    # A corrupt segment is reported once, not on every re-list; writing still works.
    fresh.get_many(["k1"])
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
    assert sorted(k.rsplit("/", 2)[1] for k in keys if k.endswith(".parquet")) == sorted(
        [partition_of("k"), partition_of("k2")])
    assert any(k.endswith("settings.json") for k in keys)
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


# --------------------------------------------------------------------------- partitioned lookups


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every file/object the cache opens from now on (the real read still happens)."""
    reads: list[str] = []
    real = storage.open_binary

    @contextlib.contextmanager
    def counting(uri: str) -> Iterator[IO[bytes]]:
        reads.append(uri)
        with real(uri) as fh:
            yield fh

    real_bytes = storage.read_bytes

    def counting_bytes(uri: str) -> bytes:
        reads.append(uri)
        return real_bytes(uri)

    monkeypatch.setattr(storage, "open_binary", counting)
    monkeypatch.setattr(storage, "read_bytes", counting_bytes)  # S3 segments are read whole (one GET)
    return reads


def _keys_in_distinct_partitions(n: int) -> list[str]:
    keys: dict[str, str] = {}
    i = 0
    while len(keys) < n:
        keys.setdefault(partition_of(f"seg{i}"), f"seg{i}")
        i += 1
    return list(keys.values())


def test_a_lookup_reads_only_the_partitions_of_its_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = LabelCache(str(tmp_path), "whisper", SETTINGS)
    cache.put_many({f"seg{i}": {"i": i} for i in range(2000)})  # every one of the 256 partitions
    assert len({Path(u).parent.name for u in _segments(cache)}) == 256
    reads = _count_reads(monkeypatch)
    wanted = _keys_in_distinct_partitions(3)
    fresh = LabelCache(str(tmp_path), "whisper", SETTINGS)
    assert fresh.get_many(wanted) == {k: {"i": int(k[3:])} for k in wanted}
    assert {Path(u).parent.name for u in reads} == {partition_of(k) for k in wanted} and len(set(reads)) == 3
    assert fresh.stats["partitions_read"] == 3 and fresh.stats["segments_loaded"] == 3


def _write_layout1_segment(cache: LabelCache, name: str, labels: dict[str, dict]) -> None:
    """A segment as the unpartitioned layout wrote it: <uri>/segments/<name>.parquet."""
    table = pa.table({"key": list(labels), "value": [json.dumps(v, sort_keys=True) for v in labels.values()]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    storage.write_bytes(storage.join(cache.segments_uri, name), sink.getvalue().to_pybytes())


def test_a_layout1_cache_is_still_hit_and_migrated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = LabelCache(str(tmp_path), "whisper", SETTINGS)
    _write_layout1_segment(old, "20250101T000000000000Z-a.parquet", {f"old{i}": {"t": f"a{i}"} for i in range(50)})
    _write_layout1_segment(old, "20250102T000000000000Z-b.parquet", {"old0": {"t": "later"}, "only_b": {"t": "b"}})
    reads = _count_reads(monkeypatch)
    first = LabelCache(str(tmp_path), "whisper", SETTINGS)
    assert first.get_many(["old0", "old49", "only_b"]) == {
        "old0": {"t": "a0"},  # the first segment in name order wins, as before
        "old49": {"t": "a49"},
        "only_b": {"t": "b"},
    }
    assert first.stats["legacy_migrated"] == 2 and first.stats["hits"] == 3
    assert len(first) == 51
    # Another process: the migration note tells it the layout-1 segments are done; it reads partitions only.
    reads.clear()
    second = LabelCache(str(tmp_path), "whisper", SETTINGS)
    assert second.get_many(["old7"]) == {"old7": {"t": "a7"}}
    assert second.stats["legacy_migrated"] == 0
    assert not [u for u in reads if "/segments/" in u]
    assert {Path(u).parent.name for u in reads if u.endswith(".parquet")} == {partition_of("old7")}
    # A segment an older version writes later is migrated by the next lookup.
    _write_layout1_segment(old, "20250103T000000000000Z-c.parquet", {"late": {"t": "c"}})
    assert second.get_many(["late"]) == {"late": {"t": "c"}} and second.stats["legacy_migrated"] == 1


def test_crowded_partition_is_merged_and_lookups_then_skip_the_merged_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [k for k in (f"x{i}" for i in range(5000)) if partition_of(k) == "00"][:10]
    writer = LabelCache(str(tmp_path), "vader", {})
    for i, key in enumerate(keys):
        writer.put_many({key: {"n": i}})  # ten one-row segments in partition 00
    first = LabelCache(str(tmp_path), "vader", {})
    assert first.get_many(keys) == {k: {"n": i} for i, k in enumerate(keys)}
    assert first.stats["segments_merged"] == 10  # one size tier of >= 8: merged into one segment
    files = sorted(Path(first.parts_uri, "00").glob("*.parquet"))
    (merged,) = [f for f in files if label_segments.is_merged(f.name)]
    assert len(files) == 11 and files[1] == merged  # sorts right after its earliest member; members stay
    assert json.loads(pq.read_schema(merged).metadata[b"voicetone.covers"]) == [f.name for f in files if f != merged]
    reads = _count_reads(monkeypatch)
    again = LabelCache(str(tmp_path), "vader", {})
    assert again.get_many(keys[:3]) == {k: {"n": i} for i, k in enumerate(keys[:3])}
    assert {Path(u).name for u in reads} == {merged.name}  # its ten members are never read again
    assert again.stats["segments_merged"] == 0 and len(again) == 10


def test_two_writers_merging_the_same_partition_lose_nothing(tmp_path: Path) -> None:
    keys = [k for k in (f"y{i}" for i in range(5000)) if partition_of(k) == "ab"][:16]
    for i, key in enumerate(keys[:8]):
        LabelCache(str(tmp_path), "vader", {}).put_many({key: {"n": i}})
    a, b = LabelCache(str(tmp_path), "vader", {}), LabelCache(str(tmp_path), "vader", {})
    barrier = threading.Barrier(2)

    def work(cache: LabelCache, offset: int) -> None:
        barrier.wait()
        for i in range(offset, 16, 2):
            cache.get_many(keys)  # each may merge the same tier at the same time
            cache.put_many({keys[i]: {"n": i}})

    threads = [threading.Thread(target=work, args=(c, o)) for c, o in ((a, 8), (b, 9))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = LabelCache(str(tmp_path), "vader", {})
    assert reader.get_many(keys) == {k: {"n": i} for i, k in enumerate(keys)}
    assert len(reader) == 16 and a.stats["segments_merged"] + b.stats["segments_merged"] >= 8


@pytest.mark.aws
def test_s3_lookup_reads_only_its_partitions_and_migrates_layout1(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = f"s3://{s3_bucket}/cache"
    writer = LabelCache(root, "whisper", SETTINGS)
    writer.put_many({f"seg{i}": {"i": i} for i in range(300)})
    _write_layout1_segment(writer, "20250101T000000000000Z-a.parquet", {"legacy": {"i": -1}})
    reads = _count_reads(monkeypatch)
    wanted = _keys_in_distinct_partitions(2)
    fresh = LabelCache(root, "whisper", SETTINGS)
    assert fresh.get_many(wanted + ["legacy"]) == {**{k: {"i": int(k[3:])} for k in wanted}, "legacy": {"i": -1}}
    objects = [u for u in reads if u.endswith(".parquet")]
    assert sorted(u.rsplit("/", 2)[1] for u in objects if "/parts/" in u) == sorted(
        partition_of(k) for k in [*wanted, "legacy"])
    assert [u for u in objects if "/segments/" in u] == [f"{writer.segments_uri}/20250101T000000000000Z-a.parquet"]
    reads.clear()
    assert LabelCache(root, "whisper", SETTINGS).get_many(["legacy"]) == {"legacy": {"i": -1}}
    assert not [u for u in reads if "/segments/" in u]


# --------------------------------------------------------------------------- keys (never change a value)


def test_keys_are_pinned() -> None:
    """Known keys from before the key helpers: a changed value would make every user pay again."""
    from tasks.core.label_cache import cacheable, clip_key, language_text_key

    seg = "ab12" * 16 + ":1.500:3.250"
    assert clip_key(seg, "u1") == seg  # English-only Whisper, silero-vad, langid, second opinion
    assert clip_key(seg, "u1", "en-US") == seg + "|en-US"  # Amazon Transcribe, multilingual Whisper
    assert clip_key(None, "u1", "fr") == "uncached:u1|fr" and clip_key(" ", "u2") == "uncached:u2"
    assert cacheable([clip_key(None, "u1"), seg]) == [seg]
    # Comprehend sentiment (unit separator) and Comprehend PII (newline), as each wrote them.
    assert language_text_key("en", "I am so happy") == (
        "58c5200ded2dbd42455634c829e12faba002131fe3785574639d89f931658760")
    assert language_text_key("en", "I am so happy", "\n") == hashlib.sha256(b"en\nI am so happy").hexdigest()
    assert language_text_key("en", "I am so happy") == hashlib.sha256(b"en\x1fI am so happy").hexdigest()
    assert text_key("I am so happy") == "f52b21877408af41d2da55b49dd9e13c56683b09d4e7b483c610e024bbf50f4d"


def test_a_partition_of_many_segments_is_read_without_holding_them_open(tmp_path: Path) -> None:
    """Before its first merge a partition may hold hundreds of one-shard segments: a lookup must not
    keep them all open (the open-file limit would make it skip segments and pay again)."""
    import os
    import resource

    keys = [k for k in (f"z{i}" for i in range(200_000)) if partition_of(k) == "7f"][:300]
    writer = LabelCache(str(tmp_path), "vader", {})
    for i, key in enumerate(keys):
        writer.put_many({key: {"n": i}})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 100, hard))
    try:
        reader = LabelCache(str(tmp_path), "vader", {})
        assert reader.get_many(keys) == {k: {"n": i} for i, k in enumerate(keys)}
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert reader.stats["segments_skipped"] == 0 and reader.stats["segments_merged"] >= 256
