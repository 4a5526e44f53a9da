"""Amazon Transcribe labeler against a moto server over HTTP, FAILED jobs through botocore's Stubber.

moto's Transcribe advances a job only when it is read (QUEUED, IN_PROGRESS, COMPLETED on the third
GetTranscriptionJob) and never writes the transcript, so `FakeTranscribe` plays the service's part:
when moto reports a job COMPLETED it reads the job's staged layout (clip offsets in the packed
audio), lays out the words the test knows each clip says, and writes a Transcribe-format JSON at
the job's output key before our code reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pandas as pd
import pytest
import soundfile as sf
from botocore.stub import ANY, Stubber

from tasks.core import limits, storage
from tasks.core.audio import segment_key, sha256_uri
from tasks.core.label_cache import LabelCache
from tasks.label.transcripts import aws_transcribe as at
from tasks.label.transcripts import aws_transcribe_media as media
from tasks.label.transcripts import aws_transcribe_packs as packs
from tasks.label.transcripts.normalize import normalize_transcript, wer
from tasks.preflight import check_spec_paths
from tasks.spec import SpecError, parse_spec
from tasks.spec_labelers import AwsTranscribeSettings

pytestmark = pytest.mark.aws

TEXTS = {
    "a": "Hello there, this is the first clip.",
    "b": "The quick brown fox jumps over the lazy dog.",
    "c": "Please call Stella and ask her to bring these things.",
}
CONFIDENCE = {"a": 0.9, "b": 0.8, "c": 0.7}
FAST = {"poll_min_s": 0.01, "poll_max_s": 0.05, "start_rate_per_s": 1000.0, "get_rate_per_s": 1000.0}


class ProcessDied(Exception):
    """Raised from inside a client call to simulate the worker being killed mid-run."""


class FakeTranscribe:
    """Hooks a real boto3 Transcribe client (talking to moto) and writes outputs as the service would."""

    def __init__(self, client: Any, words_by_segment: dict[str, tuple[str, float]], die_after_gets: int | None = None):
        self.client = client
        self.words = words_by_segment
        self.die_after_gets = die_after_gets
        self.calls: list[str] = []
        self.started: list[dict[str, Any]] = []
        client.meta.events.register("provide-client-params.transcribe.*", self._record)
        client.meta.events.register("after-call.transcribe.GetTranscriptionJob", self._after_get)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append(model.name)
        if model.name == "StartTranscriptionJob":
            self.started.append(dict(params))

    def _after_get(self, parsed: dict[str, Any], **_: Any) -> None:
        job = parsed.get("TranscriptionJob") or {}
        if job.get("TranscriptionJobStatus") == "COMPLETED":
            self._write_output(job)
        gets = self.calls.count("GetTranscriptionJob")
        if self.die_after_gets is not None and gets >= self.die_after_gets:
            raise ProcessDied(f"killed after {gets} GetTranscriptionJob calls")

    def _write_output(self, job: dict[str, Any]) -> None:
        media = job["Media"]["MediaFileUri"]
        layout = json.loads(storage.read_text(media.rsplit(".", 1)[0] + ".layout.json"))
        items: list[dict[str, Any]] = []
        for clip in layout["clips"]:
            text, conf = self.words[clip["segment_key"]]
            words = text.split()
            step = (clip["end_s"] - clip["start_s"]) / len(words)
            for k, word in enumerate(words):
                start = clip["start_s"] + k * step
                items.append({"type": "pronunciation", "start_time": f"{start:.3f}",
                              "end_time": f"{start + step * 0.9:.3f}",
                              "alternatives": [{"content": word.strip(".,"), "confidence": f"{conf}"}]})  # fmt: skip
                if word[-1] in ".,":
                    items.append({"type": "punctuation", "alternatives": [{"content": word[-1], "confidence": "0.0"}]})
        transcript = " ".join(self.words[c["segment_key"]][0] for c in layout["clips"])
        body = {"jobName": job["TranscriptionJobName"], "status": "COMPLETED",
                "results": {"transcripts": [{"transcript": transcript}], "items": items}}  # fmt: skip
        path = urlparse(job["Transcript"]["TranscriptFileUri"]).path.lstrip("/")
        storage.write_bytes(f"s3://{path}", json.dumps(body).encode())


def _jobs(client: Any) -> set[str]:
    names: set[str] = set()
    token = None
    while True:
        kwargs = {"JobNameContains": "voicetone-", "MaxResults": 100, **({"NextToken": token} if token else {})}
        page = client.list_transcription_jobs(**kwargs)
        names.update(j["TranscriptionJobName"] for j in page["TranscriptionJobSummaries"])
        token = page.get("NextToken")
        if not token:
            return names


@pytest.fixture()
def clips(speech_wav: Callable[..., Path]) -> dict[str, dict[str, Any]]:
    """Rows of espeak-ng speech; clip 'c' is cropped out of a longer file by offset/duration."""
    rows = {}
    for name, text in TEXTS.items():
        path = speech_wav(text, name=f"{name}.wav")
        info = sf.info(path)
        offset, duration = (0.3, round(info.duration - 0.5, 3)) if name == "c" else (0.0, info.duration)
        sha = sha256_uri(str(path))
        rows[name] = {
            "utterance_id": f"test/{name}", "source": "test", "audio_uri": str(path), "offset_s": offset,
            "duration_s": duration, "audio_sha256": sha, "segment_key": segment_key(sha, offset, duration),
            "language": "en", "transcript_raw": None,
        }  # fmt: skip
    return rows


def _words(clips: dict[str, dict[str, Any]]) -> dict[str, tuple[str, float]]:
    return {row["segment_key"]: (TEXTS[name], CONFIDENCE[name]) for name, row in clips.items()}


def _settings(**kw: Any) -> AwsTranscribeSettings:
    return AwsTranscribeSettings(**{**FAST, **kw})


def _fresh_cache(root: str, settings: AwsTranscribeSettings) -> LabelCache:
    """The cache as a new process opens it: from disk, not this process's shared instance."""
    return LabelCache(root, at.LABELER, at.cache_settings(settings))


