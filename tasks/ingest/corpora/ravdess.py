"""RAVDESS (audio-only release): `Actor_NN/MM-VV-EE-II-SS-RR-AA.wav`, labels encoded in the name.

MM modality (01 audio-video, 02 video, 03 audio), VV channel (01 speech, 02 song), EE emotion,
II intensity, SS statement, RR repetition, AA actor (odd = male). Speech and song files are both
ingested. Every .wav below `path` is a found item; one whose name or folder does not follow the
convention is a malformed_metadata reject. RAVDESS has no official split.
"""

from __future__ import annotations

import re

from manifests import uri as fs
from tasks.ingest.corpora.base import (
    Candidate,
    IngestResult,
    build_result,
    check_options,
    ingest_reject,
    layout_error,
    list_corpus,
)
from tasks.ingest.corpora.labels import map_emotion, unmapped_emotion_detail
from tasks.ingest.corpora.paths import relative_path
from tasks.spec import SourceSpec

KIND = "ravdess"
LICENSE = "CC-BY-NC-SA-4.0"
LANGUAGE = "en"
EMOTIONS: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
INTENSITIES: dict[str, str] = {"01": "normal", "02": "strong"}
STATEMENTS: dict[str, str] = {
    "01": "Kids are talking by the door",
    "02": "Dogs are sitting by the door",
}
_MODALITIES = {"01", "02", "03"}
_CHANNELS = {"01", "02"}
_REPETITIONS = {"01", "02"}
_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.wav$", re.IGNORECASE)
OPTIONS: dict[str, type] = {}


def _in_actor_dir(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) >= 2 and _ACTOR_DIR.match(parts[-2]) is not None


def _parse(rel: str) -> tuple[str, dict[str, str | None]]:
    """(native id, labels) for one file's relative path; ValueError says what does not parse."""
    parts = rel.split("/")
    folder = _ACTOR_DIR.match(parts[-2]) if len(parts) >= 2 else None
    if folder is None:
        raise ValueError("it is not inside an Actor_NN folder")
    match = _NAME.match(parts[-1])
    if match is None:
        raise ValueError("its name is not MM-VV-EE-II-SS-RR-AA.wav (seven two-digit codes)")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    problems = [
        f"{what} code {code!r}"
        for what, code, allowed in (
            ("modality", modality, _MODALITIES),
            ("vocal channel", channel, _CHANNELS),
            ("emotion", emotion, EMOTIONS),
            ("intensity", intensity, INTENSITIES),
            ("statement", statement, STATEMENTS),
            ("repetition", repetition, _REPETITIONS),
        )
        if code not in allowed
    ]
    if problems:
        raise ValueError(f"unknown {', '.join(problems)}")
    if actor != folder.group(1):
        raise ValueError(f"actor {actor} in the name does not match its folder {parts[-2]}")
    labels: dict[str, str | None] = {
        "transcript_raw": STATEMENTS[statement],
        "transcript_origin": "human",
        "emotion": EMOTIONS[emotion],
        "emotion_intensity": INTENSITIES[intensity],
        "speaker_id": f"actor_{actor}",
        "gender": "male" if int(actor) % 2 == 1 else "female",
        "language": LANGUAGE,
        "split": None,
    }
    return parts[-1][: -len(".wav")], labels


def ingest_ravdess(source: SourceSpec, default_language: str) -> IngestResult:
    """Ingest a RAVDESS folder (the Actor_NN folders, or a folder holding them).

    RAVDESS is English, so `default_language` is not used; the spec's `license` overrides CC-BY-NC-SA-4.0.
    """
    check_options(source, OPTIONS)
    root, all_files = list_corpus(source)
    wavs = [f for f in all_files if f.lower().endswith(".wav") and not fs.basename(f).startswith("._")]
    in_actor_dirs = [f for f in wavs if _in_actor_dir(relative_path(root, f))]
    if not any(_NAME.match(fs.basename(f)) for f in in_actor_dirs):
        raise layout_error(
            source,
            "Actor_NN/ folders with MM-VV-EE-II-SS-RR-AA.wav files",
            f"0 such files ({len(in_actor_dirs)} .wav files in Actor_NN folders)",
            all_files,
        )
    candidates: list[Candidate] = []
    rejects: list[dict[str, str]] = []
    for uri in wavs:
        rel = relative_path(root, uri)
        try:
            native_id, labels = _parse(rel)
        except ValueError as err:
            rejects.append(
                ingest_reject(source, uri, "malformed_metadata", f"RAVDESS file {uri} was skipped: {err}")
            )
            continue
        sentiment = map_emotion(labels["emotion"] or "", source.emotion_map)
        if sentiment is None:
            rejects.append(
                ingest_reject(
                    source, uri, "unmapped_label", unmapped_emotion_detail(labels["emotion"] or "", source.name, uri)
                )
            )
            continue
        labels.update(sentiment=sentiment, sentiment_origin="mapped_emotion", license=source.license or LICENSE)
        candidates.append(Candidate(native_id, uri, uri, labels))
    return build_result(source, candidates, rejects)
