"""Content-addressed cache of pseudo-labels, so a re-run or a resumed run never pays for a label twice.

A label is identified by (key, labeler, settings): the key is the content hash of what was labelled
(`clip_key` for audio, `text_key` / `language_text_key` for text: the only places keys are built),
and a change to the labeler or to any of its settings gives a different settings hash and therefore
a fresh, empty cache.

Layout (local path or ``s3://bucket/prefix``, through `tasks.core.storage`)::

    <root_uri>/<labeler>/<settings_hash>/settings.json                 canonical settings, for people
    <root_uri>/<labeler>/<settings_hash>/parts/<pp>/<utc>-<uuid>.parquet   segments of partition pp
    <root_uri>/<labeler>/<settings_hash>/parts/<pp>/<first>~m-<utc>-<uuid>.parquet   merged segments
    <root_uri>/<labeler>/<settings_hash>/segments/*.parquet            layout 1 (unpartitioned), migrated
    <root_uri>/<labeler>/<settings_hash>/migrated/<utc>-<uuid>.json    layout-1 segments already migrated

A key's partition ``pp`` is the first two hex digits of the sha256 of the key (`partition_of`: 256
partitions, even for keys of one long file), so a lookup lists and reads only the partitions of its
keys and keeps only the hits: no worker holds the whole index, on local disk or S3 (a listing by
prefix). Each segment is an immutable Parquet file of two string columns, ``key`` and ``value``
(the label as a JSON object of scalars). Writers only ever add uniquely named files with atomic
writes (`put_many`: one segment per partition it touches) and never rewrite or delete one: that
makes the cache safe with concurrent writers without locks. A lookup that finds MERGE_FANIN
segments of one size tier in a partition writes one merged segment holding them (its metadata
names them, so readers skip them from then on); the merged files stay, so a concurrent reader is
never short of a file. A layout-1 cache is migrated once, by whichever process reads it first: its
segments are copied into partitions, then a ``migrated/`` note names them (two migrating at once
only duplicate rows). When two segments hold the same key, the first in name order wins (both came
from the same labeler and settings). A segment that cannot be read is skipped with a warning
rather than failing the run: its labels are simply recomputed and written again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tasks.core import label_segments as seg
from tasks.core import storage

logger = logging.getLogger(__name__)

PARTS_DIR = "parts"
SEGMENTS_DIR = "segments"  # layout 1: one unpartitioned folder of segments (read once and migrated)
MIGRATED_DIR = "migrated"
SETTINGS_FILE = "settings.json"
PARTITION_HEX = 2  # 256 partitions
MIGRATE_BATCH_ROWS = 200_000  # layout-1 rows held in memory at once while migrating
READ_THREADS = 8  # partitions read at once (S3 latency; Arrow decodes outside the GIL)
UNCACHED_PREFIX = "uncached:"  # keys of clips without a segment key: labelled, never cached
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_T = TypeVar("_T")
_R = TypeVar("_R")


_SHARED: dict[tuple[str, str, str], LabelCache] = {}
_SHARED_LOCK = threading.Lock()


# ---------------------------------------------------------------------------------------------
# Keys and settings: every label-cache key is built here (a changed key would make users pay again)


def text_key(text: str) -> str:
    """Cache key of a text labeler's input: sha256 of the exact UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def language_text_key(language: str, text: str, separator: str = "\x1f") -> str:
    """Cache key of a text labelled in a given language: `text_key` of language + separator + text.

    Amazon Comprehend sentiment keys use the unit separator; Comprehend PII keys were first written
    with a newline, and keep it (a new separator would make every cached answer a miss).
    """
    return text_key(f"{language}{separator}{text}")


def clip_key(segment_key: Any, utterance_id: Any, language: str | None = None) -> str:
    """Cache key of an audio clip's label: its segment key, plus ``|<language>`` when the label depends
    on the language asked for. A clip without a segment key gets ``uncached:<utterance_id>``: it is
    labelled but never cached (`cacheable`), since nothing identifies its audio across runs."""
    has_key = isinstance(segment_key, str) and bool(segment_key.strip())
    base = str(segment_key) if has_key else f"{UNCACHED_PREFIX}{utterance_id}"
    return base if language is None else f"{base}|{language}"


