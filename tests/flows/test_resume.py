"""Resume: a build killed with SIGKILL mid-stage and run again publishes a release equal to an
uninterrupted one, reusing the shards that finished before the kill and repeating no labelling."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests.io import read_card, resolve_release
from tests.flows.buildutil import demo_spec_file, seed_language_cache, start_build
from tests.flows.conftest import SMALL_SHARDS


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"build finished before the kill point (rc={proc.returncode}):\n{out[-3000:]}")
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("kill point never reached")


def _count(folder: Path, pattern: str) -> int:
    return len(list(folder.glob(pattern))) if folder.exists() else 0


def test_killed_builds_resume_to_an_equal_release(small_shard_reference, demo_release, tmp_path):
    spec = demo_spec_file(tmp_path, "spec.yaml", shard_size=SMALL_SHARDS, part_rows=SMALL_SHARDS)
    output, home = tmp_path / "out", tmp_path / "prefect-home"
    work = output / "work"
    seed_language_cache(demo_release[0].output, output)  # language ids known: the builds label the rest

    # Kill 1: while speech detection shards are being written (labels exist for the earlier shards).
    first = start_build(spec, output, home)
    _kill_when(first, lambda: _count(work / "speech", "*.items.parquet") >= 2)
    finished_speech = _count(work / "speech", "*.items.parquet")
    assert not (output / "LATEST").exists()

    # Kill 2: mid-augmentation (some materialised files written, nothing published).
    second = start_build(spec, output, home)
    _kill_when(second, lambda: _count(work / "audio", "*.flac") >= 3)
    assert not (output / "LATEST").exists()

    third = start_build(spec, output, home)
    out, _ = third.communicate(timeout=1800)  # a guard against a hang, not a budget
    assert third.returncode == 0, out[-4000:]
    assert out.count("reused") >= finished_speech  # finished shards were not redone

    card = read_card(resolve_release(str(output)))
    assert card["content_sha256"] == small_shard_reference["content_sha256"]

    # No repeated labelling: every Whisper label in the cache was computed once.
    keys: list[str] = []
    for seg in output.glob("cache/whisper*/*/parts/*/*.parquet"):
        if "~m-" not in seg.name:  # a merged segment repeats rows already written (docs/labelers.md)
            keys += pq.read_table(seg).column("key").to_pylist()
    assert len(keys) == len(set(keys)) > 0
