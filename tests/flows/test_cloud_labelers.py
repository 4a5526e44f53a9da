"""Both cloud labelers in a real flow run: Amazon Transcribe against a moto server over HTTP (the test
plays Transcribe's part by writing the transcript JSON moto never writes) and Amazon Comprehend, whose
BatchDetectSentiment moto lacks, answered at botocore's before-call hook after botocore has validated
each request against the real API model (what Stubber does). A second build makes no paid call."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from flows.build_dataset import build_dataset
from manifests.io import read_release
from manifests.schema import UTTERANCES
from manifests.validate import validate_release
from tasks.core import storage
from tasks.core.audio import probe_and_hash, segment_key
from tasks.label.sentiment import comprehend
from tasks.label.transcripts import aws_transcribe
from tasks.spec import parse_spec
from tests.flows.buildutil import seed_language_cache

DEMO = Path(__file__).resolve().parents[2] / "flows" / "demo"
FAST = {"poll_min_s": 0.02, "poll_max_s": 0.1, "start_rate_per_s": 500.0, "get_rate_per_s": 500.0}


def _texts_by_segment() -> dict[str, str]:
    """What each unlabelled demo recording says (from the script that made it), by segment key."""
    out = {}
    with open(DEMO / "intended_labels.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            path = DEMO / "sources" / row["source"] / row["file_name"]
            if row["source"] == "field_recordings" and row["expected"] == "accept":
                info, sha = probe_and_hash(str(path))
                out[segment_key(sha, 0.0, info.duration_s)] = row["text"]
    return out


class TranscribeService:
    """Writes each COMPLETED job's Transcribe-format JSON (moto does not), from the staged pack layout."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts
        self.started: list[str] = []

    def attach(self, client: Any) -> Any:
        client.meta.events.register("provide-client-params.transcribe.StartTranscriptionJob", self._start)
        client.meta.events.register("after-call.transcribe.GetTranscriptionJob", self._after_get)
        return client

    def _start(self, params: dict[str, Any], **_: Any) -> None:
        self.started.append(params["TranscriptionJobName"])

    def _after_get(self, parsed: dict[str, Any], **_: Any) -> None:
        job = parsed.get("TranscriptionJob") or {}
        if job.get("TranscriptionJobStatus") != "COMPLETED":
            return
        layout = json.loads(storage.read_text(job["Media"]["MediaFileUri"].rsplit(".", 1)[0] + ".layout.json"))
        items = []
        for clip in layout["clips"]:
            words = self.texts[clip["segment_key"]].split()
            step = (clip["end_s"] - clip["start_s"]) / len(words)
            for k, word in enumerate(words):
                start = clip["start_s"] + k * step
                items.append({"type": "pronunciation", "start_time": f"{start:.3f}",
                              "end_time": f"{start + 0.9 * step:.3f}",
                              "alternatives": [{"content": word.strip(".,!?"), "confidence": "0.97"}]})
        body = {"jobName": job["TranscriptionJobName"], "status": "COMPLETED",
                "results": {"transcripts": [{"transcript": " ".join(self.texts[c["segment_key"]]
                                                                     for c in layout["clips"])}], "items": items}}
        key = urlparse(job["Transcript"]["TranscriptFileUri"]).path.lstrip("/")
        storage.write_bytes(f"s3://{key}", json.dumps(body).encode())


