"""Amazon Comprehend labeler: batching, partial failures, throttling, MIXED, bytes, languages, cache, cost.

moto does not implement BatchDetectSentiment (facts.md), so a real botocore client is driven by
`botocore.stub.Stubber`: it validates every request and response against the service model, and
raises on any call that was not expected, which is how "zero calls" is proven.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from tasks.core.label_cache import LabelCache
from tasks.label.sentiment import comprehend as cp
from tasks.label.sentiment import comprehend_documents as cd
from tasks.label.sentiment import text_classifier, trained
from tasks.spec_labelers import AwsComprehendSettings, TextClassifierSettings, TrainedClassifierSettings


def _row(uid: str, text: str | None, language: str | None = "en", **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "utterance_id": f"src/{uid}",
        "source": "src",
        "language": language,
        "transcript": text,
        "transcript_raw": text,
        "sentiment": None,
        "sentiment_origin": None,
        "p_negative": None,
        "p_neutral": None,
        "p_positive": None,
        "sentiment_confidence": None,
    }
    return {**base, **fields}


def _client() -> Any:
    return boto3.client(
        "comprehend", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def _result(index: int, sentiment: str = "POSITIVE", **scores: float) -> dict[str, Any]:
    base = {"Positive": 0.0, "Negative": 0.0, "Neutral": 0.0, "Mixed": 0.0}
    base.update(scores or {sentiment.capitalize(): 0.9})
    return {"Index": index, "Sentiment": sentiment, "SentimentScore": base}


def _error(index: int, code: str = "INTERNAL_SERVER_ERROR") -> dict[str, Any]:
    return {"Index": index, "ErrorCode": code, "ErrorMessage": f"document {index} failed"}


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _settings(**overrides: Any) -> AwsComprehendSettings:
    return AwsComprehendSettings(rate_per_s=1000.0, backoff_s=0.25, **overrides)


def _fill(items: pd.DataFrame, settings: AwsComprehendSettings, client: Any, cache: Any = None, **kw: Any):
    kw.setdefault("sleep", Sleeps())
    kw.setdefault("limiter", cp.RateLimiter(settings.rate_per_s, clock=lambda: 0.0, sleep=lambda s: None))
    return cp.fill_missing_sentiment(items, settings, client, cache, **kw)


def test_batches_of_25_and_scores_filled() -> None:
    settings = _settings()
    texts = [f"review number {i} was great" for i in range(30)]
    items = pd.DataFrame(
        [_row(f"u{i}", t) for i, t in enumerate(texts)]
        + [_row("human", "whatever", sentiment="negative", sentiment_origin="human")]
    )
    client = _client()
    with Stubber(client) as stub:
        stub.add_response(
            "batch_detect_sentiment",
            {"ResultList": [_result(i, Positive=0.8, Neutral=0.15, Negative=0.04, Mixed=0.01) for i in range(25)],
             "ErrorList": []},
            {"TextList": texts[:25], "LanguageCode": "en"},
        )
        stub.add_response(
            "batch_detect_sentiment",
            {"ResultList": [_result(i, "NEGATIVE", Negative=0.7, Neutral=0.2, Positive=0.05, Mixed=0.05)
                            for i in range(5)], "ErrorList": []},
            {"TextList": texts[25:], "LanguageCode": "en"},
        )
        result = _fill(items, settings, client)
        stub.assert_no_pending_responses()
    kept = result.items.set_index("utterance_id")
    assert len(result.rejects) == 0 and len(kept) == 31
    assert kept.loc["src/u0", "sentiment"] == "positive"
    assert kept.loc["src/u0", "sentiment_origin"] == "aws_comprehend"
    assert kept.loc["src/u0", "p_positive"] == pytest.approx(0.8)
    assert kept.loc["src/u0", "p_mixed"] == pytest.approx(0.01)
    assert kept.loc["src/u0", "sentiment_confidence"] == pytest.approx(0.8)
    assert kept.loc["src/u29", "sentiment"] == "negative"
    assert kept.loc["src/u29", "sentiment_confidence"] == pytest.approx(0.7)
    assert kept.loc["src/u29", "comprehend_sentiment"] == "NEGATIVE"
    assert kept.loc["src/human", "sentiment"] == "negative"  # a human label is never sent nor overridden
    assert kept.loc["src/human", "sentiment_origin"] == "human"


def test_partial_error_list_retries_only_failed_indices() -> None:
    settings = _settings(max_retries=2)
    texts = ["alpha is good", "beta is bad", "gamma is fine", "delta never works"]
    items = pd.DataFrame([_row(f"u{i}", t) for i, t in enumerate(texts)])
    client = _client()
    sleeps = Sleeps()
    with Stubber(client) as stub:
        stub.add_response(
            "batch_detect_sentiment",
            {"ResultList": [_result(0), _result(2, "NEUTRAL")], "ErrorList": [_error(1), _error(3)]},
            {"TextList": texts, "LanguageCode": "en"},
        )
        stub.add_response(  # only indices 1 and 3 again, re-indexed from 0
            "batch_detect_sentiment",
            {"ResultList": [_result(0, "NEGATIVE")], "ErrorList": [_error(1)]},
            {"TextList": [texts[1], texts[3]], "LanguageCode": "en"},
        )
        stub.add_response(
            "batch_detect_sentiment",
            {"ResultList": [], "ErrorList": [_error(0, "INTERNAL_SERVER_ERROR")]},
            {"TextList": [texts[3]], "LanguageCode": "en"},
        )
        result = _fill(items, settings, client, sleep=sleeps)
        stub.assert_no_pending_responses()
    kept = result.items.set_index("utterance_id")["sentiment"].to_dict()
    assert kept == {"src/u0": "positive", "src/u1": "negative", "src/u2": "neutral"}
    (reject,) = result.rejects.to_dict("records")
    assert reject["input_ref"] == "src/u3" and reject["reason"] == "labeler_failed"
    assert "INTERNAL_SERVER_ERROR" in reject["detail"] and "src/u3" in reject["detail"]
    assert len(sleeps) == 2 and 0 < sleeps[0] <= 0.25 and sleeps[1] <= 0.5  # exponential backoff


def test_throttling_is_retried_then_succeeds_and_exhaustion_rejects() -> None:
    settings = _settings(max_retries=3)
    items = pd.DataFrame([_row("a", "I love it"), _row("b", "I hate it")])
    client = _client()
    sleeps = Sleeps()
    with Stubber(client) as stub:
        for _ in range(2):
            stub.add_client_error("batch_detect_sentiment", "ThrottlingException", "Rate exceeded", 400)
        stub.add_response(
            "batch_detect_sentiment",
            {"ResultList": [_result(0), _result(1, "NEGATIVE")], "ErrorList": []},
            {"TextList": ["I love it", "I hate it"], "LanguageCode": "en"},
        )
        result = _fill(items, settings, client, sleep=sleeps)
        stub.assert_no_pending_responses()
    assert list(result.items["sentiment"]) == ["positive", "negative"]
    assert len(sleeps) == 2 and sleeps[1] > 0

    client = _client()
    with Stubber(client) as stub:  # throttled on every attempt: rejects, not a crashed run
        for _ in range(4):
            stub.add_client_error("batch_detect_sentiment", "ThrottlingException", "Rate exceeded", 400)
        result = _fill(items, settings, client)
        stub.assert_no_pending_responses()
    assert result.items.empty
    assert set(result.rejects["reason"]) == {"labeler_failed"}
    assert "ThrottlingException" in result.rejects["detail"].iloc[0]


def test_permission_errors_stop_the_run() -> None:
    items = pd.DataFrame([_row("a", "I love it")])
    client = _client()
    with Stubber(client) as stub:
        stub.add_client_error("batch_detect_sentiment", "AccessDeniedException", "no", 400)
        with pytest.raises(ClientError, match="AccessDenied"):
            _fill(items, _settings(), client)


@pytest.mark.parametrize("policy", ["reject", "map:neutral"])
def test_mixed_policy(policy: str) -> None:
    items = pd.DataFrame([_row("m", "Great food, awful service")])
    client = _client()
    with Stubber(client) as stub:
        stub.add_response(
            "batch_detect_sentiment",
            {"ResultList": [_result(0, "MIXED", Mixed=0.6, Positive=0.2, Negative=0.15, Neutral=0.05)],
             "ErrorList": []},
        )
        result = _fill(items, _settings(mixed_policy=policy), client)
    if policy == "reject":
        (reject,) = result.rejects.to_dict("records")
        assert reject["reason"] == "unmapped_label" and "MIXED" in reject["detail"]
        assert result.items.empty
    else:
        row = result.items.iloc[0]
        assert row["sentiment"] == "neutral" and row["comprehend_sentiment"] == "MIXED"
        assert row["sentiment_confidence"] == pytest.approx(0.6) and row["p_mixed"] == pytest.approx(0.6)
        assert row["p_positive"] == pytest.approx(0.2)


def test_min_confidence_per_class() -> None:
    settings = _settings(min_confidence={"negative": 0.0, "neutral": 0.7, "positive": 0.0})
    items = pd.DataFrame([_row("a", "it is a thing"), _row("b", "nice")])
    client = _client()
    with Stubber(client) as stub:
        stub.add_response(
            "batch_detect_sentiment",
            {"ResultList": [_result(0, "NEUTRAL", Neutral=0.55, Positive=0.4, Negative=0.03, Mixed=0.02),
                            _result(1, "POSITIVE", Positive=0.55, Neutral=0.4, Negative=0.03, Mixed=0.02)],
             "ErrorList": []},
        )
        result = _fill(items, settings, client)
    assert list(result.items["utterance_id"]) == ["src/b"]
    assert result.rejects["reason"].tolist() == ["low_confidence_sentiment"]


def test_multibyte_text_is_cut_to_5000_bytes_on_a_character_boundary() -> None:
    long_ja = "日本語のテキスト。" * 400  # 3,600 characters, 10,800 bytes
    items = pd.DataFrame([_row("ja", long_ja, language="ja-JP")])
    expected = long_ja[: 5000 // 3]  # 1,666 characters = 4,998 bytes; one more would be 5,001
    client = _client()
    with Stubber(client) as stub:
        stub.add_response(
            "batch_detect_sentiment",
            {"ResultList": [_result(0, "NEUTRAL")], "ErrorList": []},
            {"TextList": [expected], "LanguageCode": "ja"},
        )
        result = _fill(items, _settings(), client)
        stub.assert_no_pending_responses()
    assert len(expected.encode()) == 4998
    assert result.items.iloc[0]["sentiment"] == "neutral"


def test_unsupported_language_rejected_or_sent_to_the_offline_classifier(tmp_path: Path) -> None:
    items = pd.DataFrame(
        [_row("fa", "من خیلی خوشحالم", language="fa"), _row("none", None), _row("en", "so good")]
    )
    client = _client()
    with Stubber(client) as stub:
        stub.add_response(
            "batch_detect_sentiment",
            {"ResultList": [_result(0)], "ErrorList": []},
            {"TextList": ["so good"], "LanguageCode": "en"},
        )
        result = _fill(items, _settings(), client)
    reasons = result.rejects.set_index("input_ref")["reason"].to_dict()
    assert reasons == {"src/fa": "unsupported_language", "src/none": "missing_label"}
    assert "'fa'" in result.rejects.set_index("input_ref").loc["src/fa", "detail"]

    # A Persian classifier trained here (tiny, real) labels what Comprehend cannot.
    texts = ["من خیلی خوشحالم", "عالی است", "خیلی بد است", "از این متنفرم"] * 3
    labels = ["positive", "positive", "negative", "negative"] * 3
    model = trained.fit(texts, labels, TrainedClassifierSettings(min_train_items=4), languages=["fa"])
    uri = str(tmp_path / "fa.joblib")
    trained.save(model, uri)
    offline_settings = TextClassifierSettings(kind="trained")
    offline = functools.partial(
        text_classifier.fill_missing_sentiment, settings=offline_settings, cache=None, model_uri=uri
    )
    client = _client()
    with Stubber(client) as stub:
        stub.add_response("batch_detect_sentiment", {"ResultList": [_result(0)], "ErrorList": []})
        result = _fill(items, _settings(unsupported_language="text_classifier"), client, offline=offline)
    kept = result.items.set_index("utterance_id")
    assert list(result.items["utterance_id"]) == ["src/fa", "src/en"]  # input order kept
    assert kept.loc["src/fa", "sentiment"] == "positive"
    assert kept.loc["src/fa", "sentiment_origin"] == "text_classifier"
    assert kept.loc["src/en", "sentiment_origin"] == "aws_comprehend"
    assert result.rejects["input_ref"].tolist() == ["src/none"]


def test_rerun_with_cache_makes_zero_calls(tmp_path: Path) -> None:
    settings = _settings()
    items = pd.DataFrame([_row("a", "I love it"), _row("b", "I love it"), _row("c", "I hate it")])
    client = _client()
    cache = cp.make_cache(str(tmp_path), settings)
    with Stubber(client) as stub:
        stub.add_response(  # duplicates are sent once
            "batch_detect_sentiment",
            {"ResultList": [_result(0), _result(1, "NEGATIVE")], "ErrorList": []},
            {"TextList": ["I love it", "I hate it"], "LanguageCode": "en"},
        )
        first = _fill(items, settings, client, cache)
        stub.assert_no_pending_responses()

    def no_client() -> Any:
        raise AssertionError("a fully cached re-run must not even build a client")

    fresh_cache = LabelCache(str(tmp_path), "aws-comprehend", cp.cache_settings(settings))  # a new process
    again = _fill(items, settings, no_client, fresh_cache)
    assert fresh_cache.stats["hits"] == 2 and fresh_cache.stats["writes"] == 0
    pd.testing.assert_frame_equal(first.items, again.items)
    # The MIXED policy and thresholds are applied after the cache: changing them costs no calls either.
    strict = _settings(min_confidence={"negative": 0.0, "neutral": 0.0, "positive": 0.95})
    again = _fill(items, strict, no_client, LabelCache(str(tmp_path), "aws-comprehend", cp.cache_settings(strict)))
    assert set(again.rejects["reason"]) == {"low_confidence_sentiment"} and len(again.items) == 1


def test_cost_is_estimated_and_the_cap_stops_before_any_call() -> None:
    settings = _settings(max_cost_usd=0.005)
    texts = [f"short text {i}" for i in range(30)] + ["x" * 450]  # 30 x 3 units + 5 units
    docs = [cd.document(t, "en", settings) for t in texts]
    estimate = cd.estimate_cost(docs, settings)
    assert (estimate.documents, estimate.units) == (31, 95)
    assert estimate.usd == pytest.approx(0.0095)
    items = pd.DataFrame([_row(f"u{i}", t) for i, t in enumerate(texts)])
    client = _client()
    messages: list[str] = []
    with Stubber(client) as stub:  # no responses queued: any call would raise
        with pytest.raises(cp.CostCapExceeded, match="95 billing unit"):
            _fill(items, settings, client, log=lambda fmt, *a: messages.append(fmt % a))
        stub.assert_no_pending_responses()
    assert any("95 billing unit(s), about $0.0095" in m for m in messages)


def test_pipeline_estimates_the_run_and_labels_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.core.shards import read_frame, write_frame
    from tasks.label import steps as label_steps
    from tasks.preflight import check_spec_paths
    from tasks.spec import DatasetSpec

    spec = DatasetSpec.model_validate(
        {
            "name": "t",
            "output": str(tmp_path / "out"),
            "sources": [{"name": "src", "kind": "folder", "path": str(tmp_path / "corpus")}],
            "labelers": {"sentiment": "aws_comprehend", "transcripts": "none",
                         "aws_comprehend": {"max_cost_usd": 1.0, "rate_per_s": 1000}},
            "aws": {"region": "eu-west-1"},
        }
    )
    from tests.tasks.ingest.corpora.test_base import write_tone

    write_tone(tmp_path / "corpus" / "a.wav", 0.2)  # pre-flight checks the source's layout too
    check_spec_paths(spec)  # aws_comprehend is no longer refused
    shard = str(tmp_path / "shard.parquet")
    write_frame(shard, pd.DataFrame([_row("a", "I love it"), _row("b", "I hate it"), _row("c", "I love it")]))
    cost = label_steps.estimate_sentiment_cost(spec, [shard])
    assert cost == {"documents": 2, "units": 6, "usd": 0.0006, "cached": 0}

    client = _client()
    regions: list[str] = []

    def make_client(region: str) -> Any:
        regions.append(region)
        return client

    monkeypatch.setattr(cp, "make_client", make_client)
    with Stubber(client) as stub:
        stub.add_response(
            "batch_detect_sentiment",
            {"ResultList": [_result(0), _result(1, "NEGATIVE")], "ErrorList": []},
            {"TextList": ["I love it", "I hate it"], "LanguageCode": "en"},
        )
        result = label_steps.sentiment_shard(spec, shard)
        stub.assert_no_pending_responses()
    out = read_frame(result["items_uri"])
    assert out["sentiment"].tolist() == ["positive", "negative", "positive"]
    assert set(out["sentiment_origin"]) == {"aws_comprehend"} and regions == ["eu-west-1"]
    assert label_steps.estimate_sentiment_cost(spec, [shard])["cached"] == 2  # nothing left to pay for

    capped = spec.model_copy(deep=True)
    capped.labelers.aws_comprehend.max_cost_usd = 0.0001
    write_frame(shard, pd.DataFrame([_row("n", "something new")]))
    with pytest.raises(cp.CostCapExceeded):
        label_steps.estimate_sentiment_cost(capped, [shard])
