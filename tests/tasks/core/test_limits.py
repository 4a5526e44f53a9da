"""Rate limits and job slots: local spacing, AWS-side job counts, Prefect global limits."""

from __future__ import annotations

import boto3
import pytest

from tasks.core import limits


def test_rate_limiter_spaces_calls_evenly():
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(round(s, 6))
        now[0] += s

    limiter = limits.RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert slept == [0.25, 0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match="positive"):
        limits.RateLimiter(0)


def test_active_job_slots_count_jobs_running_on_aws(moto_server, s3_bucket):
    client = boto3.client("transcribe", region_name="us-east-1")
    for i in range(2):
        client.start_transcription_job(
            TranscriptionJobName=f"voicetone-other-worker-{s3_bucket}-{i}", LanguageCode="en-US",
            Media={"MediaFileUri": f"s3://{s3_bucket}/x{i}.flac"}, OutputBucketName=s3_bucket,
        )
        # moto leaves a new job without a status until it is first read (AWS says QUEUED at once).
        client.get_transcription_job(TranscriptionJobName=f"voicetone-other-worker-{s3_bucket}-{i}")
    slots = limits.ActiveJobSlots(limit=3, client=client, refresh_s=0.0)
    assert slots.try_acquire()  # nothing of ours in flight: always allowed to start one
    ours = f"voicetone-this-worker-{s3_bucket}"
    client.start_transcription_job(TranscriptionJobName=ours, LanguageCode="en-US",
                                   Media={"MediaFileUri": f"s3://{s3_bucket}/y.flac"}, OutputBucketName=s3_bucket)
    client.get_transcription_job(TranscriptionJobName=ours)
    # Two jobs of another worker are QUEUED on AWS, plus ours: the cap of 3 is reached.
    assert slots._active_on_aws() >= 3
    assert not slots.try_acquire()
    slots.release()
    assert slots.used == 0


def test_prefect_global_rate_limit_is_created_and_used(prefect_harness):
    assert limits.prefect_server_configured()
    assert limits.ensure_prefect_rate_limit("test-comprehend", 5.0)
    assert limits.prefect_limit_exists("voicetone-test-comprehend")
    limiter = limits.GlobalRateLimiter("test-comprehend", 100.0)
    assert limiter.global_name == "voicetone-test-comprehend"
    for _ in range(3):
        limiter.wait()  # takes slots of the server's limit (strict: fails if it did not exist)
    assert limits.ensure_prefect_rate_limit("test-comprehend", 2.0)  # updating an existing limit works
