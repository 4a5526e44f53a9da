"""CREMA-D: `AudioWAV/<actor>_<SENT>_<EMO>_<LVL>.wav`, labels in the name; `VideoDemographics.csv`.

`path` is the corpus folder (holding `AudioWAV/` and `VideoDemographics.csv`) or `AudioWAV/` itself,
in which case the demographics file is looked for next to it. EMO: ANG anger, DIS disgust, FEA fear,
HAP happy, NEU neutral, SAD sad (mapped to sentiment through labels.py and the source's
`emotion_map`, keyed by these words). LVL: LO low, MD medium, HI high, XX unspecified (-> null
intensity). SENT is one of 12 fixed sentences, which become the human transcript.

Every .wav below `path` is a found item; one whose name does not follow the convention is a
`malformed_metadata` reject. Age and gender come from the demographics file (an actor missing from
it keeps them null); its Race and Ethnicity go into the extra columns `race` and `ethnicity`.
CREMA-D has no official split. Licence ODbL-1.0.
"""

from __future__ import annotations

import csv
import io
import re

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
    age_bucket,
    is_blank,
    map_emotion,
    normalize_gender,
    unmapped_emotion_detail,
)
from tasks.spec import SourceSpec

KIND = "cremad"
LICENSE = "ODbL-1.0"
LANGUAGE = "en"
DEMOGRAPHICS_FILE = "VideoDemographics.csv"
EXTRA_COLUMNS: tuple[str, ...] = ("race", "ethnicity")
EMOTIONS: dict[str, str] = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
LEVELS: dict[str, str | None] = {"LO": "low", "MD": "medium", "HI": "high", "XX": None}
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.wav$", re.IGNORECASE)
OPTIONS: dict[str, type] = {}


def parse_name(name: str) -> dict[str, str | None]:
    """Labels from a file name such as `1001_DFA_ANG_XX.wav`; ValueError says what does not parse."""
    match = _NAME.match(name)
    if match is None:
        raise ValueError("its name is not <actor>_<SENTENCE>_<EMOTION>_<LEVEL>.wav (e.g. 1001_DFA_ANG_XX.wav)")
    actor, sentence, emotion, level = (g.upper() for g in match.groups())
    problems = [
        f"{what} code {code!r}"
        for what, code, allowed in (("sentence", sentence, SENTENCES), ("emotion", emotion, EMOTIONS), ("level", level, LEVELS))
        if code not in allowed
    ]
    if problems:
        raise ValueError(f"unknown {', '.join(problems)}")
    return {
        "transcript_raw": SENTENCES[sentence],
        "transcript_origin": "human",
        "emotion": EMOTIONS[emotion],
        "emotion_intensity": LEVELS[level],
        "speaker_id": actor,
        "language": LANGUAGE,
        "split": None,
    }


def parse_demographics(text: str) -> dict[str, dict[str, str | None]]:
    """ActorID -> {age, gender, race, ethnicity} from VideoDemographics.csv (columns by header name)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    out: dict[str, dict[str, str | None]] = {}
    for row in reader:
        values = {(k or "").strip().lower(): (v.strip() if isinstance(v, str) and not is_blank(v) else None)
                  for k, v in row.items()}
        actor = values.get("actorid")
        if actor is None:
            continue
        out.setdefault(actor, {
            "age": values.get("age"),
            "gender": normalize_gender(values.get("sex")),
            "race": values.get("race"),
            "ethnicity": values.get("ethnicity"),
        })
    return out


def _demographics(root: str, files: list[str]) -> dict[str, dict[str, str | None]]:
    """The shallowest VideoDemographics.csv below root, else the one next to an AudioWAV root."""
    found = sorted((f for f in files if fs.basename(f) == DEMOGRAPHICS_FILE), key=lambda f: (f.count("/"), f))
    if not found:
        beside = fs.join(fs.parent(root), DEMOGRAPHICS_FILE)
        if fs.parent(root) != root and fs.exists(beside):
            found = [beside]
    return parse_demographics(fs.read_bytes(found[0]).decode("utf-8", errors="replace")) if found else {}


def ingest_cremad(source: SourceSpec, default_language: str) -> IngestResult:
    """Ingest a CREMA-D folder (see module doc). English; `default_language` is not used."""
    check_options(source, OPTIONS)
    root, all_files = list_corpus(source)
    wavs = [f for f in all_files if f.lower().endswith(".wav") and not fs.basename(f).startswith("._")]
    if not any(_NAME.match(fs.basename(f)) for f in wavs):
        raise layout_error(
            source,
            "AudioWAV/<actor>_<SENTENCE>_<EMOTION>_<LEVEL>.wav files (e.g. 1001_DFA_ANG_XX.wav)",
            f"0 such files ({len(wavs)} .wav files)",
            all_files,
        )
    people = _demographics(root, all_files)
    candidates: list[Candidate] = []
    rejects: list[dict[str, str]] = []
    extras: dict[str, dict[str, str | None]] = {}
    for uri in wavs:
        name = fs.basename(uri)
        try:
            labels = parse_name(name)
        except ValueError as err:
            rejects.append(ingest_reject(source, uri, "malformed_metadata", f"CREMA-D file {uri} was skipped: {err}"))
            continue
        emotion = labels["emotion"] or ""
        sentiment = map_emotion(emotion, source.emotion_map)
        if sentiment is None:
            rejects.append(ingest_reject(source, uri, "unmapped_label", unmapped_emotion_detail(emotion, source.name, uri)))
            continue
        person = people.get(labels["speaker_id"] or "", {})
        labels.update(
            sentiment=sentiment,
            sentiment_origin="mapped_emotion",
            gender=person.get("gender"),
            age=person.get("age"),
            age_bucket=age_bucket(person.get("age")),
            license=source.license or LICENSE,
        )
        native_id = name[: -len(".wav")]
        extras[native_id] = {col: person.get(col) for col in EXTRA_COLUMNS}
        candidates.append(Candidate(native_id, uri, uri, labels))
    return attach_columns(build_result(source, candidates, rejects), source, extras, EXTRA_COLUMNS, dtype=object)
