"""The shape every corpus adapter shares, and the probe/hash step they all need.

An adapter (`ingest_<kind>(source, default_language) -> IngestResult`) only knows its corpus's
layout: it turns files and metadata into `Candidate`s (plus rejects for items it cannot read), and
`build_result` does the rest the same way for every corpus: probe and hash each audio file once,
check crops lie inside the file, compute `segment_key`, and turn audio problems into reject rows.
"""

from __future__ import annotations

import contextvars
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from manifests import uri as fs
from manifests.schema import UTTERANCES_SCHEMA
from tasks.core import audio
from tasks.core.rows import reject_row, rejects_frame
from tasks.ingest.corpora.paths import symlink_escape
from tasks.spec import SourceSpec

INGEST_STAGE = "ingest"
UTTERANCE_COLUMNS: list[str] = list(UTTERANCES_SCHEMA.names)
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".mp4", ".webm")
# A crop may overshoot the file end by this much (corpus timestamps are rounded); it is clipped.
CROP_TOLERANCE_S = 0.01
PROBE_THREADS = 4

# Columns build_result fills from the audio itself; adapters must not set them.
_AUDIO_COLUMNS = frozenset(
    {
        "utterance_id",
        "source",
        "corpus",
        "audio_uri",
        "offset_s",
        "duration_s",
        "sample_rate",
        "num_channels",
        "audio_sha256",
        "segment_key",
    }
)
_FLOAT_COLUMNS = [f.name for f in UTTERANCES_SCHEMA if str(f.type) == "double"]
_INT_COLUMNS = [f.name for f in UTTERANCES_SCHEMA if str(f.type) == "int32"]


class CorpusLayoutError(ValueError):
    """The source folder does not look like the adapter's corpus (wrong path or wrong kind)."""


# Pre-flight runs each adapter up to the point where its layout is known to be right (files listed,
# metadata parsed) and stops it there, before any audio is probed, hashed or cached.
_LAYOUT_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("voicetone_layout_only", default=False)


class LayoutChecked(Exception):
    """Raised at `layout_checkpoint` in a layout-only run: the adapter got past its layout checks."""


def layout_checkpoint() -> None:
    """Where a layout-only run stops: `build_result` calls it; an adapter that writes files before
    build_result (hf_dataset's audio cache) calls it before writing."""
    if _LAYOUT_ONLY.get():
        raise LayoutChecked


def check_layout(adapter: Callable[[Any, str], Any], source: Any, default_language: str) -> None:
    """Run `adapter` on `source` only as far as its layout checks: raises what they raise
    (CorpusLayoutError, ValueError for options); reads listings and metadata, writes nothing."""
    token = _LAYOUT_ONLY.set(True)
    try:
        adapter(source, default_language)
    except LayoutChecked:
        pass
    finally:
        _LAYOUT_ONLY.reset(token)


@dataclass
class IngestResult:
    """Accepted utterance rows, reject rows (stage "ingest"), and how many items were found.

    `notes` are sentences about the source as a whole that a person should read (e.g. metadata
    columns the adapter does not know): logged as warnings and shown in the card's per-source counts.
    """

    items: pd.DataFrame
    rejects: pd.DataFrame
    found: int
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.found != len(self.items) + len(self.rejects):
            raise AssertionError(
                f"ingest lost items: found {self.found} != {len(self.items)} accepted + {len(self.rejects)} rejected"
            )


@dataclass(frozen=True)
class Candidate:
    """One item an adapter found: a whole file or a crop of it, with the labels the corpus gives.

    `labels` holds utterance columns (transcript_raw, sentiment, emotion, speaker_id, language, ...);
    the audio columns are filled by build_result. `input_ref` names the item in a reject.
    """

    native_id: str
    uri: str
    input_ref: str
    labels: dict[str, Any] = field(default_factory=dict)
    offset_s: float | None = None
    duration_s: float | None = None


Adapter = Callable[[SourceSpec, str], IngestResult]


def ingest_reject(source: SourceSpec, input_ref: str, reason: str, detail: str) -> dict[str, str]:
    """A reject row for the ingest stage."""
    return reject_row(source.name, input_ref, INGEST_STAGE, reason, detail)


