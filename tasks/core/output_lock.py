"""One build per output at a time: an output-level lock file, local or on S3, with a stale-lock rule.

Two builds of one spec into one output would each label everything (a paid labeller bills twice)
and race on LATEST and pruning. The build flow holds `<output>/build.lock` from start to publish;
a second build waits for it (at most `run.lock_wait_s`), then finds the first build's labels in the
cache, or stops with a message naming the holder.

How the lock is taken, so that exactly one of several builds wins:
- local: `open(O_CREAT | O_EXCL)`, which fails if the file exists (atomic on local file systems;
  NFS v3 and older do not promise it);
- S3: `PutObject` with `If-None-Match: *` (S3 conditional writes, also in moto 5.2), which fails
  with 412 PreconditionFailed if the key exists. Heartbeats rewrite it with `If-Match: <ETag>` and the
  holder deletes it with `If-Match`, so a build never overwrites or removes a lock it no longer owns.
  Stores that refuse these headers (an older S3-compatible server) fall back to a best-effort
  check-then-put, logged at WARNING.

The lock body is JSON: a random token, pid, host, spec name, start and heartbeat times (UTC epoch).
The holder rewrites the heartbeat every `heartbeat_s` seconds from a daemon thread.

Stale-lock rule (a lock left by a build that died): a lock is stale, and is taken over, when
- its heartbeat is older than `run.lock_stale_s` (default 300 s; heartbeats come every 30 s), or
- it names this host and its pid is not running (a killed build on the same machine: at once; also
  when the pid is this process's own but the lock is not one it holds: a restarted container), or
- it cannot be parsed and the file is older than `run.lock_stale_s` (killed while writing it).
Clocks of the machines sharing an output must agree within a fraction of `lock_stale_s`.
A takeover removes only the exact stale lock (local: rename it aside and check its token; S3:
`DeleteObject` with `If-Match`), so two waiters never both win.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from manifests import uri as fs

logger = logging.getLogger(__name__)

LOCK_FILE = "build.lock"
DEFAULT_WAIT_S = 1800.0
DEFAULT_STALE_S = 300.0
HEARTBEAT_S = 30.0
POLL_S = 2.0

Log = Callable[..., None]


class OutputLocked(RuntimeError):
    """Another build holds the output's lock and did not let go within `run.lock_wait_s`."""


