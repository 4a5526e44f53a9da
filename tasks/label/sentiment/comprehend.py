"""Fill missing sentiment with Amazon Comprehend `BatchDetectSentiment`, cheaply and safely.

Why this shape:
- **Batches of 25** (the API maximum): 1,000 distinct short texts cost 40 calls, not 1,000.
- **Each text cut to 5,000 UTF-8 bytes on a character boundary** (the API limit per document);
  a cut inside a multi-byte character would make the request invalid.
- **Partial failures**: a call can succeed for some documents and list others in ``ErrorList``;
  only those indices are sent again (with backoff), up to ``max_retries``; what still fails becomes a
  ``labeler_failed`` reject naming the error, never a guess.
- **Throttling** is dynamic: a client-side limiter keeps calls under ``rate_per_s`` (shared by every
  shard in the process), and ``ThrottlingException`` is retried with exponential backoff and jitter.
  botocore's own retries are switched off in `make_client` so this is the only retry loop (and calls
  are counted exactly). Credential/permission errors stop the run: every call would fail the same way.
- **Languages**: the item's language, else ``settings.language``; only Comprehend's languages
  (en es fr de it pt ar hi ja ko zh zh-TW) are sent. Others are ``unsupported_language`` rejects,
  unless ``unsupported_language: text_classifier`` hands them to the offline classifier.
- **MIXED** has no class of its own: ``mixed_policy: reject`` makes it an ``unmapped_label`` reject;
  ``map:<class>`` labels it ``<class>`` with the MIXED score as confidence.
- **Scores**: ``p_negative``/``p_neutral``/``p_positive`` are Comprehend's scores, the MIXED score goes
  to the extra column ``p_mixed`` and the raw answer to ``comprehend_sentiment``; the confidence is
  the chosen class's score, checked against ``min_confidence`` per class.
- **Cache**: labels are keyed by the hash of (language, text as sent) in the label cache under
  ``aws-comprehend``; what is cached is Comprehend's raw answer, so changing the MIXED policy or the
  thresholds costs no new calls, and a re-run makes zero calls.
- **Cost**: documents and billing units (100 characters, at least 3 per document) are estimated and
  logged before any call; above ``max_cost_usd`` nothing is sent (`CostCapExceeded`).

This module is the fill step (plan, cache, decide); `comprehend_documents` holds the languages, the
text as sent, its cache key and the cost, `comprehend_client` the batched calls and their retries.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from tasks.core.label_cache import LabelCache
from tasks.core.rows import StageResult, rejects_frame
from tasks.label.sentiment.common import is_missing, stage_reject, text_of
from tasks.label.sentiment.comprehend_client import RateLimiter, detect, make_client
from tasks.label.sentiment.comprehend_documents import (
    SUPPORTED_LANGUAGES,
    CostCapExceeded,
    CostEstimate,
    Document,
    check_cost,
    comprehend_language,
    document,
    estimate_cost,
)
from tasks.spec_labelers import AwsComprehendSettings

__all__ = ["CostCapExceeded", "CostEstimate", "check_cost", "estimate_cost", "fill_missing_sentiment", "make_cache",
           "make_client", "pending_documents", "plan_documents"]  # fmt: skip

logger = logging.getLogger(__name__)

LABELER_NAME = "aws-comprehend"
ORIGIN = "aws_comprehend"
_CLASS_OF = {"POSITIVE": "positive", "NEGATIVE": "negative", "NEUTRAL": "neutral"}
SCORE_COLUMNS: tuple[str, ...] = ("p_negative", "p_neutral", "p_positive", "sentiment_confidence", "p_mixed")
RAW_COLUMN = "comprehend_sentiment"


def cache_settings(settings: AwsComprehendSettings) -> dict[str, Any]:
    """Only what changes Comprehend's answer; policy and thresholds are applied after the cache."""
    return {"api": "BatchDetectSentiment", "max_bytes": settings.max_bytes}


def make_cache(root_uri: str, settings: AwsComprehendSettings) -> LabelCache:
    return LabelCache.shared(root_uri, LABELER_NAME, cache_settings(settings))