def layout_error(source: SourceSpec, expected: str, found: str, files: Sequence[str]) -> CorpusLayoutError:
    """A CorpusLayoutError saying what the adapter expected and a sample of what is there."""
    root = source.path.rstrip("/")
    names = [f[len(root) + 1 :] if f.startswith(root + "/") else f for f in files[:5]]
    sample = ", ".join(names) + (", ..." if len(files) > 5 else "")
    listing = f"{len(files)} files: {sample}" if files else "the folder is empty or does not exist"
    return CorpusLayoutError(
        f"{source.kind} source {source.name!r} at {source.path}: expected {expected}, found {found} ({listing})"
    )


def corpus_root(source: SourceSpec) -> str:
    """`source.path` as the adapters' root: a local path normalised, no trailing '/' (an s3:// URI as given)."""
    root = source.path if fs.is_s3(source.path) else os.path.normpath(source.path)
    return root.rstrip("/") or "/"


def is_corpus_folder(root: str) -> bool:
    """Whether `root` can be listed: any S3 prefix, or an existing local directory."""
    return fs.is_s3(root) or os.path.isdir(root)


def list_corpus(source: SourceSpec) -> tuple[str, list[str]]:
    """(root, every file below it); no files when `path` is not a folder, so the layout_error says so."""
    root = corpus_root(source)
    return root, fs.list_files(root) if is_corpus_folder(root) else []


def read_corpus_text(uri: str) -> str:
    """A label/transcript file as text: UTF-8, else Latin-1 (old corpus files are not always UTF-8)."""
    data = fs.read_bytes(uri)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


class RowReject(Exception):
    """One metadata row (or file) that becomes an ingest reject: a reason code and a sentence."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def is_audio_file(path: str) -> bool:
    """An audio suffix we can decode (case-insensitive), and not a macOS '._' resource-fork file."""
    name = path.rsplit("/", 1)[-1]
    return not name.startswith("._") and name.lower().endswith(AUDIO_SUFFIXES)


@dataclass(frozen=True)
class _Probed:
    info: audio.AudioInfo
    sha256: str


def _probe_and_hash(uri: str) -> _Probed | audio.AudioError:
    """Probe and hash one file, reading an S3 object once; every failure becomes an AudioError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        info, sha = audio.probe_and_hash(uri)
        return _Probed(info, sha)
    except audio.AudioError as err:
        return err
    except FileNotFoundError:
        return audio.AudioError("missing_audio", f"Audio file {uri} does not exist.")
    except (OSError, BotoCoreError, ClientError) as err:
        return audio.AudioError("unreadable_audio", f"Audio file {uri} could not be read: {err}")


def probe_files(uris: Iterable[str], threads: int = PROBE_THREADS) -> dict[str, _Probed | audio.AudioError]:
    """Probe + hash each distinct file once, `threads` at a time (the work is mostly I/O)."""
    unique = list(dict.fromkeys(uris))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(unique)))) as pool:
        return dict(zip(unique, pool.map(_probe_and_hash, unique), strict=True))


def _crop(cand: Candidate, info: audio.AudioInfo) -> tuple[float, float] | str:
    """(offset_s, duration_s) of the utterance inside the file, or why the crop is impossible."""
    offset = 0.0 if cand.offset_s is None else float(cand.offset_s)
    file_s = float(info.duration_s)
    if not math.isfinite(offset) or offset < 0:
        return f"offset_s {cand.offset_s!r} must be a number >= 0"
    if cand.duration_s is not None and (not math.isfinite(cand.duration_s) or cand.duration_s <= 0):
        return f"duration_s {cand.duration_s!r} must be a number > 0"
    if offset >= file_s:
        return f"offset_s {offset:g} is at or past the end of the file ({file_s:.3f} s long)"
    duration = file_s - offset if cand.duration_s is None else float(cand.duration_s)
    end = offset + duration
    if end > file_s + CROP_TOLERANCE_S:
        return f"crop {offset:g}-{end:g} s ends past the end of the file ({file_s:.3f} s long)"
    return offset, min(duration, file_s - offset)


def _row(source: SourceSpec, cand: Candidate, probed: _Probed, offset: float, duration: float) -> dict[str, Any]:
    bad = sorted((set(cand.labels) - set(UTTERANCE_COLUMNS)) | (set(cand.labels) & _AUDIO_COLUMNS))
    if bad:
        raise ValueError(f"adapter {source.kind!r} set columns it may not set: {', '.join(bad)}")
    row: dict[str, Any] = dict.fromkeys(UTTERANCE_COLUMNS)
    row.update(cand.labels)
    row.update(
        utterance_id=f"{source.name}/{cand.native_id}",
        source=source.name,
        corpus=source.kind,
        audio_uri=cand.uri,
        offset_s=offset,
        duration_s=duration,
        sample_rate=int(probed.info.sample_rate),
        num_channels=int(probed.info.num_channels),
        audio_sha256=probed.sha256,
        segment_key=audio.segment_key(probed.sha256, offset, duration),
    )
    return row