@dataclass(frozen=True)
class Holder:
    """What a lock file says about the build holding it (None fields: an unreadable lock)."""

    token: str | None
    pid: int | None
    host: str | None
    spec: str | None
    started_at: float | None
    heartbeat_at: float | None
    age_s: float  # since the heartbeat (or the file's mtime when unreadable)

    def describe(self) -> str:
        if self.token is None:
            return f"an unreadable lock file (written {self.age_s:.0f} s ago)"
        started = datetime.fromtimestamp(self.started_at or 0, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (f"build of spec {self.spec!r}, pid {self.pid} on host {self.host}, started {started}, "
                f"last heartbeat {self.age_s:.0f} s ago")


def lock_uri(output: str) -> str:
    return fs.join(output, LOCK_FILE)


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


_LIVE_TOKENS: set[str] = set()  # locks this process holds now (several outputs, or threads)
_HELD: dict[str, OutputLock] = {}  # output -> the lock this process holds on it


def is_stale(holder: Holder, stale_s: float, host: str | None = None) -> bool:
    """The stale-lock rule of the module docstring.

    A lock naming this host and *our own* pid but a token this process does not hold is stale too: a
    container restarted under the same hostname often gets the same pid as the build that died.
    """
    if holder.age_s > stale_s:
        return True
    if holder.token is None or holder.pid is None or holder.host != (host or socket.gethostname()):
        return False
    if holder.pid == os.getpid():
        return holder.token not in _LIVE_TOKENS
    return not _pid_running(holder.pid)


def _parse(data: bytes, mtime: float, now: float) -> Holder:
    try:
        body = json.loads(data)
        return Holder(str(body["token"]), int(body["pid"]), str(body["host"]), body.get("spec"),
                      float(body["started_at"]), float(body["heartbeat_at"]), now - float(body["heartbeat_at"]))
    except (ValueError, KeyError, TypeError):
        return Holder(None, None, None, None, None, None, now - mtime)


class OutputLock:
    """The lock of one output; `acquire` then `release` (or use `hold`)."""

    def __init__(self, output: str, spec_name: str = "", wait_s: float = DEFAULT_WAIT_S,
                 stale_s: float = DEFAULT_STALE_S, heartbeat_s: float = HEARTBEAT_S, poll_s: float = POLL_S,
                 log: Log | None = None, warn: Log | None = None) -> None:
        self.output, self.uri = output, lock_uri(output)
        self.spec_name, self.wait_s, self.stale_s = spec_name, wait_s, stale_s
        self.heartbeat_s, self.poll_s = heartbeat_s, poll_s
        self.log, self.warn = log or logger.info, warn or logger.warning
        self.token = uuid.uuid4().hex
        self.started_at = time.time()
        self.held = False
        self.lost = False  # the heartbeat found another build's lock in our place
        self._etag: str | None = None  # S3: the version we wrote last
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._io = threading.Lock()

    # ------------------------------------------------------------------ public

    def acquire(self) -> None:
        """Take the lock, waiting up to `wait_s` for a live holder; take over a stale one.

        Raises `OutputLocked` naming the holder when the wait runs out.
        """
        deadline = time.monotonic() + self.wait_s
        said = False
        _LIVE_TOKENS.add(self.token)  # before the file exists: another thread here must not judge it stale
        try:
            self._wait_and_create(deadline, said)
        except BaseException:
            _LIVE_TOKENS.discard(self.token)
            raise
        self.held = True
        _HELD[self.output] = self
        self._thread = threading.Thread(target=self._beat, name="output-lock-heartbeat", daemon=True)
        self._thread.start()
        self.log("output lock %s taken (pid %d on %s)", self.uri, os.getpid(), socket.gethostname())

    def _wait_and_create(self, deadline: float, said: bool) -> None:
        while True:
            if self._create():
                return
            holder = self._read()
            if holder is None:  # released between our attempt and the read: try again at once
                continue
            if is_stale(holder, self.stale_s):
                self.warn("output lock %s: taking over a stale lock (%s)", self.uri, holder.describe())
                self._remove_stale(holder)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise OutputLocked(
                    f"another build is writing to {self.output}: {holder.describe()}. Waited "
                    f"{self.wait_s:.0f} s (run.lock_wait_s). Run again when it has finished; if no build is "
                    f"running, the lock is stale after {self.stale_s:.0f} s without heartbeat "
                    f"(run.lock_stale_s), or remove {self.uri}.")
            if not said:
                self.log("output lock %s is held (%s); waiting up to %.0f s", self.uri, holder.describe(), left)
                said = True
            time.sleep(min(self.poll_s, max(left, 0.01)))

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.held:
            with self._io:
                self._delete_own()
            self.held = False
            _LIVE_TOKENS.discard(self.token)
            if _HELD.get(self.output) is self:
                del _HELD[self.output]

    def verify(self) -> None:
        """Raise `GuardError("output_lock_lost")` if the lock file is no longer ours (read now)."""
        with self._io:
            current = self._read()
            if current is None or current.token != self.token:
                self._lose(current)
        if self.lost:
            from tasks.core.guards import GuardError

            raise GuardError("output_lock_lost", f"the lock {self.uri} was taken over by another build while this "
                             "one ran (no heartbeat for run.lock_stale_s: was the process suspended?); not moving "
                             "LATEST. Run the build again.")

    # ------------------------------------------------------------------ the lock body

    def _body(self) -> bytes:
        return json.dumps({"token": self.token, "pid": os.getpid(), "host": socket.gethostname(),
                           "spec": self.spec_name, "started_at": self.started_at,
                           "heartbeat_at": time.time()}, sort_keys=True).encode()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with self._io:
                try:
                    self._heartbeat()
                except Exception as err:  # a missed beat is not fatal; the lock just ages
                    self.warn("output lock %s: heartbeat failed (%s: %s)", self.uri, type(err).__name__, err)

    # ------------------------------------------------------------------ local and S3

    def _create(self) -> bool:
        return self._create_s3() if fs.is_s3(self.uri) else self._create_local()

    def _read(self) -> Holder | None:
        now = time.time()
        if fs.is_s3(self.uri):
            got = self._get_s3()
            return None if got is None else _parse(got[0], got[2], now)
        try:
            with open(self.uri, "rb") as fh:
                data, mtime = fh.read(), os.fstat(fh.fileno()).st_mtime
        except FileNotFoundError:
            return None
        return _parse(data, mtime, now)

    def _create_local(self) -> bool:
        os.makedirs(self.output, exist_ok=True)
        try:
            fd = os.open(self.uri, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(self._body())
            fh.flush()
            os.fsync(fh.fileno())
        return True

    def _remove_stale(self, holder: Holder) -> None:
        if fs.is_s3(self.uri):
            got = self._get_s3()
            if got is not None and _parse(got[0], got[2], time.time()).token == holder.token:
                self._delete_s3(got[1])
            return
        aside = f"{self.uri}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.uri, aside)  # atomic: of several waiters, one moves it
        except FileNotFoundError:
            return
        with open(aside, "rb") as fh:
            moved = _parse(fh.read(), os.fstat(fh.fileno()).st_mtime, time.time())
        if moved.token != holder.token:  # another waiter's fresh lock: put it back (unless one is there)
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.uri)
        os.remove(aside)

    def _heartbeat(self) -> None:
        if fs.is_s3(self.uri):
            self._heartbeat_s3()
            return
        current = self._read()
        if current is None or current.token != self.token:
            self._lose(current)
            return
        fs.write_bytes(self.uri, self._body())  # temp file + rename: never half a lock

    def _delete_own(self) -> None:
        if fs.is_s3(self.uri):
            if self._etag is not None:
                self._delete_s3(self._etag)
            return
        current = self._read()
        if current is not None and current.token == self.token:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.uri)

    def _lose(self, current: Holder | None) -> None:
        if not self.lost:
            self.lost = True
            self.warn("output lock %s is no longer ours (now: %s); another build may write to this output",
                      self.uri, current.describe() if current else "no lock")

    # S3 -----------------------------------------------------------------

    def _get_s3(self) -> tuple[bytes, str, float] | None:
        bucket, key = fs.split_s3(self.uri)
        try:
            resp = fs.s3_client().get_object(Bucket=bucket, Key=key)
        except Exception as err:
            if _code(err) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return resp["Body"].read(), resp["ETag"], resp["LastModified"].timestamp()

    def _create_s3(self) -> bool:
        bucket, key = fs.split_s3(self.uri)
        body = self._body()
        try:
            self._etag = fs.s3_client().put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")["ETag"]
            return True
        except Exception as err:
            code = _code(err)
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            if code not in _UNSUPPORTED:
                raise
        self.warn("output lock %s: this S3 store refuses conditional writes; using a best-effort lock", self.uri)
        if self._get_s3() is not None:
            return False
        self._etag = fs.s3_client().put_object(Bucket=bucket, Key=key, Body=body)["ETag"]
        time.sleep(min(1.0, self.poll_s))
        got = self._get_s3()  # last writer wins: keep the lock only if ours is what stayed
        return got is not None and _parse(got[0], got[2], time.time()).token == self.token

    def _heartbeat_s3(self) -> None:
        bucket, key = fs.split_s3(self.uri)
        try:
            self._etag = fs.s3_client().put_object(Bucket=bucket, Key=key, Body=self._body(),
                                                   IfMatch=self._etag)["ETag"]
        except Exception as err:
            if _code(err) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                got = self._get_s3()
                self._lose(None if got is None else _parse(got[0], got[2], time.time()))
                return
            raise

    def _delete_s3(self, etag: str) -> None:
        bucket, key = fs.split_s3(self.uri)
        try:
            fs.s3_client().delete_object(Bucket=bucket, Key=key, IfMatch=etag)
        except Exception as err:
            code = _code(err)
            if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                return  # not the version we meant: someone else's lock now
            if code not in _UNSUPPORTED:
                raise
            fs.s3_client().delete_object(Bucket=bucket, Key=key)  # best effort


