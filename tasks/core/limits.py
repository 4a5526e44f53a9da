"""Request rates and job concurrency for cloud calls, enforced across workers where it matters.

Two layers:
- a local limiter per process (thread-safe), always on, so one worker never bursts;
- across workers: with a Prefect server (PREFECT_API_URL) the flow creates global concurrency limits
  (`voicetone-<name>`, rate limits via slot decay) and every call also takes a slot from them, so N Dask
  workers together stay under the configured rate. Without a server there is one process, and the
  local limiter is the whole story.
Amazon Transcribe's concurrent-job quota counts jobs while they run; the shared truth for that is
AWS itself, so `ActiveJobSlots` bounds new starts by the jobs actually QUEUED or IN_PROGRESS.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)
PREFIX = "voicetone-"


class RateLimiter:
    """At most `rate_per_s` calls per second, spaced evenly (burst 1); thread-safe."""

    def __init__(
        self,
        rate_per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive (got {rate_per_s})")
        self.rate_per_s = rate_per_s
        self.interval = 1.0 / rate_per_s
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until the next call slot."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)

    acquire = wait


class GlobalRateLimiter:
    """The local limiter plus, when a Prefect server holds `voicetone-<name>`, a slot of that global limit."""

    def __init__(self, name: str, rate_per_s: float) -> None:
        self.name = name
        self.local = RateLimiter(rate_per_s)
        self.global_name = PREFIX + name if prefect_limit_exists(PREFIX + name) else None

    def wait(self) -> None:
        self.local.wait()
        if self.global_name:
            from prefect.concurrency.sync import rate_limit

            rate_limit(self.global_name, occupy=1, strict=True)

    acquire = wait


_SHARED: dict[tuple[Any, ...], Any] = {}
_SHARED_LOCK = threading.Lock()


def shared(kind: str, value: float, factory: Callable[[], Any]) -> Any:
    """One limiter per process per (kind, value, endpoint), shared by threads and shards."""
    with _SHARED_LOCK:
        key = (kind, value, os.environ.get("AWS_ENDPOINT_URL"), os.environ.get("PREFECT_API_URL"))
        if key not in _SHARED:
            _SHARED[key] = factory()
        return _SHARED[key]


def shared_rate_limiter(name: str, rate_per_s: float) -> GlobalRateLimiter:
    return shared(name, rate_per_s, lambda: GlobalRateLimiter(name, rate_per_s))


# ------------------------------------------------------------------ Prefect global limits


def prefect_server_configured() -> bool:
    """True when flows report to a Prefect server (env, profile or test harness), not the embedded one."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    try:
        from prefect.settings import PREFECT_API_URL

        return bool(PREFECT_API_URL.value())
    except Exception:
        return False


def prefect_limit_exists(name: str) -> bool:
    if not prefect_server_configured():
        return False
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(name)
        return True
    except Exception:  # ObjectNotFound, or no server reachable: fall back to the local limiter
        return False


def ensure_prefect_rate_limit(name: str, rate_per_s: float) -> bool:
    """Create or update the global rate limit `voicetone-<name>` on the configured Prefect server."""
    if not prefect_server_configured():
        return False
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    full = PREFIX + name
    limit = max(1, int(round(rate_per_s)))
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(full)
            client.update_global_concurrency_limit(
                full, GlobalConcurrencyLimitUpdate(limit=limit, slot_decay_per_second=float(rate_per_s), active=True)
            )
        except ObjectNotFound:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=full, limit=limit, slot_decay_per_second=float(rate_per_s),
                                             active=True)
            )
    LOG.info("global rate limit %s: %.3g/s", full, rate_per_s)
    return True


def ensure_cloud_limits(spec: Any) -> list[str]:
    """Create the global limits a spec's cloud labelers need (no-op without a Prefect server)."""
    made = []
    if spec.labelers.transcripts == "aws_transcribe":
        s = spec.labelers.aws_transcribe
        for name, rate in (("transcribe-start", s.start_rate_per_s), ("transcribe-get", s.get_rate_per_s)):
            if ensure_prefect_rate_limit(name, rate):
                made.append(PREFIX + name)
    if spec.labelers.sentiment == "aws_comprehend":
        if ensure_prefect_rate_limit("comprehend", spec.labelers.aws_comprehend.rate_per_s):
            made.append(PREFIX + "comprehend")
    return made


# ------------------------------------------------------------------ Transcribe job slots


class ActiveJobSlots:
    """At most `limit` jobs QUEUED/IN_PROGRESS, counted in this process AND on AWS (all workers' jobs).

    The local count guards this process between AWS checks; the AWS count (jobs whose names start
    with `voicetone-`, refreshed at most every `refresh_s`) makes the cap hold across workers.
    """

    def __init__(self, limit: int, client: Any | None = None, refresh_s: float = 5.0,
                 list_limiter: RateLimiter | None = None) -> None:
        self.limit = limit
        self.used = 0
        self.client = client
        self.refresh_s = refresh_s
        self._remote = 0
        self._checked = -1e9
        self._lock = threading.Lock()
        self._list_limiter = list_limiter

    def _active_on_aws(self) -> int:
        if self.client is None:
            return 0
        now = time.monotonic()
        if now - self._checked < self.refresh_s:
            return self._remote
        total = 0
        for status in ("QUEUED", "IN_PROGRESS"):
            token = None
            while True:
                if self._list_limiter:
                    self._list_limiter.wait()
                kwargs: dict[str, Any] = {"Status": status, "JobNameContains": PREFIX, "MaxResults": 100}
                if token:
                    kwargs["NextToken"] = token
                page = self.client.list_transcription_jobs(**kwargs)
                total += len(page.get("TranscriptionJobSummaries", []))
                token = page.get("NextToken")
                if not token:
                    break
        self._remote, self._checked = total, now
        return total

    def try_acquire(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            # Jobs on AWS include this process's own; take the larger view of what is running. A process
            # with nothing in flight may always start one job, so stale jobs of other runs can delay but
            # never deadlock it (the cap can then be exceeded by at most one job per worker).
            if self.used > 0 and max(self.used, self._active_on_aws()) >= self.limit:
                return False
            self.used += 1
            self._remote += 1  # until the next refresh, count our own start
            return True

    def release(self) -> None:
        with self._lock:
            self.used = max(0, self.used - 1)
            self._remote = max(0, self._remote - 1)
