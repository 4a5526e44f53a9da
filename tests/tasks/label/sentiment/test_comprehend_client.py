"""Amazon Comprehend client: one batch per language, only ErrorList indices retried, shared rate limiter."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from tasks.label.sentiment import comprehend_client as cc
from tasks.label.sentiment import comprehend_documents as cd
from tasks.spec_labelers import AwsComprehendSettings


def test_detect_batches_per_language_and_retries_only_failed_indices() -> None:
    settings = AwsComprehendSettings(rate_per_s=1000.0, backoff_s=0.25)
    docs = [cd.document("great", "en", settings), cd.document("awful", "en", settings),
            cd.document("génial", "fr", settings)]  # fmt: skip
    client = boto3.client("comprehend", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    score = {"Positive": 0.9, "Negative": 0.05, "Neutral": 0.04, "Mixed": 0.01}
    with Stubber(client) as stub:
        stub.add_response("batch_detect_sentiment", {
            "ResultList": [{"Index": 0, "Sentiment": "POSITIVE", "SentimentScore": score}],
            "ErrorList": [{"Index": 1, "ErrorCode": "INTERNAL_SERVER_ERROR", "ErrorMessage": "x"}]},
            {"TextList": ["great", "awful"], "LanguageCode": "en"})  # fmt: skip
        stub.add_response("batch_detect_sentiment", {
            "ResultList": [{"Index": 0, "Sentiment": "NEGATIVE", "SentimentScore": score}], "ErrorList": []},
            {"TextList": ["awful"], "LanguageCode": "en"})  # fmt: skip
        stub.add_response("batch_detect_sentiment", {
            "ResultList": [{"Index": 0, "Sentiment": "POSITIVE", "SentimentScore": score}], "ErrorList": []},
            {"TextList": ["génial"], "LanguageCode": "fr"})  # fmt: skip
        waits: list[float] = []
        limiter = cc.RateLimiter(1000.0, clock=lambda: 0.0, sleep=lambda s: None)
        labels, errors, calls = cc.detect(docs, client, settings, limiter=limiter, sleep=waits.append)
        stub.assert_no_pending_responses()
    assert calls == 3 and errors == {} and len(waits) == 1
    assert {k: v["comprehend_sentiment"] for k, v in labels.items()} == {
        docs[0].key: "POSITIVE", docs[1].key: "NEGATIVE", docs[2].key: "POSITIVE"}
    assert labels[docs[0].key]["score_positive"] == pytest.approx(0.9)


def test_rate_limiter_spaces_calls() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)

    limiter = cc.RateLimiter(2.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.wait()
    assert waits == [pytest.approx(0.5), pytest.approx(1.0)]
