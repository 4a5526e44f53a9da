"""Content-addressed cache of pseudo-labels, so a re-run or a resumed run never pays for a label twice.

A label is identified by (key, labeler, settings): the key is the content hash of what was labelled
(`tasks.core.audio.segment_key` for audio, `text_key` for text), and a change to the labeler or to any of
its settings gives a different settings hash and therefore a fresh, empty cache.

Layout (local path or ``s3://bucket/prefix``, through `tasks.core.storage`)::

    <root_uri>/<labeler>/<settings_hash>/settings.json              canonical settings, for people
    <root_uri>/<labeler>/<settings_hash>/segments/<utc>-<uuid>.parquet

Each segment is an immutable Parquet file with two string columns, ``key`` and ``value`` (the label
as a JSON object of scalars), so every labeler shares one stable schema. Writers only ever add new,
uniquely named segments (one per `put_many`) with an atomic write, and never rewrite or delete one:
that is what makes the cache safe with several concurrent writers on local disk and on S3 without
locks. Readers list the folder, load every segment once into an in-memory index, and re-list when
a lookup misses, so a resumed run sees what a killed run (or another worker) wrote. When two
segments hold the same key, the first one loaded wins (both came from the same labeler and
settings). A segment that cannot be read is skipped with a warning rather than failing the run:
its labels are simply recomputed and written again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core import storage

logger = logging.getLogger(__name__)

SEGMENTS_DIR = "segments"
SETTINGS_FILE = "settings.json"
_SEGMENT_SCHEMA = pa.schema([("key", pa.string()), ("value", pa.string())])
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SCALARS = (str, int, float, bool, type(None))


_SHARED: dict[tuple[str, str, str], LabelCache] = {}
_SHARED_LOCK = threading.Lock()


def text_key(text: str) -> str:
    """Cache key of a text labeler's input: sha256 of the exact UTF-8 text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_settings(settings: Mapping[str, Any]) -> str:
    """Settings as canonical JSON (sorted keys, no spaces), so equal settings hash equally."""
    return json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def settings_hash(settings: Mapping[str, Any]) -> str:
    """First 16 hex digits of the sha256 of the canonical settings JSON."""
    return hashlib.sha256(canonical_settings(settings).encode("utf-8")).hexdigest()[:16]


