"""MELD: `{train,dev,test}_sent_emo.csv` annotations and one MP4 clip per utterance.

The CSVs (UTF-8 or, failing that, Windows-1252 with a source note; CRLF, curly quotes, quoted
commas) have the header `Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID,
Season, Episode, StartTime, EndTime`; columns are read by name. Clip `dia<D>_utt<U>.mp4` lives in the split's clip folder, found at any depth below `path`
so both the release layout (`MELD.Raw/train/train_splits/`) and flattened copies work:
train `train_splits`; dev `dev_splits_complete` (or `dev_splits`); test `output_repeated_splits_test`
(or `test_splits`). The CSVs are found at any depth too (the shallowest copy is read).

Found items = the CSV rows. A row whose clip is absent is `missing_audio`; a clip ffprobe cannot
read is `unreadable_audio` (MELD has both). Sentiment is MELD's own (origin human) and the emotion
is kept; when the source's `emotion_map` names the row's emotion, that mapping replaces the native
sentiment (origin mapped_emotion; null drops it as unmapped_label). speaker_id is the Speaker name
(values such as `All` are kept). StartTime/EndTime (episode time, sometimes with a one-digit hour)
only become the extra columns `episode_start_s`/`episode_end_s`, with `season` and `episode`: the
clips are already cut. Official split = the CSV's split. English; licence GPL-3.0.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from manifests import uri as fs
from tasks.ingest.corpora.base import (
    Candidate,
    IngestResult,
    attach_columns,
    build_result,
    check_options,
    ingest_reject,
    layout_error,
    list_corpus,
)
from tasks.ingest.corpora.labels import (
    LabelError,
    is_blank,
    map_emotion,
    normalize_sentiment,
    unmapped_emotion_detail,
)
from tasks.spec import SourceSpec

KIND = "meld"
LICENSE = "GPL-3.0"
LANGUAGE = "en"
SPLITS: tuple[str, ...] = ("train", "dev", "test")
CLIP_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("train_splits",),
    "dev": ("dev_splits_complete", "dev_splits"),
    "test": ("output_repeated_splits_test", "test_splits"),
}
REQUIRED_COLUMNS: tuple[str, ...] = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
TEXT_EXTRAS: tuple[str, ...] = ("season", "episode")
TIME_EXTRAS: tuple[str, ...] = ("episode_start_s", "episode_end_s")  # seconds (float64)
EXTRA_COLUMNS: tuple[str, ...] = (*TEXT_EXTRAS, *TIME_EXTRAS)
_TIME = re.compile(r"^(\d{1,2}):(\d{2}):(\d{2})[,.](\d{1,3})$")
OPTIONS: dict[str, type] = {}


def csv_name(split: str) -> str:
    return f"{split}_sent_emo.csv"


@dataclass
class MeldRow:
    """One CSV row parsed: its reference, clip name and labels, or why it was rejected."""

    ref: str
    split: str
    clip: str | None = None
    native_id: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    detail: str | None = None


def episode_seconds(value: str | None) -> float | None:
    """'00:14:38,127' or '0:10:44,769' -> seconds; None when blank or not such a time."""
    match = _TIME.match((value or "").strip())
    if match is None:
        return None
    hours, minutes, seconds, millis = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis.ljust(3, "0")) / 1000


def _int_id(values: dict[str, str], column: str) -> int:
    text = values.get(column, "").strip()
    if not text.isdigit():
        raise ValueError(f"{column} {text!r} is not a whole number")
    return int(text)


def _labels(values: dict[str, str], split: str, source: SourceSpec, item: str) -> dict[str, Any]:
    """Utterance columns of one row; LabelError/ValueError say what is wrong with it."""
    emotion = values["Emotion"].strip().lower() or None
    if emotion is not None and any(k.strip().lower() == emotion for k in source.emotion_map):
        sentiment, origin = map_emotion(emotion, source.emotion_map), "mapped_emotion"
        if sentiment is None:
            raise LabelError(unmapped_emotion_detail(emotion, source.name, item))
    else:
        sentiment, origin = normalize_sentiment(values["Sentiment"]), "human"
        if sentiment is None and emotion is not None:
            sentiment, origin = map_emotion(emotion, source.emotion_map), "mapped_emotion"
            if sentiment is None:
                raise LabelError(unmapped_emotion_detail(emotion, source.name, item))
        if sentiment is None:
            raise LabelError(f"{item}: neither Sentiment nor Emotion is given")
    text = values["Utterance"]
    speaker = values["Speaker"].strip()
    return {
        "transcript_raw": None if is_blank(text) else text,
        "transcript_origin": None if is_blank(text) else "human",
        "sentiment": sentiment,
        "sentiment_origin": origin,
        "emotion": emotion,
        "speaker_id": speaker or None,
        "language": LANGUAGE,
        "license": source.license or LICENSE,
        "split": split,
    }


def _records(reader: Any) -> Any:
    """(physical line the record starts on, record); a broken CSV is a ValueError naming the line."""
    last_line = 0
    try:
        for record in reader:
            yield last_line + 1, record
            last_line = reader.line_num
    except csv.Error as err:
        raise ValueError(f"it cannot be parsed as CSV after line {last_line}: {err}") from None


def parse_sent_emo(text: str, split: str, name: str, source: SourceSpec) -> list[MeldRow]:
    """Every data row of one `<split>_sent_emo.csv` as a MeldRow (labels, or a reject reason).

    `name` prefixes the row references (`test_sent_emo.csv:12`, 12 = the physical line the row starts
    on). Raises ValueError when the header lacks a required column: then no row can be read.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    header: list[str] | None = None
    rows: list[MeldRow] = []
    for line, record in _records(reader):
        if not record or all(not c.strip() for c in record):
            continue
        if header is None:
            header = [c.strip() for c in record]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise ValueError(f"its header lacks {', '.join(missing)} (columns: {', '.join(header)})")
            continue
        row = MeldRow(ref=f"{name}:{line}", split=split)
        rows.append(row)
        where = f"MELD row {row.ref}"
        if len(record) != len(header):
            row.reason, row.detail = "malformed_metadata", f"{where} has {len(record)} fields, the header {len(header)}"
            continue
        values = dict(zip(header, record, strict=True))
        try:
            dialogue, utterance = _int_id(values, "Dialogue_ID"), _int_id(values, "Utterance_ID")
        except ValueError as err:
            row.reason, row.detail = "malformed_metadata", f"{where}: {err}"
            continue
        row.clip = f"dia{dialogue}_utt{utterance}.mp4"
        row.native_id = f"{split}/dia{dialogue}_utt{utterance}"
        try:
            row.labels = _labels(values, split, source, f"{where} ({row.clip})")
        except LabelError as err:
            detail = str(err)
            row.reason, row.detail = err.reason, detail if detail.startswith(where) else f"{where}: {detail}"
            continue
        row.extras = {
            "season": (values.get("Season") or "").strip() or None,
            "episode": (values.get("Episode") or "").strip() or None,
            "episode_start_s": episode_seconds(values.get("StartTime")),
            "episode_end_s": episode_seconds(values.get("EndTime")),
        }
    return rows


