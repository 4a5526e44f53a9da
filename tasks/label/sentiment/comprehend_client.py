"""Amazon Comprehend's BatchDetectSentiment client: batches per language, one retry loop (throttling, partial errors), shared rate.

Why batches of 25, retries of only the failed indices and no botocore retries: see `tasks.label.sentiment.comprehend`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from tasks.core import limits
from tasks.label.sentiment.comprehend_documents import Document
from tasks.spec_labelers import AwsComprehendSettings

_SCORE_OF = {"positive": "Positive", "negative": "Negative", "neutral": "Neutral", "mixed": "Mixed"}
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "InternalServerException",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
FATAL_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "MissingAuthenticationToken",
    }
)


# The limiter is tasks.core.limits.RateLimiter (shared with Transcribe); `limiter_for` adds the Prefect
# global limit when a server is configured, so several workers share one request rate.
RateLimiter = limits.RateLimiter


def limiter_for(rate_per_s: float) -> limits.GlobalRateLimiter:
    return limits.shared_rate_limiter("comprehend", rate_per_s)


def make_client(region: str) -> Any:
    """A Comprehend client without botocore retries: `detect` is the one retry loop."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "comprehend", region_name=region, config=Config(retries={"max_attempts": 1, "mode": "standard"})
    )


def _backoff(attempt: int, settings: AwsComprehendSettings) -> float:
    return min(settings.max_backoff_s, settings.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)


def _raw_label(result: dict[str, Any]) -> dict[str, Any]:
    scores = result.get("SentimentScore") or {}
    label = {"comprehend_sentiment": str(result["Sentiment"]).upper()}
    for name, key in _SCORE_OF.items():
        value = scores.get(key)
        label[f"score_{name}"] = None if value is None else float(value)
    return label


def detect(
    documents: Sequence[Document],
    client: Any,
    settings: AwsComprehendSettings,
    *,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, dict[str, Any]], dict[str, str], int]:
    """(raw labels by key, errors by key, calls made) for `documents`, batched per language."""
    from botocore.exceptions import BotoCoreError, ClientError

    limiter = limiter or limiter_for(settings.rate_per_s)
    labels: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    calls = 0
    by_language: dict[str, list[Document]] = {}
    for doc in documents:
        by_language.setdefault(doc.language, []).append(doc)
    for language, docs in by_language.items():
        for start in range(0, len(docs), settings.batch_size):
            pending = docs[start : start + settings.batch_size]
            attempt = 0
            while pending:
                limiter.wait()
                calls += 1
                try:
                    response = client.batch_detect_sentiment(
                        TextList=[d.text for d in pending], LanguageCode=language
                    )
                except ClientError as err:
                    code = str(err.response.get("Error", {}).get("Code", "ClientError"))
                    if code in FATAL_CODES:
                        raise
                    if code in RETRYABLE_CODES and attempt < settings.max_retries:
                        sleep(_backoff(attempt, settings))
                        attempt += 1
                        continue
                    message = f"{code}: {err.response.get('Error', {}).get('Message', err)}"
                    errors.update({d.key: message for d in pending})
                    break
                except BotoCoreError as err:  # connection reset, read timeout: transient
                    if attempt < settings.max_retries:
                        sleep(_backoff(attempt, settings))
                        attempt += 1
                        continue
                    errors.update({d.key: f"{type(err).__name__}: {err}" for d in pending})
                    break
                for result in response.get("ResultList", []):
                    labels[pending[int(result["Index"])].key] = _raw_label(result)
                failed = [
                    (pending[int(e["Index"])], f"{e.get('ErrorCode')}: {e.get('ErrorMessage')}")
                    for e in response.get("ErrorList", [])
                ]
                if not failed:
                    break
                if attempt >= settings.max_retries:
                    errors.update({doc.key: msg for doc, msg in failed})
                    break
                sleep(_backoff(attempt, settings))
                attempt += 1
                pending = [doc for doc, _ in failed]  # only the indices in ErrorList go again
    return labels, errors, calls
