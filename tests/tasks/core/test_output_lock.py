"""One build per output at a time: the output lock across processes, its stale-lock rule, local and S3
(issue 14 item 7)."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from manifests import uri as fs
from tasks.core.guards import GuardError
from tasks.core.output_lock import OutputLock, OutputLocked, adopted, ensure_held, held_token, hold, lock_uri

CTX = multiprocessing.get_context("spawn")  # a fresh interpreter, like a second `voicetone build`


def _hold_for(output: str, seconds: float, ready: object, env: dict[str, str]) -> None:
    os.environ.update(env)
    with hold(output, "holder", wait_s=0, heartbeat_s=0.2):
        ready.set()
        time.sleep(seconds)


def _try(output: str, wait_s: float, env: dict[str, str], results: object) -> None:
    os.environ.update(env)
    started = time.monotonic()
    try:
        with hold(output, "second", wait_s=wait_s, poll_s=0.1):
            results.put(("acquired", round(time.monotonic() - started, 1)))
    except OutputLocked as err:
        results.put(("locked", str(err)))


def _aws_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("AWS_")}


def _race(output: str, hold_s: float, wait_s: float) -> tuple[str, object, int]:
    ready, results = CTX.Event(), CTX.Queue()
    holder = CTX.Process(target=_hold_for, args=(output, hold_s, ready, _aws_env()))
    holder.start()
    try:
        assert ready.wait(60), "the holder process never took the lock"
        second = CTX.Process(target=_try, args=(output, wait_s, _aws_env(), results))
        second.start()
        outcome = results.get(timeout=120)
        second.join(60)
    finally:
        holder.join(60)
    return outcome[0], outcome[1], holder.pid


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_second_build_stops_naming_the_holder(where: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    output = str(tmp_path / "out") if where == "local" else f"s3://{request.getfixturevalue('s3_bucket')}/out"
    what, detail, holder_pid = _race(output, hold_s=3, wait_s=0)
    assert what == "locked"
    assert f"pid {holder_pid} on host {socket.gethostname()}" in detail and "spec 'holder'" in detail
    assert "run.lock_wait_s" in detail and lock_uri(output) in detail
    assert not fs.exists(lock_uri(output))  # released when the holder finished


def test_a_second_build_waits_for_the_first(tmp_path: Path) -> None:
    what, waited, _ = _race(str(tmp_path / "out"), hold_s=2, wait_s=60)
    assert what == "acquired" and waited >= 0.5


def _write_lock(output: Path, **fields: object) -> None:
    body = {"token": "t0", "pid": 1, "host": "elsewhere", "spec": "old", "started_at": time.time(),
            "heartbeat_at": time.time(), **fields}
    output.mkdir(parents=True, exist_ok=True)
    (output / "build.lock").write_text(json.dumps(body))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_locks_are_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    warnings: list[str] = []

    def warn(msg: str, *args: object) -> None:
        warnings.append(msg % args)

    # A killed build on this host: its pid is gone, so the lock is stale at once.
    _write_lock(out, host=socket.gethostname(), pid=_dead_pid())
    with hold(str(out), "new", wait_s=0, warn=warn) as lock:
        assert json.loads((out / "build.lock").read_text())["token"] == lock.token
    assert not (out / "build.lock").exists() and "taking over a stale lock" in warnings[0]

    # Another host's build with no heartbeat for longer than lock_stale_s.
    _write_lock(out, heartbeat_at=time.time() - 600)
    with hold(str(out), "new", wait_s=0, stale_s=300, warn=warn):
        pass
    # A lock file killed while being written (empty), older than lock_stale_s.
    (out / "build.lock").write_bytes(b"")
    old = time.time() - 600
    os.utime(out / "build.lock", (old, old))
    with hold(str(out), "new", wait_s=0, stale_s=300, warn=warn):
        pass
    assert len(warnings) == 3


def test_a_live_lock_is_not_stale(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write_lock(out, heartbeat_at=time.time() - 10)  # another host, recent heartbeat
    with pytest.raises(OutputLocked, match="pid 1 on host elsewhere"):
        OutputLock(str(out), wait_s=0.3, poll_s=0.1).acquire()
    with hold(str(out / "mine"), "me", wait_s=0) as mine:  # held by this very process (another thread's build)
        with pytest.raises(OutputLocked, match=f"pid {os.getpid()} on host"):
            OutputLock(str(out / "mine"), wait_s=0, stale_s=300).acquire()
        assert json.loads((out / "mine" / "build.lock").read_text())["token"] == mine.token


def test_our_own_pid_in_a_lock_we_do_not_hold_is_stale(tmp_path: Path) -> None:
    """A container restarted under the same hostname: the dead build had the pid this process has now."""
    out = tmp_path / "out"
    _write_lock(out, host=socket.gethostname(), pid=os.getpid(), token="from-before-the-restart")
    with hold(str(out), "new", wait_s=0) as lock:
        assert json.loads((out / "build.lock").read_text())["token"] == lock.token


def test_heartbeat_keeps_the_lock_fresh_and_release_removes_only_our_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    lock = OutputLock(str(out), "me", wait_s=0, heartbeat_s=0.1)
    lock.acquire()
    first = json.loads((out / "build.lock").read_text())["heartbeat_at"]
    time.sleep(0.5)
    assert json.loads((out / "build.lock").read_text())["heartbeat_at"] > first
    _write_lock(out, token="someone-else")  # taken over meanwhile (we looked stale)
    time.sleep(0.3)
    with pytest.raises(GuardError, match="output_lock_lost"):
        ensure_held(str(out))  # publish checks this before moving LATEST
    lock.release()
    assert lock.lost and json.loads((out / "build.lock").read_text())["token"] == "someone-else"
    ensure_held(str(out))  # no lock held here any more: nothing to check


def _publish_check(output: str, token: str | None) -> str:
    """What a Dask worker's publish step sees: no lock held in this process, maybe the build's token."""
    try:
        with adopted(output, token):
            ensure_held(output)
    except GuardError as err:
        return f"refused: {err}"
    return "ok"


def test_a_publish_step_in_another_process_checks_the_build_lock_by_token(tmp_path: Path) -> None:
    """publish on a Dask worker: the build's lock lives in the flow process, the check must still bite."""
    out = str(tmp_path / "out")
    with CTX.Pool(1) as worker, hold(out, "me", wait_s=0) as lock:
        assert held_token(out) == lock.token
        assert worker.apply(_publish_check, (out, lock.token)) == "ok"
        assert worker.apply(_publish_check, (out, None)) == "ok"  # called directly, no build: nothing to check
        _write_lock(Path(out), token="another-build")  # taken over while we ran (we looked stale)
        refused = worker.apply(_publish_check, (out, lock.token))
        assert refused.startswith("refused: ") and "output_lock_lost" in refused and "another-build" not in refused
        assert "not moving LATEST" in refused
        os.remove(lock_uri(out))  # the other build finished and removed its lock: still not ours
        assert "output_lock_lost" in worker.apply(_publish_check, (out, lock.token))
    assert held_token(out) is None


