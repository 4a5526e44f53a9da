"""The planning part of the dataset spec: splits, balance, label eligibility, weights, plausibility, PII.

Split from tasks/spec.py (the rest of the schema), which imports these models into `DatasetSpec`,
so `from tasks.spec import BalanceSpec` keeps working. Like tasks/spec_labelers.py this imports only
pydantic and `manifests.schema`. Defaults and meanings: docs/spec.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from manifests.schema import SENTIMENT_ORIGINS, TRANSCRIPT_ORIGINS
from tasks.spec_labelers import Strict as _Strict


class SplitSpec(_Strict):
    """Speaker-disjoint split assignment for corpora without an official split."""

    train: float = Field(default=0.8, ge=0, le=1)
    dev: float = Field(default=0.1, ge=0, le=1)
    test: float = Field(default=0.1, ge=0, le=1)
    max_skew: float = Field(
        default=0.15, gt=0, le=1,
        description="a source whose share of a split differs from the fraction by more than this: split_skew warning",
    )

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
    splits: list[Literal["train", "dev", "test"]] = Field(
        default_factory=lambda: ["train"],
        description="splits sampled to a uniform distribution; the others keep their natural one",
    )


_ORIGINS = {"sentiment_origin": SENTIMENT_ORIGINS, "transcript_origin": TRANSCRIPT_ORIGINS}


class OriginRule(_Strict):
    """Label origins a stage may use in one split; null = any. A bare list means sentiment_origin."""

    sentiment_origin: list[str] | None = None
    transcript_origin: list[str] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"sentiment_origin": data} if isinstance(data, list) else data

    @field_validator("sentiment_origin", "transcript_origin")
    @classmethod
    def _known_origins(cls, value: list[str] | None, info: Any) -> list[str] | None:
        allowed = _ORIGINS[info.field_name]
        for origin in value or []:
            if origin not in allowed:
                raise ValueError(f"unknown {info.field_name} {origin!r}; allowed: {', '.join(allowed)}")
        if value is not None and not value:
            raise ValueError("an empty list would exclude everything; leave the field out to allow any origin")
        return value


class EligibilitySpec(_Strict):
    """Which label origins each stage may use per split (e.g. test = human labels only)."""

    asr: dict[Literal["train", "dev", "test"], OriginRule] = Field(default_factory=dict)
    classifier: dict[Literal["train", "dev", "test"], OriginRule] = Field(default_factory=dict)


class WeightSpec(_Strict):
    """Classifier-stage class weights: (1 / frequency) ** power, capped, mean 1 over speech rows."""

    power: float = Field(default=1.0, gt=0)
    max_weight: float | None = Field(default=None, gt=0)


class StageDurationLimits(_Strict):
    """Duration bounds (seconds of the utterance's segment) for one training stage."""

    min_duration_s: float = Field(ge=0)
    max_duration_s: float | None = Field(gt=0, description="null = no upper bound")

    @model_validator(mode="after")
    def _ordered(self) -> StageDurationLimits:
        if self.max_duration_s is not None and self.max_duration_s < self.min_duration_s:
            raise ValueError(f"max_duration_s {self.max_duration_s:g} is below min_duration_s {self.min_duration_s:g}")
        return self


class PlausibilitySpec(_Strict):
    """Sanity limits on duration and speaking rate (tasks/plan/plausibility.py); outside: stage exclusions."""

    asr: StageDurationLimits = Field(
        default_factory=lambda: StageDurationLimits(min_duration_s=0.3, max_duration_s=60.0))
    classifier: StageDurationLimits = Field(
        default_factory=lambda: StageDurationLimits(min_duration_s=0.3, max_duration_s=600.0))
    min_chars_per_s: float | None = Field(
        default=0.5, ge=0, description="transcript characters (no spaces) per second below this: too few for the audio")
    max_chars_per_s: float | None = Field(
        default=35.0, gt=0, description="above this: too many characters for the audio")


class PiiSpec(_Strict):
    """Personal data in transcripts (tasks/plan/pii.py, docs/security.md)."""

    detect: Literal["none", "local", "aws_comprehend"] = Field(
        default="local", description="none | local (regexes, offline) | aws_comprehend (DetectPiiEntities)"
    )
    asr_policy: Literal["exclude", "keep"] = Field(
        default="exclude", description="an ASR-stage row whose transcript has PII: exclude it (flagged) or keep it"
    )
    min_score: float = Field(default=0.5, ge=0, le=1, description="aws_comprehend: lowest entity score that counts")
    ignore_types: list[str] = Field(
        default_factory=list, description="entity types that do not count (e.g. NAME, DATE_TIME)"
    )
    language: str = Field(default="en", description="aws_comprehend: language of items that do not say")
    max_retries: int = Field(default=5, ge=0, le=20, description="aws_comprehend: retries of throttled calls")
    backoff_s: float = Field(default=0.5, ge=0, description="aws_comprehend: first retry wait; doubles each retry")
