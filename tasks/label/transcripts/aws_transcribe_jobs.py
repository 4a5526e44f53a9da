"""Amazon Transcribe jobs: attach to or start each pack's job, poll within the rate and job limits, collect the output.

Why attach-or-start, attempt names and process-wide limits: see `tasks.label.transcripts.aws_transcribe`.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.core import limits
from tasks.label.transcripts.aws_transcribe_media import split_transcript
from tasks.label.transcripts.aws_transcribe_packs import MEDIA_FORMAT, SAMPLE_RATE, Pack, job_name
from tasks.spec_labelers import AwsTranscribeSettings

Log = Callable[..., None]


# RateLimiter, the shared-per-process registry and the job slots live in tasks/core/limits.py, which also
# takes slots of Prefect global limits when a server is configured (so Dask workers share one rate).


def make_client(region: str | None) -> Any:
    """A Transcribe client from the standard boto3 chain (AWS_ENDPOINT_URL works), adaptive retries."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "adaptive", "max_attempts": 10})
    return boto3.session.Session().client("transcribe", region_name=region, config=config)


@dataclass
class Outcome:
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure: str | None = None  # reason text when every attempt FAILED


def _error_code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def _is_not_found(err: Exception) -> bool:
    code = _error_code(err)
    message = str(getattr(err, "response", {}).get("Error", {}).get("Message", "")).lower()
    return code == "NotFoundException" or (
        code == "BadRequestException" and ("couldn't be found" in message or "not found" in message)
    )


class JobRunner:
    """Attach-or-start, poll and collect the jobs of one call."""

    def __init__(self, client: Any, settings: AwsTranscribeSettings, staging_uri: str, log: Log) -> None:
        from tasks.core import storage
        self.client = client
        self.settings = settings
        self.bucket, prefix = storage.split_s3(staging_uri.rstrip("/"))
        self.output_prefix = "/".join(p for p in (prefix, settings.output_prefix.strip("/")) if p)
        self.log = log
        self.start_limit = limits.shared_rate_limiter("transcribe-start", settings.start_rate_per_s)
        self.get_limit = limits.shared_rate_limiter("transcribe-get", settings.get_rate_per_s)
        self.slots: limits.ActiveJobSlots = limits.shared(
            "transcribe-slots", settings.max_concurrent_jobs,
            lambda: limits.ActiveJobSlots(settings.max_concurrent_jobs, client, list_limiter=self.get_limit.local),
        )
        self.started: list[str] = []
        self.attached: list[str] = []

    def output_key(self, name: str) -> str:
        return f"{self.output_prefix}/{name}.json" if self.output_prefix else f"{name}.json"

    def _get(self, name: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        self.get_limit.acquire()
        try:
            return self.client.get_transcription_job(TranscriptionJobName=name)["TranscriptionJob"]
        except ClientError as err:
            if _is_not_found(err):
                return None
            raise

    def _start(self, name: str, pack: Pack, layout: Mapping[str, Any]) -> dict[str, Any] | None:
        """Start the job; None when it already exists (a ConflictException: attach to it)."""
        from botocore.exceptions import ClientError

        self.start_limit.acquire()
        try:
            self.client.start_transcription_job(
                TranscriptionJobName=name,
                LanguageCode=pack.language_code,
                MediaFormat=MEDIA_FORMAT,
                MediaSampleRateHertz=SAMPLE_RATE,
                Media={"MediaFileUri": layout["media_uri"]},
                OutputBucketName=self.bucket,
                OutputKey=self.output_key(name),
            )
        except ClientError as err:
            if _error_code(err) == "ConflictException":
                return None
            if _error_code(err) == "BadRequestException":  # this pack's request, not the service: fail it
                message = err.response.get("Error", {}).get("Message", "")
                return {"TranscriptionJobStatus": "FAILED", "FailureReason": f"start refused: {message}"}
            raise
        self.started.append(name)
        return {"TranscriptionJobName": name, "TranscriptionJobStatus": "QUEUED"}

    def attach_or_start(self, pack: Pack, layout: Mapping[str, Any], first: int, reason: str) -> tuple[str, Any]:
        """('done', name) | ('running', (name, attempt)) | ('failed', reason), trying attempts in order."""
        for attempt in range(first, self.settings.max_attempts + 1):
            name = job_name(pack.key, attempt)
            job = self._get(name)
            if job is None:
                job = self._start(name, pack, layout)
                if job is None:
                    job = self._get(name) or {}
            else:
                self.attached.append(name)
            status = job.get("TranscriptionJobStatus")
            if status == "COMPLETED":
                return "done", name
            if status == "FAILED":
                reason = str(job.get("FailureReason") or "no reason given")
                self.log("Amazon Transcribe job %s FAILED: %s", name, reason)
                continue
            return "running", (name, attempt)
        return "failed", f"{self.settings.max_attempts} attempt(s) FAILED; last: {reason}"

    def read_output(self, name: str) -> dict[str, Any]:
        from tasks.core import storage
        uri = f"s3://{self.bucket}/{self.output_key(name)}"
        for wait in (0.0, 1.0, 2.0, 4.0):
            time.sleep(wait)
            try:
                return json.loads(storage.read_bytes(uri))
            except FileNotFoundError:
                continue
        raise FileNotFoundError(f"Amazon Transcribe job {name} is COMPLETED but {uri} does not exist")

    def run(self, work: list[tuple[Pack, dict[str, Any]]], on_done: Callable[[Pack, Outcome], None]) -> None:
        """Drive every pack to COMPLETED or final failure, never above the slot limit."""
        pending: deque[tuple[Pack, dict[str, Any], int, str]] = deque((p, lay, 1, "") for p, lay in work)
        inflight: dict[str, tuple[Pack, dict[str, Any], int]] = {}
        interval = self.settings.poll_min_s
        try:
            while pending or inflight:
                while pending and self.slots.try_acquire():
                    pack, layout, first, reason = pending.popleft()
                    try:
                        state, value = self.attach_or_start(pack, layout, first, reason)
                    except BaseException:
                        self.slots.release()
                        raise
                    if state == "running":
                        inflight[value[0]] = (pack, layout, value[1])
                        continue
                    self.slots.release()
                    on_done(pack, self._finish(state, value, layout))
                if not inflight and not pending:
                    break
                time.sleep(interval)
                progressed = False
                for name, (pack, layout, attempt) in list(inflight.items()):
                    job = self._get(name) or {"TranscriptionJobStatus": "FAILED", "FailureReason": "job vanished"}
                    status = job.get("TranscriptionJobStatus")
                    if status not in ("COMPLETED", "FAILED"):
                        continue
                    del inflight[name]
                    self.slots.release()
                    progressed = True
                    if status == "COMPLETED":
                        on_done(pack, self._finish("done", name, layout))
                    else:
                        reason = str(job.get("FailureReason") or "no reason given")
                        self.log("Amazon Transcribe job %s FAILED: %s", name, reason)
                        pending.appendleft((pack, layout, attempt + 1, reason))
                interval = self.settings.poll_min_s if progressed else min(interval * 2, self.settings.poll_max_s)
        finally:
            for _ in inflight:
                self.slots.release()

    def _finish(self, state: str, value: Any, layout: Mapping[str, Any]) -> Outcome:
        if state == "failed":
            return Outcome(failure=str(value))
        labels = split_transcript(self.read_output(value), list(layout["clips"]))
        for label in labels.values():
            label["job"] = value
        return Outcome(labels=labels)