def decode_csv(data: bytes, uri: str) -> tuple[str, str | None]:
    """(text, source note or None) of a `*_sent_emo.csv`: UTF-8 (BOM allowed), else Windows-1252.

    Some official MELD CSVs hold Windows-1252 punctuation bytes (\\x92 for ’); cp1252 maps those to
    the right characters, where a lossy UTF-8 decode would put U+FFFD into transcripts. A file that
    is neither raises ValueError (the adapter's layout error names the file).
    """
    try:
        return data.decode("utf-8-sig"), None
    except UnicodeDecodeError as err:
        utf8_error = err
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"it is neither UTF-8 ({utf8_error.reason} at byte {utf8_error.start}) nor Windows-1252 "
            f"(byte 0x{data[err.start]:02x} at byte {err.start} is undefined there)"
        ) from None
    note = (
        f"MELD file {uri} is not valid UTF-8 ({utf8_error.reason} at byte {utf8_error.start}); "
        "it was read as Windows-1252 (cp1252), which MELD's CSVs partly use for punctuation such as ’"
    )
    return text, note


def _depth(uri: str) -> int:
    return uri.count("/")


def _clip_index(files: list[str]) -> dict[str, dict[str, str]]:
    """split -> clip file name -> uri, from .mp4 files whose folder is one of the split's clip folders."""
    index: dict[str, dict[str, str]] = {split: {} for split in SPLITS}
    mp4s = [f for f in files if f.lower().endswith(".mp4") and not fs.basename(f).startswith("._")]
    for split, dirs in CLIP_DIRS.items():
        ranked = sorted(
            (dirs.index(fs.basename(fs.parent(f))), _depth(f), f)
            for f in mp4s
            if fs.basename(fs.parent(f)) in dirs
        )
        for _, _, uri in ranked:
            name = fs.basename(uri)
            # keyed by `dia<D>_utt<U>.mp4`: a copy saved as `.MP4` is still the row's clip
            index[split].setdefault(name[: -len(".mp4")] + ".mp4", uri)
    return index


def ingest_meld(source: SourceSpec, default_language: str) -> IngestResult:
    """Ingest a MELD folder (see module doc). English; `default_language` is not used."""
    check_options(source, OPTIONS)
    root, all_files = list_corpus(source)
    csvs = {
        split: sorted((f for f in all_files if fs.basename(f) == csv_name(split)), key=lambda f: (_depth(f), f))
        for split in SPLITS
    }
    if not any(csvs.values()):
        raise layout_error(
            source,
            "train_sent_emo.csv, dev_sent_emo.csv and/or test_sent_emo.csv with clip folders train_splits/, "
            "dev_splits_complete/, output_repeated_splits_test/",
            "none of the *_sent_emo.csv files",
            all_files,
        )
    clips = _clip_index(all_files)
    candidates: list[Candidate] = []
    rejects: list[dict[str, str]] = []
    extras: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for split, found in csvs.items():
        if not found:
            continue
        uri = found[0]
        try:
            text, note = decode_csv(fs.read_bytes(uri), uri)
            if note is not None:
                notes.append(note)
            rows = parse_sent_emo(text, split, csv_name(split), source)
        except ValueError as err:
            raise layout_error(source, f"{csv_name(split)} with MELD's header", f"{uri}: {err}", [uri]) from None
        for row in rows:
            if row.reason is not None:
                rejects.append(ingest_reject(source, row.ref, row.reason, row.detail or row.ref))
                continue
            assert row.clip is not None and row.native_id is not None
            clip_uri = clips[split].get(row.clip)
            if clip_uri is None:
                folders = " or ".join(f"{d}/" for d in CLIP_DIRS[split])
                rejects.append(
                    ingest_reject(
                        source,
                        row.ref,
                        "missing_audio",
                        f"MELD row {row.ref}: clip {row.clip} is not in any {folders} folder below {root}",
                    )
                )
                continue
            extras[row.native_id] = row.extras
            candidates.append(Candidate(row.native_id, clip_uri, row.ref, row.labels))
    result = build_result(source, candidates, rejects)
    result.notes.extend(notes)
    attach_columns(result, source, extras, TEXT_EXTRAS, dtype=object)
    return attach_columns(result, source, extras, TIME_EXTRAS)