def _encode_value(key: str, value: Mapping[str, Any]) -> str:
    """A label as a JSON object; only flat scalars are allowed so every reader can decode it."""
    if not isinstance(value, Mapping):
        raise TypeError(f"label for key {key!r} must be a mapping, got {type(value).__name__}")
    flat: dict[str, Any] = {}
    for name, item in value.items():
        if hasattr(item, "item") and not isinstance(item, _SCALARS):  # numpy scalar -> Python scalar
            item = item.item()
        if not isinstance(name, str) or not isinstance(item, _SCALARS):
            raise TypeError(
                f"label for key {key!r}: field {name!r} must be a str/int/float/bool/None, "
                f"got {type(item).__name__}"
            )
        if isinstance(item, float) and not math.isfinite(item):
            item = None  # JSON has no NaN/inf; a missing score is null
        flat[name] = item
    return json.dumps(flat, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _segment_name() -> str:
    """A name no other writer can pick: UTC time (for humans and ordering) plus a random UUID."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}.parquet"


class LabelCache:
    """Pseudo-labels of one labeler with one set of settings, persisted as append-only segments."""

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
        self.segments_uri = storage.join(self.uri, SEGMENTS_DIR)
        self.stats: dict[str, int] = {
            "hits": 0,
            "misses": 0,
            "writes": 0,
            "segments_loaded": 0,
            "segments_skipped": 0,
        }
        self._index: dict[str, str] = {}  # key -> JSON value (strings are far smaller than dicts)
        self._seen: set[str] = set()  # segment URIs already loaded (or skipped as corrupt)
        self._loaded = False
        self._settings_written = False
        self._lock = threading.RLock()

    @classmethod
    def shared(cls, root_uri: str, labeler: str, settings: Mapping[str, Any]) -> LabelCache:
        """The process-wide instance for (root, labeler, settings): shards share one loaded index.

        Building a new cache per shard would re-read every segment per shard; a shared instance
        loads them once and still sees other workers' segments, because a miss re-lists.
        """
        key = (root_uri, labeler, settings_hash(settings))
        with _SHARED_LOCK:
            cache = _SHARED.get(key)
            if cache is None:
                cache = _SHARED[key] = cls(root_uri, labeler, settings)
        return cache

    def __repr__(self) -> str:
        return f"LabelCache({self.uri!r}, labeler={self.labeler!r}, settings_hash={self.settings_hash!r})"

    def __len__(self) -> int:
        """Number of distinct keys in the cache, including segments other writers added meanwhile."""
        with self._lock:
            self.refresh()
            return len(self._index)

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The cached labels of `keys` (hits only); re-lists segments once when something misses."""
        wanted = list(dict.fromkeys(keys))
        with self._lock:
            if not self._loaded or any(k not in self._index for k in wanted):
                self.refresh()
            found = {k: json.loads(self._index[k]) for k in wanted if k in self._index}
            self.stats["hits"] += len(found)
            self.stats["misses"] += len(wanted) - len(found)
        return found

    def put_many(self, labels: Mapping[str, Mapping[str, Any]]) -> None:
        """Persist `labels` as one new segment (nothing is written when `labels` is empty)."""
        if not labels:
            return
        encoded = {str(k): _encode_value(str(k), v) for k, v in labels.items()}
        table = pa.table(
            {"key": list(encoded), "value": list(encoded.values())}, schema=_SEGMENT_SCHEMA
        ).replace_schema_metadata(
            {"voicetone.labeler": self.labeler, "voicetone.settings_hash": self.settings_hash}
        )
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        uri = storage.join(self.segments_uri, _segment_name())
        with self._lock:
            self._write_settings_once()
            storage.write_bytes(uri, sink.getvalue().to_pybytes())
            self._seen.add(uri)
            for key, value in encoded.items():
                self._index.setdefault(key, value)
            self.stats["writes"] += len(encoded)

    def refresh(self) -> None:
        """Load every segment not loaded yet (all of them on first use)."""
        with self._lock:
            for uri in sorted(self._list_segments()):
                if uri not in self._seen:
                    self._seen.add(uri)
                    self._load_segment(uri)
            self._loaded = True

    def _list_segments(self) -> list[str]:
        try:
            uris = storage.list_files(self.segments_uri, suffixes=(".parquet",), recursive=False)
        except FileNotFoundError:  # nothing written yet (locally; an empty S3 prefix lists as empty)
            return []
        # Hidden names are in-flight temporary files of an atomic write, not segments.
        return [u for u in uris if not storage.basename(u).startswith(".")]

    def _load_segment(self, uri: str) -> None:
        try:
            table = pq.read_table(pa.BufferReader(storage.read_bytes(uri)))
            if table.schema.names[:2] != ["key", "value"]:
                raise ValueError(f"expected columns key, value; found {table.schema.names}")
            keys = table.column("key").to_pylist()
            values = table.column("value").to_pylist()
            for value in values:
                if not isinstance(json.loads(value), dict):
                    raise ValueError("a value is not a JSON object")
        except Exception as err:  # any unreadable segment is skipped, never fatal
            self.stats["segments_skipped"] += 1
            logger.warning(
                "label cache: skipping unreadable segment %s (%s: %s); its labels will be recomputed",
                uri,
                type(err).__name__,
                err,
            )
            return
        for key, value in zip(keys, values, strict=True):
            if key is not None and value is not None:
                self._index.setdefault(key, value)
        self.stats["segments_loaded"] += 1

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