def utterances_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """An utterances DataFrame with the contract's columns and numeric dtypes, even when empty."""
    frame = pd.DataFrame(rows, columns=UTTERANCE_COLUMNS, dtype=object)  # object keeps None as None
    for col in _FLOAT_COLUMNS:
        frame[col] = frame[col].astype("float64")
    for col in _INT_COLUMNS:
        frame[col] = frame[col].astype("int32")
    return frame


def build_result(
    source: SourceSpec, candidates: Sequence[Candidate], rejects: Sequence[dict[str, str]] = ()
) -> IngestResult:
    """Probe, hash and crop-check the candidates; audio problems become rejects next to `rejects`.

    found = len(candidates) + len(rejects): every candidate ends up accepted or rejected.
    """
    layout_checkpoint()
    reject_rows = list(rejects)
    unique: list[Candidate] = []
    first_ref: dict[str, str] = {}
    for cand in candidates:
        if cand.native_id in first_ref:
            reject_rows.append(
                ingest_reject(
                    source,
                    cand.input_ref,
                    "malformed_metadata",
                    f"{cand.input_ref}: utterance id {source.name}/{cand.native_id} is already used by "
                    f"{first_ref[cand.native_id]}; each item needs a distinct file or offset",
                )
            )
            continue
        first_ref[cand.native_id] = cand.input_ref
        unique.append(cand)

    # Every adapter gets the same guard: a file below the root that is a symlink to elsewhere.
    safe: list[Candidate] = []
    for cand in unique:
        escape = symlink_escape(source.path, cand.uri)
        if escape is None:
            safe.append(cand)
        else:
            reject_rows.append(ingest_reject(source, cand.input_ref, "unsafe_path",
                                             f"{cand.input_ref}: {cand.uri} is a symlink to {escape}, outside "
                                             f"the corpus folder {source.path}"))
    unique = safe
    probed = probe_files(c.uri for c in unique)
    rows: list[dict[str, Any]] = []
    for cand in unique:
        result = probed[cand.uri]
        if isinstance(result, audio.AudioError):
            detail = result.detail if cand.uri in str(result.detail) else f"{cand.uri}: {result.detail}"
            if cand.input_ref != cand.uri:
                detail = f"{cand.input_ref}: {detail}"
            reject_rows.append(ingest_reject(source, cand.input_ref, result.reason, detail))
            continue
        crop = _crop(cand, result.info)
        if isinstance(crop, str):
            reject_rows.append(
                ingest_reject(source, cand.input_ref, "malformed_metadata", f"{cand.input_ref} ({cand.uri}): {crop}")
            )
            continue
        rows.append(_row(source, cand, result, *crop))
    return IngestResult(
        items=utterances_frame(rows),
        rejects=rejects_frame(reject_rows),
        found=len(candidates) + len(rejects),
    )


def attach_columns(
    result: IngestResult,
    source: SourceSpec,
    values: Mapping[str, Mapping[str, Any]],
    columns: Iterable[str],
    dtype: str | type = "float64",
) -> IngestResult:
    """Add extra columns (the contract allows extras) to the accepted items, from `values` keyed by native id.

    Rejected items have no row, so the values are joined after build_result; a missing value is null
    (NaN for float64; None stays None with dtype object).
    """
    items = result.items
    native = [uid[len(source.name) + 1 :] for uid in items["utterance_id"]]
    for col in columns:
        column = pd.Series([values.get(n, {}).get(col) for n in native], index=items.index, dtype=object)
        items[col] = column if dtype is object else column.astype(dtype)
    return result


def check_options(source: SourceSpec, allowed: dict[str, type]) -> dict[str, Any]:
    """The source's adapter options, type-checked; an unknown or mistyped option is an error.

    Like the spec itself, a typo must not silently fall back to a default.
    """
    unknown = sorted(set(source.options) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ValueError(
            f"source {source.name!r} ({source.kind}): unknown option(s) {', '.join(unknown)}; allowed: {known}"
        )
    for name, value in source.options.items():
        if not isinstance(value, allowed[name]):
            raise ValueError(
                f"source {source.name!r} ({source.kind}): option {name} must be {allowed[name].__name__}, "
                f"got {value!r}"
            )
    return dict(source.options)
