"""Schema versions 1 and 2 of the manifest contract (see docs/manifest-contract.md).

The column lists here are the single source of truth: writers cast to them, the validator checks
them, and training jobs can import them without pulling in the build pipeline.
"""

from __future__ import annotations

import pyarrow as pa

# Version 2 is the partitioned layout (a folder of parts per manifest, manifests/parts.py) with the
# same columns; version 1 (one file per manifest) stays readable.
SCHEMA_VERSION = "2"
SCHEMA_V1 = "1"
READABLE_VERSIONS: tuple[str, ...] = ("1", "2")
SCHEMA_VERSION_KEY = b"voicetone.schema_version"

SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
CLASS_INDEX: dict[str, int] = {"negative": 0, "neutral": 1, "positive": 2}
SPLITS: tuple[str, ...] = ("train", "dev", "test")
TRANSCRIPT_ORIGINS: tuple[str, ...] = ("human", "whisper", "aws_transcribe")
SENTIMENT_ORIGINS: tuple[str, ...] = ("human", "mapped_emotion", "text_classifier", "aws_comprehend")
GENDERS: tuple[str, ...] = ("female", "male", "other")
# Which detector decided an utterance's speech intervals (tasks/label/speech_presence.py).
SPEECH_DETECTORS: tuple[str, ...] = ("vad", "second_opinion", "none")

REJECT_REASONS: tuple[str, ...] = (
    "missing_audio",
    "unreadable_audio",
    "empty_audio",
    "unmapped_label",
    "malformed_metadata",
    "unsupported_language",
    "low_confidence_transcript",
    "low_confidence_sentiment",
    "unsafe_path",
    "unsupported_audio",
    "missing_label",
    "duplicate_segment",
    "labeler_failed",
    "language_mismatch",
)

# Canonical file names inside a release.
UTTERANCES = "utterances"
ASR_STAGE = "asr_stage"
CLASSIFIER_STAGE = "classifier_stage"
REJECTS = "rejects"
MANIFEST_NAMES: tuple[str, ...] = (UTTERANCES, ASR_STAGE, CLASSIFIER_STAGE, REJECTS)

# Fields left out of content_sha256: they change between identical runs.
TIMING_FIELDS: frozenset[str] = frozenset({"processing_time_s", "created_at", "built_at"})

UTTERANCES_SCHEMA = pa.schema(
    [
        ("utterance_id", pa.string()),
        ("source", pa.string()),
        ("corpus", pa.string()),
        ("audio_uri", pa.string()),
        ("offset_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("sample_rate", pa.int32()),
        ("num_channels", pa.int32()),
        ("audio_sha256", pa.string()),
        ("segment_key", pa.string()),
        ("language", pa.string()),
        ("language_origin", pa.string()),  # declared | detected (tasks/transcripts/language.py)
        ("language_probability", pa.float64()),  # Whisper's probability of `language` on the first 30 s
        ("transcript", pa.string()),
        ("transcript_raw", pa.string()),
        ("transcript_origin", pa.string()),
        ("transcript_confidence", pa.float64()),
        ("avg_logprob", pa.float64()),
        ("no_speech_prob", pa.float64()),
        ("compression_ratio", pa.float64()),
        ("sentiment", pa.string()),
        ("sentiment_origin", pa.string()),
        ("p_negative", pa.float64()),
        ("p_neutral", pa.float64()),
        ("p_positive", pa.float64()),
        ("sentiment_confidence", pa.float64()),
        ("emotion", pa.string()),
        ("emotion_intensity", pa.string()),
        ("speaker_id", pa.string()),
        ("gender", pa.string()),
        ("age", pa.string()),
        ("age_bucket", pa.string()),
        ("accent", pa.string()),
        ("license", pa.string()),
        ("split", pa.string()),
        ("speech_detector", pa.string()),
    ]
)

# Columns shared by both stage files.
_STAGE_COMMON = [
    ("row_id", pa.string()),
    ("utterance_id", pa.string()),
    ("source", pa.string()),
    ("split", pa.string()),
    ("sentiment", pa.string()),
    ("source_audio_uri", pa.string()),
    ("audio_uri", pa.string()),
    ("audio_sha256", pa.string()),
    ("offset_s", pa.float64()),
    ("duration_s", pa.float64()),
    ("recipe_applied", pa.bool_()),
    ("speed", pa.float64()),
    ("rir_id", pa.string()),
    ("noise_id", pa.string()),
    ("noise_offset_s", pa.float64()),
    ("snr_db", pa.float64()),
    ("gain", pa.float64()),
    ("aug_seed", pa.int64()),
    ("sentiment_origin", pa.string()),
    ("transcript_origin", pa.string()),
]

ASR_STAGE_SCHEMA = pa.schema(_STAGE_COMMON + [("target_text", pa.string())])

CLASSIFIER_STAGE_SCHEMA = pa.schema(
    _STAGE_COMMON
    + [
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("valid_s", pa.float64()),
        ("speech_present", pa.bool_()),
        ("speech_ratio", pa.float64()),
        ("class_index", pa.int32()),
        ("class_weight", pa.float64()),
    ]
)

REJECTS_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("input_ref", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    UTTERANCES: UTTERANCES_SCHEMA,
    ASR_STAGE: ASR_STAGE_SCHEMA,
    CLASSIFIER_STAGE: CLASSIFIER_STAGE_SCHEMA,
    REJECTS: REJECTS_SCHEMA,
}

# The id column each manifest is sorted by for content hashing.
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    UTTERANCES: ("utterance_id",),
    ASR_STAGE: ("row_id",),
    CLASSIFIER_STAGE: ("row_id",),
    REJECTS: ("source", "input_ref", "stage", "reason"),
}


# Columns added to schema version 1 after releases were published without them: writers always write
# them, readers and the validator accept a release that lacks them (docs/manifest-contract.md).
# Stage files' `audio_sha256`: sha256 of the bytes of `audio_uri` when that file is inside the release.
OPTIONAL_COLUMNS: dict[str, frozenset[str]] = {
    UTTERANCES: frozenset({"language_origin", "language_probability"}),
    ASR_STAGE: frozenset({"audio_sha256"}),
    CLASSIFIER_STAGE: frozenset({"audio_sha256"}),
    REJECTS: frozenset(),
}


# Types of the columns this project adds to the contract's (docs/manifest-contract.md, "Added columns"):
# a column that holds no value in any part of a release still gets this type, whatever the layout.
ADDED_COLUMN_TYPES: dict[str, dict[str, pa.DataType]] = {
    UTTERANCES: {"split_origin": pa.string(), "pii_detected": pa.bool_(), "pii_types": pa.string(),
                 "asr_hypothesis": pa.string(), "asr_hypothesis_origin": pa.string(),
                 "sentiment_compound": pa.float64()},
}


def column_type(name: str, column: str) -> pa.DataType | None:
    """The type the contract (or this project's additions) gives `column` of manifest `name`, if any."""
    if column in SCHEMAS[name].names:
        return SCHEMAS[name].field(column).type
    return ADDED_COLUMN_TYPES.get(name, {}).get(column)


def required_columns(name: str) -> list[str]:
    """Columns a manifest must carry (extra columns are allowed by the contract; `OPTIONAL_COLUMNS` may be absent)."""
    return [c for c in SCHEMAS[name].names if c not in OPTIONAL_COLUMNS[name]]