def test_the_adopted_token_is_only_checked_inside_its_block(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write_lock(out, token="someone-else")
    with pytest.raises(GuardError, match="output_lock_lost"), adopted(str(out), "ours"):
        ensure_held(str(out))
    ensure_held(str(out))  # outside the block: no build's token here, nothing to check


def test_s3_stale_lock_is_taken_over_and_heartbeat_uses_if_match(s3_bucket: str) -> None:
    output = f"s3://{s3_bucket}/out"
    fs.write_bytes(lock_uri(output), json.dumps({"token": "t0", "pid": 1, "host": "elsewhere", "spec": "old",
                                                 "started_at": 0, "heartbeat_at": time.time() - 900}).encode())
    lock = OutputLock(output, "me", wait_s=0, stale_s=300, heartbeat_s=0.1)
    lock.acquire()
    time.sleep(0.5)
    assert not lock.lost and json.loads(fs.read_bytes(lock_uri(output)))["token"] == lock.token
    lock.release()
    assert not fs.exists(lock_uri(output))


def test_threads_of_one_process_never_hold_the_lock_together(tmp_path: Path) -> None:
    import threading

    out, won, start = str(tmp_path / "out"), [], threading.Barrier(6)

    def contend() -> None:
        start.wait()
        try:
            with hold(out, "thread", wait_s=0):
                won.append(1)
                time.sleep(0.5)
        except OutputLocked:
            pass

    threads = [threading.Thread(target=contend) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1