def _client() -> Any:
    return boto3.client("transcribe", region_name="us-east-1")


def test_packed_job_fills_transcripts_end_to_end(moto_server: str, s3_bucket: str, clips: dict, tmp_path: Path) -> None:
    staging = f"s3://{s3_bucket}/staging"
    human = {**clips["a"], "utterance_id": "test/human", "transcript_raw": "I am SO happy!"}
    items = pd.DataFrame([clips["a"], clips["b"], clips["c"], human])
    client = _client()
    fake = FakeTranscribe(client, _words(clips))
    before = _jobs(client)
    logged: list[str] = []
    progress: list[tuple[int, int]] = []
    settings = _settings()
    result = at.fill_missing_transcripts(
        items, settings, at.make_cache(str(tmp_path / "cache"), settings), lambda d, t: progress.append((d, t)),
        staging_uri=staging, client=client, log=lambda fmt, *a: logged.append(fmt % a),
    )  # fmt: skip
    assert result.rejects.empty, result.rejects.to_dict("records")
    assert len(_jobs(client) - before) == 1, "three short clips share one job"
    (start,) = fake.started
    assert start["OutputBucketName"] == s3_bucket and start["OutputKey"].startswith("staging/transcribe-output/")
    assert (start["MediaFormat"], start["MediaSampleRateHertz"], start["LanguageCode"]) == ("flac", 16000, "en-US")
    assert packs._JOB_NAME.match(start["TranscriptionJobName"]) and start["TranscriptionJobName"].endswith("-a1")
    by_id = result.items.set_index("utterance_id")
    for name in TEXTS:
        row = by_id.loc[f"test/{name}"]
        assert row.transcript == normalize_transcript(TEXTS[name]), name  # no word leaked across clips
        assert row.transcript_origin == "aws_transcribe"
        assert row.transcript_confidence == pytest.approx(CONFIDENCE[name])
    assert by_id.loc["test/human"].transcript == "I am so happy"
    assert by_id.loc["test/human"].transcript_origin == "human"
    assert progress[0] == (0, 3) and progress[-1] == (3, 3)
    assert any("billed min" in line and "$" in line for line in logged), logged

    media = start["Media"]["MediaFileUri"]
    layout = json.loads(storage.read_text(media.rsplit(".", 1)[0] + ".layout.json"))
    with storage.open_local(media) as local:
        audio, rate = sf.read(local)
    assert rate == 16000 and audio.ndim == 1 and len(audio) / 16000 == pytest.approx(layout["duration_s"])
    cropped = next(c for c in layout["clips"] if c["segment_key"] == clips["c"]["segment_key"])
    assert cropped["end_s"] - cropped["start_s"] == pytest.approx(clips["c"]["duration_s"], abs=1e-3)
    gaps = [b["start_s"] - a["end_s"] for a, b in zip(layout["clips"], layout["clips"][1:], strict=False)]
    assert gaps == pytest.approx([settings.silence_s] * 2)

    # A second run with the cache makes no Transcribe call at all.
    client2 = _client()
    fake2 = FakeTranscribe(client2, _words(clips))
    again = at.fill_missing_transcripts(items, settings, _fresh_cache(str(tmp_path / "cache"), settings),
                                        staging_uri=staging, client=client2)  # fmt: skip
    assert fake2.calls == [] and _jobs(client) - before == {start["TranscriptionJobName"]}
    pd.testing.assert_frame_equal(result.items, again.items)