def cacheable(keys: Iterable[str]) -> list[str]:
    """The keys that may be looked up and stored (not the `uncached:` ones of `clip_key`)."""
    return [k for k in keys if not k.startswith(UNCACHED_PREFIX)]


def canonical_settings(settings: Mapping[str, Any]) -> str:
    """Settings as canonical JSON (sorted keys, no spaces), so equal settings hash equally."""
    return json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def settings_hash(settings: Mapping[str, Any]) -> str:
    """First 16 hex digits of the sha256 of the canonical settings JSON."""
    return hashlib.sha256(canonical_settings(settings).encode("utf-8")).hexdigest()[:16]


def partition_of(key: str) -> str:
    """The partition folder of a key: the first hex digits of its sha256 (uniform for any key format)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:PARTITION_HEX]


def _map(fn: Callable[[_T], _R], items: list[_T]) -> list[_R]:
    """`fn` over `items`, several at once when there are several (S3 round trips overlap)."""
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(READ_THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


# ---------------------------------------------------------------------------------------------
# The cache


class LabelCache:
    """Pseudo-labels of one labeler with one set of settings, persisted as partitioned append-only segments."""

    def __init__(self, root_uri: str, labeler: str, settings: Mapping[str, Any]) -> None:
        if not _SAFE_NAME.match(labeler):
            raise ValueError(
                f"labeler name {labeler!r} must match {_SAFE_NAME.pattern} (it is a folder name)"
            )
        self.labeler = labeler
        self.settings: dict[str, Any] = dict(settings)
        self.settings_json = canonical_settings(self.settings)
        self.settings_hash = settings_hash(self.settings)
        self.uri = storage.join(root_uri, labeler, self.settings_hash)
        self.parts_uri = storage.join(self.uri, PARTS_DIR)
        self.segments_uri = storage.join(self.uri, SEGMENTS_DIR)
        self.migrated_uri = storage.join(self.uri, MIGRATED_DIR)
        self.stats: dict[str, int] = {
            "hits": 0,
            "misses": 0,
            "writes": 0,
            "partitions_read": 0,
            "segments_loaded": 0,
            "segments_skipped": 0,
            "segments_written": 0,
            "segments_merged": 0,
            "legacy_migrated": 0,
        }
        self._bad: set[str] = set()  # segment URIs found unreadable (warned once, never read again)
        self._migrated: set[str] = set()  # layout-1 segment names known to be migrated
        self._notes_read: set[str] = set()
        self._settings_written = False
        self._lock = threading.RLock()  # guards stats and the sets above (and one migration at a time)

    @classmethod
    def shared(cls, root_uri: str, labeler: str, settings: Mapping[str, Any]) -> LabelCache:
        """The process-wide instance for (root, labeler, settings), shared by every shard of a process.

        It holds no labels (a lookup reads its keys' partitions afresh, so it sees other workers'
        segments); sharing it saves re-checking the layout-1 migration and re-warning about a bad file.
        """
        key = (root_uri, labeler, settings_hash(settings))
        with _SHARED_LOCK:
            cache = _SHARED.get(key)
            if cache is None:
                cache = _SHARED[key] = cls(root_uri, labeler, settings)
        return cache

    def __repr__(self) -> str:
        return f"LabelCache({self.uri!r}, labeler={self.labeler!r}, settings_hash={self.settings_hash!r})"

    def belongs_to(self, labeler: str, settings: Mapping[str, Any]) -> bool:
        """True when this cache holds `labeler`'s labels for exactly `settings` (a labeler's guard)."""
        return self.labeler == labeler and self.settings_hash == settings_hash(settings)

    def __len__(self) -> int:
        """Number of distinct keys in the cache, including segments other writers added meanwhile.

        Reads every partition, one at a time per thread (a key lives in one partition only, so the
        distinct counts add up without holding all keys).
        """
        self.refresh()
        try:
            parts = {storage.basename(storage.parent(u)) for u in storage.list_files(self.parts_uri, (".parquet",))}
        except FileNotFoundError:
            return 0
        return sum(_map(lambda p: len(self._read_partition(p, None)), sorted(parts)))

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The cached labels of `keys` (hits only), reading only the partitions those keys live in."""
        wanted = list(dict.fromkeys(keys))
        self.refresh()
        by_part: dict[str, list[str]] = {}
        for key in wanted:
            by_part.setdefault(partition_of(key), []).append(key)
        found: dict[str, dict[str, Any]] = {}
        for hits in _map(lambda p: self._read_partition(p, by_part[p]), sorted(by_part)):
            found.update((k, json.loads(v)) for k, v in hits.items())
        with self._lock:
            self.stats["hits"] += len(found)
            self.stats["misses"] += len(wanted) - len(found)
        return found

    def put_many(self, labels: Mapping[str, Mapping[str, Any]]) -> None:
        """Persist `labels`: one new segment in each partition they touch (nothing when empty)."""
        if not labels:
            return
        encoded = {str(k): seg.encode_value(str(k), v) for k, v in labels.items()}
        self._write_settings_once()
        self._write_partitioned(encoded)
        with self._lock:
            self.stats["writes"] += len(encoded)

    def refresh(self) -> None:
        """Migrate layout-1 segments not migrated yet (an older version may still be writing them).

        Nothing else needs refreshing: lookups list their partitions afresh every time.
        """
        with self._lock:  # one migration per process at a time; concurrent processes only duplicate rows
            names = self._legacy_names()
            if not names - self._migrated:
                return
            self._read_migration_notes()
            batch: list[str] = []
            pending: dict[str, str] = {}
            for name in sorted(names - self._migrated):
                uri = storage.join(self.segments_uri, name)
                segment = self._open(uri)
                try:
                    entries = seg.merged_entries([segment]) if segment is not None else {}
                except Exception as err:
                    self._skip(uri, err)
                    entries = {}
                for key, value in entries.items():
                    pending.setdefault(key, value)  # the first segment in name order wins, as it did
                batch.append(name)
                if len(pending) >= MIGRATE_BATCH_ROWS:
                    self._migrate(batch, pending)
                    batch, pending = [], {}
            if batch:
                self._migrate(batch, pending)

    # ------------------------------------------------------------------------------- internals

    def _legacy_names(self) -> set[str]:
        try:
            uris = storage.list_files(self.segments_uri, suffixes=(".parquet",), recursive=False)
        except FileNotFoundError:
            return set()
        return {storage.basename(u) for u in uris if not seg.is_hidden(u)}

    def _read_migration_notes(self) -> None:
        try:
            notes = storage.list_files(self.migrated_uri, suffixes=(".json",), recursive=False)
        except FileNotFoundError:
            return
        for uri in notes:
            if uri not in self._notes_read and not seg.is_hidden(uri):
                self._migrated.update(json.loads(storage.read_text(uri))["segments"])
                self._notes_read.add(uri)

    def _migrate(self, names: list[str], entries: dict[str, str]) -> None:
        """Copy layout-1 rows into partitions, then note their segments as migrated (in that order)."""
        if entries:
            self._write_settings_once()
            self._write_partitioned(entries)
        note = storage.join(self.migrated_uri, seg.new_name().replace(".parquet", ".json"))
        storage.write_text(note, json.dumps({"segments": names}, indent=1) + "\n")
        self._notes_read.add(note)
        self._migrated.update(names)
        self.stats["legacy_migrated"] += len(names)
        logger.info("label cache %s: migrated %d layout-1 segment(s) (%d labels) into partitions",
                    self.uri, len(names), len(entries))  # fmt: skip

    def _write_partitioned(self, encoded: Mapping[str, str]) -> None:
        by_part: dict[str, dict[str, str]] = {}
        for key, value in encoded.items():
            by_part.setdefault(partition_of(key), {})[key] = value
        meta = seg.metadata(self.labeler, self.settings_hash)

        def write(part: str) -> None:
            storage.write_bytes(storage.join(self.parts_uri, part, seg.new_name()), seg.encode(by_part[part], meta))

        _map(write, sorted(by_part))
        with self._lock:
            self.stats["segments_written"] += len(by_part)

    def _open(self, uri: str) -> seg.Segment | None:
        """One segment's footer, or None (with one warning) when it cannot be read.

        A local file is reopened to read its rows; an S3 object is fetched once and kept in memory
        while its partition is read (an object body cannot seek).
        """
        if uri in self._bad:
            return None
        try:
            source = seg.buffer_source(storage.read_bytes(uri)) if storage.is_s3(uri) else (
                lambda: storage.open_binary(uri))
            segment = seg.open_segment(storage.basename(uri), source)
        except FileNotFoundError:
            return None  # listed, then gone (a tidied folder): its rows are in a merged segment
        except Exception as err:  # any unreadable segment is skipped, never fatal
            self._skip(uri, err)
            return None
        with self._lock:
            self.stats["segments_loaded"] += 1
        return segment

    def _skip(self, uri: str, err: Exception) -> None:
        with self._lock:
            if uri in self._bad:
                return
            self._bad.add(uri)
            self.stats["segments_skipped"] += 1
        logger.warning(
            "label cache: skipping unreadable segment %s (%s: %s); its labels will be recomputed",
            uri,
            type(err).__name__,
            err,
        )

    def _read_partition(self, part: str, wanted: list[str] | None) -> dict[str, str]:
        """key -> JSON value of the partition's live segments, for `wanted` keys (all when None).

        Merged segments are opened newest first, so the segments they hold are never opened; of the
        live ones only the row groups that can hold a wanted key are read.
        """
        folder = storage.join(self.parts_uri, part)
        try:
            names = [storage.basename(u) for u in storage.list_files(folder, (".parquet",), recursive=False)
                     if not seg.is_hidden(u)]  # fmt: skip
        except FileNotFoundError:
            return {}
        with self._lock:
            self.stats["partitions_read"] += 1
        wanted_sorted = None if wanted is None else sorted(wanted)
        found: dict[str, str] = {}
        covered: set[str] = set()
        segments: list[seg.Segment] = []
        merged = sorted((n for n in names if seg.is_merged(n)), key=seg.created, reverse=True)
        for name in merged + sorted(n for n in names if not seg.is_merged(n)):
            if name not in covered and (segment := self._open(storage.join(folder, name))) is not None:
                segments.append(segment)
                covered |= segment.covers
        alive = seg.live(segments)
        self._merge_some(folder, alive)
        for segment in alive:
            try:
                table = segment.read(wanted_sorted)
            except Exception as err:  # a bad row group or value: as unreadable as a bad footer
                self._skip(storage.join(folder, segment.name), err)
                continue
            for key, value in zip(table.column("key").to_pylist(), table.column("value").to_pylist(), strict=True):
                if key is not None and value is not None:
                    found.setdefault(key, value)
        return found

    def _merge_some(self, folder: str, alive: list[seg.Segment]) -> None:
        """Merge a crowded size tier of the partition into one segment (a failure only warns)."""
        members = seg.merge_plan(alive)
        if not members:
            return
        names = [m.name for m in members]
        try:
            data = seg.encode(seg.merged_entries(members), seg.metadata(self.labeler, self.settings_hash), names)
            storage.write_bytes(storage.join(folder, seg.merged_name(names)), data)
        except Exception as err:  # e.g. a read-only cache: lookups still work, just with more files
            logger.warning("label cache: could not merge %d segments in %s (%s: %s)",
                           len(names), folder, type(err).__name__, err)  # fmt: skip
            return
        with self._lock:
            self.stats["segments_merged"] += len(names)

    def _write_settings_once(self) -> None:
        """Record the settings next to the segments so a person can tell the folders apart."""
        if self._settings_written:
            return
        settings_uri = storage.join(self.uri, SETTINGS_FILE)
        if not storage.exists(settings_uri):
            payload = {
                "labeler": self.labeler,
                "settings_hash": self.settings_hash,
                "settings": self.settings,
            }
            storage.write_bytes(settings_uri, (json.dumps(payload, sort_keys=True, indent=2) + "\n").encode())
        self._settings_written = True
