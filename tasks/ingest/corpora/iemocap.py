"""IEMOCAP: `Session<N>/sentences/wav/<dialog>/<utt>.wav`, labels and transcripts per dialog.

Labels come from `Session<N>/dialog/EmoEvaluation/<dialog>.txt`, one line per utterance
`[start - end]\\t<utt>\\t<emo>\\t[V, A, D]` (the annotator lines below it are not read); transcripts
from `Session<N>/dialog/transcriptions/<dialog>.txt`, lines `<utt> [start-end]: text`. The speaker's
gender is the letter of the utterance id's last part (`Ses01F_impro01_M000` -> M, male: the `F` after
the session number says which actor wore the markers, not who speaks), so the speaker is
`Ses<NN>_<F|M>`. Valence/arousal/dominance (1-5) go to the extra columns valence/arousal/dominance.

Found items: every utterance WAV below `sentences/wav` (macOS `._` files skipped) plus every
labelled utterance whose WAV is missing (a missing_audio reject). An utterance without an
EmoEvaluation line is a missing_label reject: IEMOCAP is an emotion corpus, so a WAV without its
label means a partial copy rather than data to pseudo-label. IEMOCAP has no official split; the
option `test_sessions: [5]` gives the usual leave-one-session-out split (listed sessions test, the
others train).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tasks.ingest.corpora.base import (
    Candidate,
    IngestResult,
    attach_columns,
    build_result,
    check_options,
    ingest_reject,
    layout_error,
    list_corpus,
    read_corpus_text,
)
from tasks.ingest.corpora.labels import map_emotion, unmapped_emotion_detail
from tasks.ingest.corpora.paths import relative_path
from tasks.spec import SourceSpec

KIND = "iemocap"
LICENSE = "IEMOCAP-license"
LANGUAGE = "en"
# EmoEvaluation codes -> the emotion names of tasks.ingest.corpora.labels (xxx = annotators disagreed).
EMOTION_CODES: dict[str, str] = {
    "neu": "neutral",
    "hap": "happy",
    "ang": "angry",
    "sad": "sad",
    "exc": "excited",
    "fru": "frustrated",
    "fea": "fear",
    "sur": "surprise",
    "dis": "disgust",
    "oth": "other",
    "xxx": "xxx",
}
DIMENSION_COLUMNS: tuple[str, ...] = ("valence", "arousal", "dominance")
OPTIONS: dict[str, type] = {"test_sessions": list}
_SESSION = re.compile(r"^Session(\d+)$")
_UTTERANCE = re.compile(r"^Ses(\d{2})[FM]_(.+)_([FM])\d{3}$")
_EVAL_LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]")
_TRANSCRIPT_LINE = re.compile(r"^(Ses\S+)\s+\[[^\]]*\]:\s?(.*)$")


@dataclass(frozen=True)
class _Label:
    emotion_code: str
    dimensions: tuple[float | None, float | None, float | None]
    file: str


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _parse_evaluation(text: str, uri: str) -> dict[str, _Label]:
    labels: dict[str, _Label] = {}
    for line in text.splitlines():
        match = _EVAL_LINE.match(line.strip())
        if match is None:
            continue
        _, _, utt, code, vad = match.groups()
        parts = [_float(p.strip()) for p in vad.split(",")]
        dims = tuple(parts) if len(parts) == 3 else (None, None, None)
        labels[utt] = _Label(code.lower(), dims, uri)  # type: ignore[arg-type]
    return labels


def _parse_transcripts(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = _TRANSCRIPT_LINE.match(line.strip())
        if match is not None and match.group(2).strip():
            out[match.group(1)] = match.group(2).strip()
    return out


def _session_files(root: str, files: list[str], folder: tuple[str, ...]) -> list[tuple[int, str]]:
    """(session, uri) of the `.txt` files directly in Session<N>/<folder...>/ (no `._` files)."""
    out = []
    for uri in files:
        parts = relative_path(root, uri).split("/")
        session = _SESSION.match(parts[0])
        if (
            session is not None
            and tuple(parts[1:-1]) == folder
            and parts[-1].lower().endswith(".txt")
            and not parts[-1].startswith("._")
        ):
            out.append((int(session.group(1)), uri))
    return out


def _test_sessions(source: SourceSpec, present: set[int]) -> set[int] | None:
    options = check_options(source, OPTIONS)
    if "test_sessions" not in options:
        return None
    sessions = options["test_sessions"]
    if not sessions or not all(isinstance(s, int) and not isinstance(s, bool) for s in sessions):
        raise ValueError(
            f"source {source.name!r} (iemocap): option test_sessions must be a non-empty list of session "
            f"numbers such as [5], got {sessions!r}"
        )
    missing = sorted(set(sessions) - present)
    if missing:
        raise ValueError(
            f"source {source.name!r} (iemocap): test_sessions names session(s) {missing} that are not in "
            f"{source.path} (found sessions {sorted(present)})"
        )
    return set(sessions)


def _translate_overrides(overrides: Mapping[str, str | None]) -> dict[str, str | None]:
    """emotion_map keys may be IEMOCAP codes (`exc`) or names (`excited`)."""
    return {EMOTION_CODES.get(k.strip().lower(), k): v for k, v in overrides.items()}


def ingest_iemocap(source: SourceSpec, default_language: str) -> IngestResult:
    """Ingest an IEMOCAP release folder (the one holding Session1..Session5).

    IEMOCAP is English, so `default_language` is not used; the spec's `license` overrides
    IEMOCAP-license (a licence that forbids redistribution: filter on the license column).
    """
    check_options(source, OPTIONS)
    root, all_files = list_corpus(source)
    wavs: dict[str, tuple[int, str, str]] = {}  # utt -> (session, dialog folder, uri)
    for uri in all_files:
        parts = relative_path(root, uri).split("/")
        session = _SESSION.match(parts[0])
        if (
            session is None
            or len(parts) != 5
            or parts[1:3] != ["sentences", "wav"]
            or parts[-1].startswith("._")
            or not parts[-1].lower().endswith(".wav")
        ):
            continue
        wavs[parts[-1][: -len(".wav")]] = (int(session.group(1)), parts[3], uri)
    evaluations = _session_files(root, all_files, ("dialog", "EmoEvaluation"))
    if not wavs:
        raise layout_error(
            source,
            "Session<N>/sentences/wav/<dialog>/<utterance>.wav files with labels in "
            "Session<N>/dialog/EmoEvaluation/<dialog>.txt",
            f"no utterance WAVs ({len(evaluations)} EmoEvaluation files)",
            all_files,
        )
    test_sessions = _test_sessions(source, {s for s, _, _ in wavs.values()})

    rejects: list[dict[str, str]] = []
    labels: dict[str, _Label] = {}
    for _, uri in evaluations:
        try:
            labels.update(_parse_evaluation(read_corpus_text(uri), uri))
        except OSError as err:
            rejects.append(ingest_reject(source, uri, "malformed_metadata",
                                         f"IEMOCAP label file {uri} could not be read ({err}); its "
                                         "utterances are rejected as missing_label"))
    transcripts: dict[str, str] = {}
    for _, uri in _session_files(root, all_files, ("dialog", "transcriptions")):
        try:
            transcripts.update(_parse_transcripts(read_corpus_text(uri)))
        except OSError:
            continue  # transcripts are optional: the ASR labeler fills what is missing

    overrides = _translate_overrides(source.emotion_map)
    candidates: list[Candidate] = []
    dimensions: dict[str, dict[str, Any]] = {}
    for utt in sorted(set(wavs) | set(labels)):
        if utt not in wavs:
            label_file = labels[utt].file
            rejects.append(ingest_reject(source, f"{label_file}:{utt}", "missing_audio",
                                         f"IEMOCAP utterance {utt} is labelled in {label_file} but its WAV "
                                         f"Session<N>/sentences/wav/<dialog>/{utt}.wav does not exist"))
            continue
        session, dialog, uri = wavs[utt]
        match = _UTTERANCE.match(utt)
        problem = None
        if match is None:
            problem = "its name is not an IEMOCAP utterance id like Ses01F_impro01_M000"
        elif int(match.group(1)) != session:
            problem = f"its id says session {int(match.group(1))} but it is inside Session{session}"
        elif not utt.startswith(dialog + "_"):
            problem = f"it is not inside the folder of its dialog (found in {dialog})"
        if problem is not None:
            rejects.append(ingest_reject(source, uri, "malformed_metadata", f"IEMOCAP file {uri} was skipped: {problem}"))
            continue
        assert match is not None
        label = labels.get(utt)
        if label is None:
            rejects.append(ingest_reject(source, uri, "missing_label",
                                         f"IEMOCAP utterance {uri} has no line in "
                                         f"Session{session}/dialog/EmoEvaluation/{dialog}.txt"))
            continue
        emotion = EMOTION_CODES.get(label.emotion_code)
        sentiment = map_emotion(emotion, overrides) if emotion is not None else None
        if sentiment is None:
            rejects.append(ingest_reject(source, uri, "unmapped_label",
                                         unmapped_emotion_detail(emotion or label.emotion_code, source.name, uri)))
            continue
        transcript = transcripts.get(utt)
        gender_letter = match.group(3)
        split = None if test_sessions is None else ("test" if session in test_sessions else "train")
        candidates.append(Candidate(utt, uri, uri, {
            "transcript_raw": transcript,
            "transcript_origin": "human" if transcript is not None else None,
            "sentiment": sentiment,
            "sentiment_origin": "mapped_emotion",
            "emotion": emotion,
            "speaker_id": f"Ses{session:02d}_{gender_letter}",
            "gender": "female" if gender_letter == "F" else "male",
            "language": LANGUAGE,
            "license": source.license or LICENSE,
            "split": split,
        }))
        dimensions[utt] = dict(zip(DIMENSION_COLUMNS, label.dimensions, strict=True))
    return attach_columns(build_result(source, candidates, rejects), source, dimensions, DIMENSION_COLUMNS)