def test_restart_mid_run_reattaches_without_duplicate_jobs(
    moto_server: str, s3_bucket: str, clips: dict, tmp_path: Path
) -> None:
    staging = f"s3://{s3_bucket}/staging"
    items = pd.DataFrame(list(clips.values()))
    settings = _settings(pack_target_s=4.0)  # each clip gets its own job
    cache_root = str(tmp_path / "cache")
    client = _client()
    before = _jobs(client)
    dying = FakeTranscribe(client, _words(clips), die_after_gets=4)  # 3 lookups + 1 poll, then killed
    with pytest.raises(ProcessDied):
        at.fill_missing_transcripts(items, settings, at.make_cache(cache_root, settings),
                                    staging_uri=staging, client=client)  # fmt: skip
    first_jobs = _jobs(client) - before
    assert len(dying.started) == 3 and len(first_jobs) == 3

    client2 = _client()
    resumed = FakeTranscribe(client2, _words(clips))
    result = at.fill_missing_transcripts(items, settings, _fresh_cache(cache_root, settings),
                                         staging_uri=staging, client=client2)  # fmt: skip
    assert resumed.started == [], "the restarted run must attach to its jobs, not start new ones"
    assert _jobs(client) - before == first_jobs
    assert sorted(result.items.transcript) == sorted(normalize_transcript(t) for t in TEXTS.values())


