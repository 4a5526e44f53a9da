"""MSP-Podcast: `Audios/<FileName>` with consensus labels in `Labels/labels_consensus.csv`.

Header `FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set` (releases before 1.9 spell
the file `labels_concensus.csv`; both are read). EmoClass: A angry, S sad, H happy, U surprise,
F fear, D disgust, C contempt, N neutral, O other, X no agreement; with the default map U, O and X
are unmapped_label rejects. Split_Set Train -> train, Development -> dev, Test1/Test2/Test3 -> test.
EmoAct/EmoVal/EmoDom (1-7) go to the extra columns arousal/valence/dominance. SpkrID and Gender
"Unknown" become null.

Transcripts: release 1.12 ships `Transcripts/<FileName without .wav>.txt` (one utterance's text);
a `Transcript` column in the label file is used when a row has one. Both are human transcripts;
segments without either get theirs from the ASR labeler.

Found items: label rows plus WAVs below `Audios/` that no row names. A row whose WAV is missing is a
missing_audio reject; a WAV without a row is a missing_label reject (a partial copy, not data to
pseudo-label).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from manifests import uri as fs
from tasks.ingest.corpora.base import (
    Candidate,
    IngestResult,
    RowReject,
    attach_columns,
    build_result,
    check_options,
    ingest_reject,
    layout_error,
    list_corpus,
    read_corpus_text,
)
from tasks.ingest.corpora.labels import is_blank, map_emotion, normalize_gender, unmapped_emotion_detail
from tasks.ingest.corpora.paths import UnsafePathError, relative_path, safe_relative_path
from tasks.spec import SourceSpec

KIND = "msp_podcast"
LICENSE = "MSP-Podcast-license"
LANGUAGE = "en"
LABEL_FILES: tuple[str, ...] = ("Labels/labels_consensus.csv", "Labels/labels_concensus.csv")
EMOTION_CLASSES: dict[str, str] = {
    "A": "angry",
    "S": "sad",
    "H": "happy",
    "U": "surprise",
    "F": "fear",
    "D": "disgust",
    "C": "contempt",
    "N": "neutral",
    "O": "other",
    "X": "no-agreement",
}
SPLITS: dict[str, str] = {"train": "train", "development": "dev", "test1": "test", "test2": "test", "test3": "test"}
# label-file column -> extra utterance column
DIMENSIONS: dict[str, str] = {"EmoAct": "arousal", "EmoVal": "valence", "EmoDom": "dominance"}
TRANSCRIPT_COLUMNS: tuple[str, ...] = ("Transcript", "transcript", "Transcription")
_UNKNOWN = "unknown"
OPTIONS: dict[str, type] = {}


def _value(row: dict[str, Any], column: str) -> str | None:
    text = row.get(column)
    if is_blank(text) or str(text).strip().lower() == _UNKNOWN:
        return None
    return str(text).strip()


def _dimension(row: dict[str, Any], column: str) -> float | None:
    text = _value(row, column)
    try:
        return None if text is None else float(text)
    except ValueError:
        raise RowReject("malformed_metadata", f"{column} {text!r} is not a number") from None


def _labels(row: dict[str, Any], source: SourceSpec, item: str) -> dict[str, Any]:
    code = (_value(row, "EmoClass") or "").upper()
    emotion = EMOTION_CLASSES.get(code)
    if emotion is None:
        raise RowReject("unmapped_label", f"{item}: EmoClass {row.get('EmoClass')!r} is not one of "
                                           f"{', '.join(EMOTION_CLASSES)}")
    overrides = {EMOTION_CLASSES.get(k.strip().upper(), k): v for k, v in source.emotion_map.items()}
    sentiment = map_emotion(emotion, overrides)
    if sentiment is None:
        raise RowReject("unmapped_label", unmapped_emotion_detail(emotion, source.name, item))
    split_text = _value(row, "Split_Set")
    split = None if split_text is None else SPLITS.get(split_text.lower())
    if split_text is not None and split is None:
        raise RowReject("malformed_metadata", f"{item}: Split_Set {split_text!r} is not one of Train, "
                                               "Development, Test1, Test2, Test3")
    return {
        "sentiment": sentiment,
        "sentiment_origin": "mapped_emotion",
        "emotion": emotion,
        "speaker_id": _value(row, "SpkrID"),
        "gender": normalize_gender(_value(row, "Gender")),
        "language": LANGUAGE,
        "license": source.license or LICENSE,
        "split": split,
    }


def _read_rows(uri: str) -> tuple[list[str], list[tuple[int, dict[str, Any]]]]:
    reader = csv.DictReader(io.StringIO(read_corpus_text(uri), newline=""))
    rows = [(reader.line_num, row) for row in reader if any(not is_blank(v) for v in row.values())]
    return [c.strip() for c in reader.fieldnames or []], rows


def _transcript(row: dict[str, Any], stem: str, transcripts: dict[str, str]) -> str | None:
    for column in TRANSCRIPT_COLUMNS:
        text = row.get(column)
        if not is_blank(text):
            return str(text).strip()
    uri = transcripts.get(stem)
    if uri is None:
        return None
    try:
        text = read_corpus_text(uri).strip()
    except OSError:
        return None
    return text or None


def ingest_msp_podcast(source: SourceSpec, default_language: str) -> IngestResult:
    """Ingest an MSP-Podcast release folder (the one holding Audios/ and Labels/).

    MSP-Podcast is English, so `default_language` is not used; the spec's `license` overrides
    MSP-Podcast-license (an academic licence: filter on the license column).
    """
    check_options(source, OPTIONS)
    root, all_files = list_corpus(source)
    present = set(all_files)
    label_uri = next((fs.join(root, n) for n in LABEL_FILES if fs.join(root, n) in present), None)
    wavs: dict[str, str] = {}  # file name -> uri
    transcripts: dict[str, str] = {}  # stem -> uri
    for uri in all_files:
        parts = relative_path(root, uri).split("/")
        if parts[-1].startswith("._"):
            continue
        if parts[0] == "Audios" and parts[-1].lower().endswith(".wav"):
            wavs.setdefault(parts[-1], uri)
        elif parts[0] == "Transcripts" and parts[-1].lower().endswith(".txt"):
            transcripts[parts[-1][: -len(".txt")]] = uri
    if label_uri is None:
        raise layout_error(source, "Labels/labels_consensus.csv and Audios/*.wav",
                           f"no label file ({len(wavs)} WAVs in Audios/)", all_files)

    rejects: list[dict[str, str]] = []
    candidates: list[Candidate] = []
    dimensions: dict[str, dict[str, Any]] = {}
    named: set[str] = set()
    label_name = relative_path(root, label_uri)
    try:
        header, rows = _read_rows(label_uri)
    except (OSError, csv.Error) as err:
        header, rows = [], []
        rejects.append(ingest_reject(source, label_uri, "malformed_metadata",
                                     f"MSP-Podcast label file {label_uri} could not be read ({err})"))
    missing_cols = [c for c in ("FileName", "EmoClass") if c not in header]
    if rows and missing_cols:
        rejects.append(ingest_reject(source, label_uri, "malformed_metadata",
                                     f"MSP-Podcast label file {label_uri} has no column(s) {', '.join(missing_cols)} "
                                     f"(header: {','.join(header)}); its rows were not read"))
        rows = []
    for line, row in rows:
        ref = f"{label_name}:{line}"
        name = _value(row, "FileName") or ""
        try:
            try:
                safe_relative_path(name, "FileName")
            except UnsafePathError as err:
                raise RowReject(err.reason, f"{ref}: {err}") from None
            if not name or "/" in name or "\\" in name:
                raise RowReject("malformed_metadata", f"{ref}: FileName {name!r} does not name a file in Audios/")
            if name in named:
                raise RowReject("malformed_metadata", f"{ref}: FileName {name} is listed twice")
            named.add(name)
            if name not in wavs:
                raise RowReject("missing_audio", f"{ref}: {fs.join(root, 'Audios', name)} does not exist")
            labels = _labels(row, source, f"{ref} ({name})")
            dims = {col: _dimension(row, native) for native, col in DIMENSIONS.items()}
        except RowReject as rej:
            rejects.append(ingest_reject(source, ref, rej.reason, rej.detail))
            continue
        stem = name[: -len(".wav")] if name.lower().endswith(".wav") else name
        transcript = _transcript(row, stem, transcripts)
        labels.update(transcript_raw=transcript, transcript_origin="human" if transcript is not None else None)
        candidates.append(Candidate(stem, wavs[name], ref, labels))
        dimensions[stem] = dims
    for name, uri in sorted(wavs.items()):
        if name not in named:
            rejects.append(ingest_reject(source, uri, "missing_label",
                                         f"MSP-Podcast audio {uri} has no row in {label_uri}"))
    return attach_columns(build_result(source, candidates, rejects), source, dimensions, tuple(DIMENSIONS.values()))