class ComprehendService:
    """Answers validated BatchDetectSentiment requests (scores from VADER, so they follow the words)."""

    def __init__(self) -> None:
        self.calls = 0
        self.vader = SentimentIntensityAnalyzer()

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call.comprehend.BatchDetectSentiment", self._answer)
        return client

    def _answer(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        self.calls += 1
        results = []
        for i, text in enumerate(json.loads(params["body"])["TextList"]):  # the serialised, validated request
            s = self.vader.polarity_scores(text)
            label = "POSITIVE" if s["compound"] >= 0.05 else "NEGATIVE" if s["compound"] <= -0.05 else "NEUTRAL"
            scores = {"Positive": s["pos"], "Negative": s["neg"], "Neutral": s["neu"], "Mixed": 0.0}
            top = {"POSITIVE": "Positive", "NEGATIVE": "Negative", "NEUTRAL": "Neutral"}[label]
            scores[top] = max(scores[top], 0.6)
            results.append({"Index": i, "Sentiment": label, "SentimentScore": scores})
        return AWSResponse("https://comprehend.test", 200, {}, None), {"ResultList": results, "ErrorList": []}


@pytest.fixture()
def cloud(monkeypatch, moto_server):
    transcribe, comprehend_service = TranscribeService(_texts_by_segment()), ComprehendService()
    monkeypatch.setattr(aws_transcribe, "make_client",
                        lambda region: transcribe.attach(boto3.client("transcribe", region_name=region)))
    real_comprehend_client = comprehend.make_client
    monkeypatch.setattr(comprehend, "make_client", lambda region: comprehend_service.attach(real_comprehend_client(region)))
    return transcribe, comprehend_service


def test_transcribe_and_comprehend_fill_labels_in_a_flow_run(prefect_harness, cloud, s3_bucket, tmp_path,
                                                             demo_release):
    transcribe, comprehend_service = cloud
    seed_language_cache(demo_release[0].output, tmp_path / "out")  # these are demo clips; not about language ids
    spec = parse_spec({
        "name": "cloud-labels",
        "output": str(tmp_path / "out"),
        "sources": [{"name": "field", "kind": "folder", "path": str(DEMO / "sources" / "field_recordings")},
                    {"name": "calls", "kind": "folder", "path": str(DEMO / "sources" / "support_calls")}],
        "labelers": {"transcripts": "aws_transcribe", "sentiment": "aws_comprehend",
                     "aws_transcribe": {**FAST, "max_cost_usd": 5.0}, "quality_sample_per_source": 0},
        "aws": {"region": "us-east-1", "staging_uri": f"s3://{s3_bucket}/staging"},
        "augment": {"noise_paths": [str(DEMO / "noise")], "rir_paths": [str(DEMO / "rirs")]},
    }, origin="cloud test")

    build_dataset(spec)
    assert validate_release(spec.output).ok
    utt = read_release(spec.output)[UTTERANCES]
    field = utt[utt["source"] == "field"]
    assert len(field) == 8 and (field["transcript_origin"] == "aws_transcribe").all()
    assert (field["sentiment_origin"] == "aws_comprehend").all()
    assert field["transcript_confidence"].round(2).eq(0.97).all()
    calls = utt[utt["source"] == "calls"]
    assert (calls["transcript_origin"] == "human").all() and (calls["sentiment_origin"] == "human").all()
    jobs, sentiment_calls = len(transcribe.started), comprehend_service.calls
    assert jobs >= 1 and sentiment_calls == 1  # 8 short clips packed; 8 documents in one batch

    build_dataset(spec)  # a re-run: everything from the label cache
    assert len(transcribe.started) == jobs and comprehend_service.calls == sentiment_calls


def test_run_wide_transcribe_cost_cap_stops_before_any_job(prefect_harness, cloud, s3_bucket, tmp_path,
                                                           demo_release):
    """The cap applies to the whole run: with 1-clip shards each shard is under it, the run is not."""
    transcribe, _ = cloud
    seed_language_cache(demo_release[0].output, tmp_path / "out")
    spec = parse_spec({
        "name": "cloud-cap",
        "output": str(tmp_path / "out"),
        "sources": [{"name": "field", "kind": "folder", "path": str(DEMO / "sources" / "field_recordings")}],
        "labelers": {"transcripts": "aws_transcribe", "sentiment": "none",
                     "aws_transcribe": {**FAST, "pack_target_s": 20, "max_cost_usd": 0.02},
                     "quality_sample_per_source": 0},
        "aws": {"region": "us-east-1", "staging_uri": f"s3://{s3_bucket}/cap-staging"},
        "run": {"shard_size": 1},
    }, origin="cost cap test")
    with pytest.raises(Exception, match=r"for this run would cost about .* over labelers.aws_transcribe.max_cost_usd"):
        build_dataset(spec)
    assert transcribe.started == []
    assert storage.list_files(f"s3://{s3_bucket}/cap-staging") == []