def test_concurrency_never_exceeds_the_job_cap(moto_server: str, s3_bucket: str, clips: dict) -> None:
    client = _client()
    running: set[str] = set()
    peak = [0]

    def track(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "StartTranscriptionJob":
            running.add(params["TranscriptionJobName"])
            peak[0] = max(peak[0], len(running))

    def done(parsed: dict[str, Any], **_: Any) -> None:
        job = parsed.get("TranscriptionJob") or {}
        if job.get("TranscriptionJobStatus") == "COMPLETED":
            running.discard(job["TranscriptionJobName"])

    FakeTranscribe(client, _words(clips))
    client.meta.events.register("provide-client-params.transcribe.StartTranscriptionJob", track)
    client.meta.events.register("after-call.transcribe.GetTranscriptionJob", done)
    limits._SHARED.clear()  # a fresh process-wide slot pool sized by this test's setting
    result = at.fill_missing_transcripts(pd.DataFrame(list(clips.values())),
                                         _settings(pack_target_s=4.0, max_concurrent_jobs=1),
                                         staging_uri=f"s3://{s3_bucket}/st", client=client)  # fmt: skip
    limits._SHARED.clear()
    assert len(result.items) == 3 and peak[0] == 1


def test_cost_cap_stops_before_any_job(moto_server: str, s3_bucket: str, clips: dict) -> None:
    client = _client()
    fake = FakeTranscribe(client, _words(clips))
    settings = _settings(max_cost_usd=0.001, pack_target_s=4.0)  # 3 jobs x 15 s minimum = $0.018
    with pytest.raises(at.TranscribeCostError, match=r"\$0\.02 .*over .*max_cost_usd \$0\.00; nothing was started"):
        at.fill_missing_transcripts(pd.DataFrame(list(clips.values())), settings,
                                    staging_uri=f"s3://{s3_bucket}/staging", client=client)  # fmt: skip
    assert fake.calls == []
    assert storage.list_files(f"s3://{s3_bucket}/staging") == []


def test_service_limits_and_language_are_checked_before_calling(
    moto_server: str, s3_bucket: str, clips: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    short = {**clips["a"], "utterance_id": "test/short", "duration_s": 0.3,
             "segment_key": segment_key(clips["a"]["audio_sha256"], 0.0, 0.3)}  # fmt: skip
    french = {**clips["b"], "utterance_id": "test/fr", "language": "fr"}
    missing = {**clips["b"], "utterance_id": "test/missing", "audio_uri": "/nonexistent/x.wav",
               "segment_key": "0" * 64 + ":0.000:2.000"}  # fmt: skip
    client = _client()
    fake = FakeTranscribe(client, _words(clips))
    result = at.fill_missing_transcripts(pd.DataFrame([short, french, missing]), _settings(),
                                         staging_uri=f"s3://{s3_bucket}/staging", client=client)  # fmt: skip
    assert result.items.empty and fake.calls == []
    reasons = dict(zip(result.rejects.input_ref, result.rejects.reason, strict=True))
    assert reasons == {"test/short": "unsupported_audio", "test/fr": "unsupported_language",
                       "test/missing": "missing_audio"}  # fmt: skip
    detail = result.rejects.set_index("input_ref").detail
    assert "0.30 s; Amazon Transcribe takes 0.5 s to 4 h" in detail["test/short"]
    assert "language_code 'en-US'" in detail["test/fr"]

    monkeypatch.setattr(media, "MAX_MEDIA_BYTES", 1000)  # a real 2 GB file is too big for a test
    big = at.fill_missing_transcripts(pd.DataFrame([clips["b"]]), _settings(),
                                      staging_uri=f"s3://{s3_bucket}/other", client=client)  # fmt: skip
    assert list(big.rejects.reason) == ["unsupported_audio"] and "over the 2 GB limit" in big.rejects.detail[0]
    assert fake.calls == []


def _stub_failed_attempts(client: Any, attempts: int) -> tuple[Stubber, list[str]]:
    """Stub: every attempt's name is unknown, starts, then reads FAILED."""
    names: list[str] = []
    client.meta.events.register(
        "provide-client-params.transcribe.StartTranscriptionJob",
        lambda params, **_: names.append(params["TranscriptionJobName"]),
    )
    stub = Stubber(client)
    for _ in range(attempts):
        stub.add_client_error("get_transcription_job", "BadRequestException",
                              "The requested job couldn't be found. Check the job name and try your request again.",
                              400, expected_params={"TranscriptionJobName": ANY})  # fmt: skip
        stub.add_response("start_transcription_job", {"TranscriptionJob": {"TranscriptionJobName": "x",
                          "TranscriptionJobStatus": "QUEUED"}},
                          {"TranscriptionJobName": ANY, "LanguageCode": "en-US", "MediaFormat": "flac",
                           "MediaSampleRateHertz": 16000, "Media": ANY, "OutputBucketName": ANY,
                           "OutputKey": ANY})  # fmt: skip
        stub.add_response("get_transcription_job", {"TranscriptionJob": {"TranscriptionJobName": "x",
                          "TranscriptionJobStatus": "FAILED",
                          "FailureReason": "The media format provided does not match the detected media format."}},
                          {"TranscriptionJobName": ANY})  # fmt: skip
    stub.activate()
    return stub, names


@pytest.mark.parametrize("on_failed", ["reject", "whisper"])
def test_failed_job_retries_under_a_new_name_then_rejects_or_falls_back(
    moto_server: str, s3_bucket: str, clips: dict, on_failed: str
) -> None:
    client = _client()
    stub, names = _stub_failed_attempts(client, attempts=2)
    settings = _settings(max_attempts=2, on_failed=on_failed)
    result = at.fill_missing_transcripts(pd.DataFrame([clips["b"]]), settings,
                                         staging_uri=f"s3://{s3_bucket}/staging", client=client)  # fmt: skip
    stub.assert_no_pending_responses()
    assert len(names) == 2 and names[0].endswith("-a1") and names[1] == names[0][:-1] + "2"
    if on_failed == "reject":
        assert result.items.empty
        (reject,) = result.rejects.itertuples()
        assert (reject.reason, reject.input_ref, reject.stage) == ("labeler_failed", "test/b", "transcripts")
        assert "2 attempt(s) FAILED; last: The media format provided" in reject.detail
    else:
        assert result.rejects.empty
        row = result.items.iloc[0]
        assert row.transcript_origin == "whisper"
        assert wer(TEXTS["b"], row.transcript_raw) < 0.35


def test_spec_needs_a_staging_uri(tmp_path) -> None:
    from tests.tasks.ingest.corpora.test_base import write_tone

    write_tone(tmp_path / "corpus" / "a.wav", 0.2)  # pre-flight checks the source's layout too
    base = {"name": "d", "output": str(tmp_path / "o"),
            "sources": [{"name": "s", "kind": "folder", "path": str(tmp_path / "corpus")}],
            "labelers": {"transcripts": "aws_transcribe"}}  # fmt: skip
    with pytest.raises(SpecError, match=r"aws\.staging_uri: labelers\.transcripts 'aws_transcribe' needs an s3://"):
        check_spec_paths(parse_spec(base))
    check_spec_paths(parse_spec({**base, "aws": {"staging_uri": "s3://bucket/stage"}}))
    assert parse_spec(base).labelers.aws_transcribe.max_concurrent_jobs == 100


def test_pipeline_transcripts_shard_runs_transcribe_and_the_quality_sample(
    moto_server: str, s3_bucket: str, clips: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.core.shards import read_frame, write_frame
    from tasks.label import steps as label_steps

    human = {**clips["c"], "utterance_id": "test/human", "transcript_raw": TEXTS["c"].upper()}
    shard = pd.DataFrame([clips["a"], clips["b"], human])
    shard_uri = str(tmp_path / "shard.parquet")
    write_frame(shard_uri, shard)
    spec = parse_spec({
        "name": "d", "output": str(tmp_path / "out"), "sources": [{"name": "test", "kind": "folder", "path": "/"}],
        "labelers": {"transcripts": "aws_transcribe", "quality_sample_per_source": 5,
                     "aws_transcribe": {k: v for k, v in FAST.items()}},
        "aws": {"staging_uri": f"s3://{s3_bucket}/stage", "region": "us-east-1"},
    })  # fmt: skip
    before = _jobs(_client())
    # The pipeline builds its own client: hand it one whose completed jobs get their output written.
    monkeypatch.setattr(at, "make_client", lambda region: FakeTranscribe(_client(), _words(clips)).client)
    out = label_steps.transcripts_shard(spec, shard_uri)
    items = read_frame(out["items_uri"]).set_index("utterance_id")
    assert len(_jobs(_client()) - before) == 2  # the unlabelled pack, then the held-out sample
    assert items.loc["test/a"].transcript_origin == "aws_transcribe"
    assert items.loc["test/b"].transcript == normalize_transcript(TEXTS["b"])
    assert items.loc["test/human"].transcript_origin == "human"
    assert items.loc["test/human"].asr_hypothesis == normalize_transcript(TEXTS["c"])
    assert items.loc["test/human"].asr_hypothesis_origin == "aws_transcribe"
    from tasks.label.transcripts.quality import transcript_quality

    assert transcript_quality(items.reset_index())["overall"]["wer"] == 0.0


def test_cache_keys_are_pinned() -> None:
    """Keys as first written (``<segment key>|<language code>``; no segment key: never cached)."""
    seg = "ab" * 32 + ":0.000:2.000"
    items = pd.DataFrame([
        {"utterance_id": "s/1", "language": "en", "segment_key": seg, "audio_uri": "/x.wav", "offset_s": 0.0,
         "duration_s": 2.0},
        {"utterance_id": "s/2", "language": "en", "segment_key": None, "audio_uri": "/y.wav", "offset_s": 0.0,
         "duration_s": 2.0},
    ])  # fmt: skip
    plan = at._plan(items, AwsTranscribeSettings(), None, "s3://b/p")
    assert sorted(plan.keys.values()) == [f"{seg}|en-US", "uncached:s/2|en-US"]