@dataclass
class _Plan:
    docs: dict[int, Document]  # row position -> document
    offline: list[int]  # row positions for the offline classifier
    rejects: dict[int, dict[str, str]]  # row position -> reject


def plan_documents(items: pd.DataFrame, settings: AwsComprehendSettings, offline_allowed: bool) -> _Plan:
    """Which rows need a label, the document each sends, and the rows rejected before any call."""
    plan = _Plan({}, [], {})
    for pos, row in enumerate(items.to_dict("records")):
        if not is_missing(row.get("sentiment")):
            continue
        uid, language = row.get("utterance_id"), row.get("language")
        text = text_of(row)
        from tasks.label.sentiment.languages import unsupported_hint

        code = comprehend_language(language, settings.language)
        if code is None:
            if offline_allowed:
                plan.offline.append(pos)
                continue
            plan.rejects[pos] = stage_reject(
                row,
                "unsupported_language",
                unsupported_hint(row, f"Amazon Comprehend does not support it ({', '.join(SUPPORTED_LANGUAGES)}); "
                                 "labelers.aws_comprehend.unsupported_language: text_classifier hands such rows to "
                                 "the offline classifier"),
            )
        elif text is None:
            plan.rejects[pos] = stage_reject(
                row,
                "missing_label",
                f"utterance {uid} has no sentiment and no transcript to send to Amazon Comprehend; "
                "supply a transcript or sentiment, or enable labelers.transcripts",
            )
        else:
            plan.docs[pos] = document(text, code, settings)
    return plan


def pending_documents(
    plan_docs: Iterable[Document], cache: LabelCache | None
) -> tuple[list[Document], dict[str, dict[str, Any]]]:
    """(distinct documents still to send, cached raw labels) for the planned documents."""
    distinct = {d.key: d for d in plan_docs}
    cached = cache.get_many(distinct) if cache is not None and distinct else {}
    cached = {k: v for k, v in cached.items() if "comprehend_sentiment" in v}
    return [d for k, d in distinct.items() if k not in cached], cached


def _decide(
    row: dict[str, Any], raw: dict[str, Any], settings: AwsComprehendSettings
) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    """(filled fields, None) or (None, reject) for one Comprehend answer under the spec's policy."""
    uid = row.get("utterance_id")
    answer = raw["comprehend_sentiment"]
    if answer == "MIXED":
        if settings.mixed_policy == "reject":
            return None, stage_reject(
                row,
                "unmapped_label",
                f"utterance {uid}: Amazon Comprehend answered MIXED (score {raw.get('score_mixed')}); "
                "labelers.aws_comprehend.mixed_policy is reject (set map:<class> to keep such items)",
            )
        sentiment, confidence = settings.mixed_policy.split(":", 1)[1], raw.get("score_mixed")
    elif answer in _CLASS_OF:
        sentiment = _CLASS_OF[answer]
        confidence = raw.get(f"score_{sentiment}")
    else:
        return None, stage_reject(row, "labeler_failed", f"utterance {uid}: unknown Comprehend sentiment {answer!r}")
    confidence = float(confidence) if confidence is not None else math.nan
    threshold = float(settings.min_confidence.get(sentiment, 0.0))
    if not confidence >= threshold:
        return None, stage_reject(
            row,
            "low_confidence_sentiment",
            f"utterance {uid}: Amazon Comprehend labelled the transcript {answer} -> {sentiment} with score "
            f"{confidence:.3f}, below labelers.aws_comprehend.min_confidence.{sentiment} = {threshold:g}",
        )
    return {
        "sentiment": sentiment,
        "sentiment_origin": ORIGIN,
        "p_negative": raw.get("score_negative"),
        "p_neutral": raw.get("score_neutral"),
        "p_positive": raw.get("score_positive"),
        "p_mixed": raw.get("score_mixed"),
        "sentiment_confidence": confidence,
        RAW_COLUMN: answer,
    }, None


