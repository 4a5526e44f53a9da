"""The generic `folder` adapter: audio files plus an optional metadata table (HF audiofolder style).

Audio files (.wav .flac .mp3 .ogg .m4a .mp4 .webm, any case) below `path`, and optionally ONE of
`metadata.csv`, `metadata.tsv`, `metadata.jsonl` at the root (or the file the source's `metadata`
names, anywhere) whose `file_name` column holds paths relative to `path` (absolute ones only below
`path` or a folder of option `audio_roots`). A metadata file that cannot be parsed is a
MetadataError (pre-flight exit 2), never a silent fall back to pseudo-labels (folder_metadata.py).
Optional columns: transcript, sentiment, emotion, speaker_id, gender, age, accent,
language, split, offset_s, duration_s, emotion_intensity, license. Other columns are not read; they
are named in a note (logged as a warning, shown in the card), never a reject: extra columns can be
legitimate, but a `text` or `label` column is usually a label under the wrong name.

Found items are the metadata rows plus every audio file no row names (so nothing in the folder is
lost), or every audio file when there is no metadata. A broken line whose file_name field still
names an audio file claims it (one reject naming both; the file is not ingested unlabelled too). Native id = file_name without its extension
(with the extension when two files share a stem), plus `@<offset>` for a cropped row.
"""

from __future__ import annotations

import math
import os

from manifests import uri as fs
from tasks.ingest.corpora.base import (
    AUDIO_SUFFIXES,
    Candidate,
    IngestResult,
    RowReject,
    build_result,
    check_options,
    ingest_reject,
    is_audio_file,
    layout_error,
    list_corpus,
)
from tasks.ingest.corpora.folder_files import (
    claimed_file,
    file_lookup,
    folder_symlink_escape,
    native_ids,
    on_disk,
    resolve_file_name,
)
from tasks.ingest.corpora.folder_metadata import (  # noqa: F401 - MetadataError and helpers re-exported
    MetadataError,
    MetadataUnreadable,
    _Row,
    no_file_name_column,
    quote_opened_at,
    read_metadata,
)
from tasks.ingest.corpora.labels import (
    LabelError,
    age_bucket,
    map_emotion,
    normalize_gender,
    normalize_sentiment,
    unmapped_emotion_detail,
)
from tasks.ingest.corpora.paths import (
    audio_roots_option,
    relative_path,
    symlink_escape,
)
from tasks.spec import SourceSpec

KIND = "folder"
METADATA_NAMES: tuple[str, ...] = ("metadata.csv", "metadata.tsv", "metadata.jsonl")
SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "dev": "dev",
    "test": "test",
    "validation": "dev",
    "valid": "dev",
    "val": "dev",
}
# Every column the adapter reads (file_name is required); `_labels` and `ingest_folder` use these names.
METADATA_COLUMNS: tuple[str, ...] = (
    "file_name",
    "transcript",
    "sentiment",
    "emotion",
    "speaker_id",
    "gender",
    "age",
    "accent",
    "language",
    "split",
    "offset_s",
    "duration_s",
    "emotion_intensity",
    "license",
)
# Column names other datasets use for an accepted column: named in the note as a likely rename.
_COLUMN_HINTS: dict[str, str] = {
    "text": "transcript",
    "sentence": "transcript",
    "transcription": "transcript",
    "normalized_text": "transcript",
    "utterance": "transcript",
    "label": "sentiment (negative/neutral/positive) or emotion",
    "sentiment_label": "sentiment",
    "emotion_label": "emotion",
    "speaker": "speaker_id",
    "client_id": "speaker_id",
    "sex": "gender",
    "locale": "language",
    "start": "offset_s",
    "offset": "offset_s",
    "duration": "duration_s",
}
OPTIONS: dict[str, type] = {"audio_roots": list}


def _value(values: dict[str, str | None], column: str) -> str | None:
    """A metadata value without surrounding spaces (transcripts are kept exactly as given)."""
    text = values.get(column)
    return text.strip() if text is not None else None