def ensure_held(output: str) -> None:
    """Before moving LATEST: check that the build's lock on `output` is still ours.

    In the process holding the lock (threads runner), the lock itself is checked. In another process
    (a Dask worker publishing for the build), the token given to `adopted` must still be the lock
    file's. A no-op when neither applies (the pipeline functions called directly, as in unit tests).
    """
    lock = _HELD.get(output)
    if lock is not None:
        lock.verify()
        return
    token = dict(_ADOPTED.get()).get(output)
    if token is not None:
        check_token(output, token)


def held_token(output: str) -> str | None:
    """The token of the lock this process holds on `output` now (None when it holds none)."""
    lock = _HELD.get(output)
    return lock.token if lock is not None and lock.held else None


# (output, token) pairs adopted by the running step; a tuple, immutable, as a ContextVar default must be
_ADOPTED: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar("voicetone_adopted_locks",
                                                                                     default=())


@contextlib.contextmanager
def adopted(output: str, token: str | None) -> Iterator[None]:
    """In the block, `ensure_held(output)` checks that `<output>/build.lock` still carries `token`.

    For a step that runs in another process than the build holding the lock (a Dask worker, maybe
    on another machine): `_HELD` is empty there, so without this the check before LATEST would do
    nothing. A context variable, so concurrent tasks in one worker do not see each other's tokens.
    `token` None (no lock held by the caller) changes nothing.
    """
    if token is None:
        yield
        return
    reset = _ADOPTED.set((*_ADOPTED.get(), (output, token)))
    try:
        yield
    finally:
        _ADOPTED.reset(reset)


def check_token(output: str, token: str) -> None:
    """Raise `GuardError("output_lock_lost")` unless the lock file of `output` carries `token` (read now)."""
    current = OutputLock(output)._read()
    if current is not None and current.token == token:
        return
    from tasks.core.guards import GuardError

    now = current.describe() if current is not None else "no lock"
    raise GuardError("output_lock_lost", f"the lock {lock_uri(output)} is no longer this build's (now: {now}): "
                     "another build took the output over while this one ran (no heartbeat for "
                     "run.lock_stale_s: was the process suspended?); not moving LATEST. Run the build again.")


_UNSUPPORTED = ("NotImplemented", "InvalidArgument", "InvalidRequest", "501")


def _code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def hold(output: str, spec_name: str = "", wait_s: float = DEFAULT_WAIT_S, stale_s: float = DEFAULT_STALE_S,
         log: Log | None = None, warn: Log | None = None, **kwargs: Any) -> Iterator[OutputLock]:
    """Hold the output's lock for the block (released however the block ends)."""
    lock = OutputLock(output, spec_name, wait_s, stale_s, log=log, warn=warn, **kwargs)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()