def fill_missing_sentiment(
    items: pd.DataFrame,
    settings: AwsComprehendSettings,
    client: Any,
    cache: LabelCache | None,
    *,
    offline: Callable[[pd.DataFrame], StageResult] | None = None,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[..., None] = logger.info,
) -> StageResult:
    """Label rows without a sentiment with Comprehend; rows it cannot label are rejects.

    `offline` labels the unsupported-language rows when `settings.unsupported_language` is
    ``text_classifier`` (the pipeline passes the offline text classifier). `client` may be a
    zero-argument factory, called only when something is not cached.
    """
    if cache is not None:
        if not cache.belongs_to(LABELER_NAME, cache_settings(settings)):
            raise ValueError(f"{cache!r} does not belong to {LABELER_NAME} with these settings")
    use_offline = settings.unsupported_language == "text_classifier"
    if use_offline and offline is None:
        raise ValueError("unsupported_language: text_classifier needs the offline classifier (offline=...)")
    rows = items.to_dict("records")
    plan = plan_documents(items, settings, use_offline)
    todo, labels = pending_documents(plan.docs.values(), cache)
    estimate = estimate_cost(todo, settings)
    log(
        "Amazon Comprehend: %d distinct document(s), %d cached; to send %s",
        len(todo) + len(labels),
        len(labels),
        estimate.describe(),
    )
    check_cost(estimate, settings, scope="this shard")
    errors: dict[str, str] = {}
    if todo:
        real_client = client() if callable(client) and not hasattr(client, "batch_detect_sentiment") else client
        fresh, errors, calls = detect(todo, real_client, settings, limiter=limiter, sleep=sleep)
        log("Amazon Comprehend: %d call(s), %d labelled, %d failed", calls, len(fresh), len(errors))
        if cache is not None:
            cache.put_many(fresh)
        labels.update(fresh)

    keep = [True] * len(rows)
    rejects: list[dict[str, str]] = []
    filled: dict[int, dict[str, Any]] = {}
    for pos, reject in plan.rejects.items():
        keep[pos] = False
        rejects.append(reject)
    for pos, doc in plan.docs.items():
        if doc.key in labels:
            fields, reject = _decide(rows[pos], labels[doc.key], settings)
        else:
            fields, reject = None, stage_reject(
                rows[pos],
                "labeler_failed",
                f"utterance {rows[pos].get('utterance_id')}: Amazon Comprehend failed after "
                f"{settings.max_retries} retries: {errors.get(doc.key, 'no answer')}",
            )
        if reject is not None:
            keep[pos] = False
            rejects.append(reject)
        else:
            filled[pos] = fields or {}

    out = items.copy()
    for col in ("sentiment", "sentiment_origin", RAW_COLUMN):
        values = out[col].tolist() if col in out.columns else [None] * len(rows)
        for pos, fields in filled.items():
            values[pos] = fields[col]
        out[col] = pd.Series([None if is_missing(v) else v for v in values], index=items.index, dtype=object)
    for col in SCORE_COLUMNS:
        values = out[col].tolist() if col in out.columns else [None] * len(rows)
        for pos, fields in filled.items():
            values[pos] = fields[col]
        out[col] = pd.Series([math.nan if v is None else v for v in values], index=items.index, dtype="float64")

    if plan.offline and offline is not None:
        offline_result = offline(out.iloc[plan.offline].reset_index(drop=True))
        for pos in plan.offline:
            keep[pos] = False  # replaced by the offline result's rows below
        kept = out[pd.Series(keep, index=items.index, dtype=bool)]
        merged = pd.concat([kept, offline_result.items], ignore_index=True)
        order = {uid: i for i, uid in enumerate(items["utterance_id"])}
        merged = merged.sort_values("utterance_id", key=lambda s: s.map(order)).reset_index(drop=True)
        all_rejects = pd.concat([rejects_frame(rejects), offline_result.rejects], ignore_index=True)
        return StageResult(items=merged, rejects=all_rejects)
    kept = out[pd.Series(keep, index=items.index, dtype=bool)].reset_index(drop=True)
    return StageResult(items=kept, rejects=rejects_frame(rejects))