def unknown_columns_note(meta_uri: str, rows: list[_Row]) -> str | None:
    """A sentence naming the metadata columns the adapter does not read, or None when there are none."""
    unknown = sorted({k for row in rows for k in row.values} - set(METADATA_COLUMNS))
    if not unknown:
        return None
    hints = [f"{c} -> {_COLUMN_HINTS[c.lower()]}" for c in unknown if c.lower() in _COLUMN_HINTS]
    note = (
        f"metadata file {meta_uri}: column(s) {', '.join(unknown)} are not read by the folder adapter (their "
        f"values were ignored; accepted columns: {', '.join(METADATA_COLUMNS)})"
    )
    return note + (f"; if they hold labels, rename them: {', '.join(hints)}" if hints else "")


# ---------------------------------------------------------------------------------- row -> candidate
def _seconds(values: dict[str, str | None], column: str) -> float | None:
    text = values.get(column)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise RowReject("malformed_metadata", f"{column} {text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise RowReject("malformed_metadata", f"{column} {text!r} is not a finite number of seconds")
    if column == "offset_s" and value < 0:
        raise RowReject("malformed_metadata", f"offset_s {text!r} is negative")
    if column == "duration_s" and value <= 0:
        raise RowReject("malformed_metadata", f"duration_s {text!r} must be > 0")
    return value


def _labels(values: dict[str, str | None], source: SourceSpec, default_language: str, item: str) -> dict:
    """Utterance columns from a row; label problems raise RowReject."""
    split = _value(values, "split")
    if split is not None:
        mapped_split = SPLIT_ALIASES.get(split.strip().lower())
        if mapped_split is None:
            raise RowReject(
                "malformed_metadata", f"split {split!r} is not train, dev or test (validation/valid/val mean dev)"
            )
        split = mapped_split
    try:
        sentiment = normalize_sentiment(values.get("sentiment"))
    except LabelError as err:
        raise RowReject(err.reason, str(err)) from None
    emotion = _value(values, "emotion")
    origin = "human" if sentiment is not None else None
    if sentiment is None and emotion is not None:
        sentiment = map_emotion(emotion, source.emotion_map)
        if sentiment is None:
            raise RowReject("unmapped_label", unmapped_emotion_detail(emotion, source.name, item))
        origin = "mapped_emotion"
    transcript = values.get("transcript")
    age = _value(values, "age")
    return {
        "transcript_raw": transcript,
        "transcript_origin": "human" if transcript is not None else None,
        "sentiment": sentiment,
        "sentiment_origin": origin,
        "emotion": emotion,
        "emotion_intensity": _value(values, "emotion_intensity"),
        "speaker_id": _value(values, "speaker_id"),
        "gender": normalize_gender(_value(values, "gender")),
        "age": age,
        "age_bucket": age_bucket(age),
        "accent": _value(values, "accent"),
        "language": _value(values, "language") or source.language or default_language,
        "license": _value(values, "license") or source.license,
        "split": split,
    }


def _offset_tag(offset: float) -> str:
    return f"{offset:.3f}".rstrip("0").rstrip(".")


# --------------------------------------------------------------------------------------------- adapter
def ingest_folder(source: SourceSpec, default_language: str) -> IngestResult:
    """Ingest a folder of audio files with an optional metadata.csv/.tsv/.jsonl (see module doc)."""
    check_options(source, OPTIONS)
    audio_roots = audio_roots_option(source)
    root, all_files = list_corpus(source)
    present = set(all_files)
    audio_files = [f for f in all_files if is_audio_file(f)]
    meta_uris = [fs.join(root, n) for n in METADATA_NAMES if fs.join(root, n) in present]
    if source.metadata:  # named by the spec (a read-only corpus with its labels elsewhere): it wins
        meta_uris = [source.metadata, *meta_uris]
    if not audio_files and not meta_uris:
        raise layout_error(
            source,
            f"audio files ({' '.join(AUDIO_SUFFIXES)}) below the folder, optionally with "
            "metadata.csv/.tsv/.jsonl at its root",
            "no audio files",
            all_files,
        )

    rejects: list[dict[str, str]] = []
    notes: list[str] = []
    for extra in meta_uris[1:]:
        rejects.append(
            ingest_reject(
                source,
                extra,
                "malformed_metadata",
                f"{extra} was ignored: only one metadata file is read and {meta_uris[0]} takes precedence; "
                "merge them into one file",
            )
        )

    # (input_ref, row, resolved relative path, or why the row cannot name a file)
    rows: list[tuple[str, _Row, str | RowReject]] = []
    named: set[str] = set()
    present_rels = {relative_path(root, f) for f in all_files}
    lookup = file_lookup(root, all_files)
    if meta_uris:
        meta_uri = meta_uris[0]
        meta_name = fs.basename(meta_uri)
        try:
            meta_rows = read_metadata(meta_uri)
        except MetadataUnreadable as err:
            meta_rows = []
            message = (f"metadata file {meta_uri} {err}; its labels were not used and the audio files "
                       "were ingested without labels")
            rejects.append(ingest_reject(source, meta_uri, "malformed_metadata", message))
            notes.append(message)  # a warning in the log and the card, not only a reject row
        for row in meta_rows:
            target: str | RowReject
            if row.error is not None:
                target = RowReject("malformed_metadata", f"the line {row.error}")
                claimed = claimed_file(row.file_name, present_rels, lookup, root)
                if claimed is not None:
                    # the file the line names is this item: not ingested again without its labels
                    named.add(claimed)
                    target = RowReject(
                        "malformed_metadata",
                        f"the line {row.error}; it names {fs.join(root, claimed)}, which was not "
                        "ingested: its labels could not be read; fix the line",
                    )
            else:
                try:
                    target = on_disk(resolve_file_name(row.values.get("file_name"), root, audio_roots), present_rels, lookup)
                    named.add(target)
                except RowReject as rej:
                    target = rej
            rows.append((f"{meta_name}:{row.line}", row, target))
        note = unknown_columns_note(meta_uri, meta_rows)
        if note is not None:
            notes.append(note)

    ids = native_ids(named | {relative_path(root, f) for f in audio_files})
    candidates: list[Candidate] = []
    seen: dict[tuple[str, float], str] = {}
    for ref, row, target in rows:
        where = f"{meta_uris[0]} line {row.line}"
        try:
            if isinstance(target, RowReject):
                raise target
            rel = target
            uri = rel if rel.startswith("/") else fs.join(root, rel)  # absolute: below an audio root
            base = next((r for r in audio_roots if rel.startswith(r.rstrip("/") + "/")), None)
            escape = symlink_escape(base, uri) if base is not None else folder_symlink_escape(root, uri)
            if escape is not None:
                raise RowReject("unsafe_path", f"file_name {rel!r} is a symlink to {escape}, outside "
                                f"{base or 'the folder'}")
            if uri not in present and (fs.is_s3(uri) or not os.path.isfile(uri)):
                raise RowReject("missing_audio", f"file_name {rel!r}: {uri} does not exist")
            offset = _seconds(row.values, "offset_s")
            duration = _seconds(row.values, "duration_s")
            key = (rel, round(offset or 0.0, 3))
            if key in seen:
                raise RowReject(
                    "malformed_metadata", f"file_name {rel!r} at offset {key[1]:g} s repeats {seen[key]}"
                )
            seen[key] = ref
            labels = _labels(row.values, source, default_language, f"{where} ({rel})")
        except RowReject as rej:
            detail = rej.detail if rej.detail.startswith(where) else f"{where}: {rej.detail}"
            rejects.append(ingest_reject(source, ref, rej.reason, detail))
            continue
        cropped = offset is not None or duration is not None
        native = ids[rel] + (f"@{_offset_tag(offset or 0.0)}" if cropped else "")
        candidates.append(Candidate(native, uri, ref, labels, offset, duration))

    for path in audio_files:
        rel = relative_path(root, path)
        if rel in named:
            continue
        escape = folder_symlink_escape(root, path)
        if escape is not None:
            rejects.append(
                ingest_reject(source, path, "unsafe_path", f"{path} is a symlink to {escape}, outside the folder")
            )
            continue
        labels = {"language": source.language or default_language, "license": source.license}
        candidates.append(Candidate(ids[rel], path, path, labels))
    result = build_result(source, candidates, rejects)
    result.notes.extend(notes)
    return result
