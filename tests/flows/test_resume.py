"""Resume: a build killed with SIGKILL mid-stage and run again publishes a release equal to an
uninterrupted one, reusing the shards that finished before the kill and repeating no labelling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from manifests.io import read_card, resolve_release

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "flows" / "demo" / "demo.yaml"


def _spec_file(tmp_path: Path) -> Path:
    """The demo spec with small shards (so a kill lands between shards) and absolute paths."""
    data = yaml.safe_load(DEMO.read_text())
    for source in data["sources"]:
        source["path"] = str((DEMO.parent / source["path"]).resolve())
    data["augment"]["noise_paths"] = [str((DEMO.parent / p).resolve()) for p in data["augment"]["noise_paths"]]
    data["augment"]["rir_paths"] = [str((DEMO.parent / p).resolve()) for p in data["augment"]["rir_paths"]]
    data.setdefault("run", {})["shard_size"] = 8
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start(spec: Path, output: Path, home: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "build", str(spec), "--output", str(output)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> None:
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


def test_killed_builds_resume_to_an_equal_release(tmp_path):
    spec = _spec_file(tmp_path)
    output, home = tmp_path / "out", tmp_path / "prefect-home"
    work = output / "work"

    # The uninterrupted reference: the same spec, its own output (and so its own label cache).
    reference = _start(spec, tmp_path / "reference", home)
    out, _ = reference.communicate(timeout=400)
    assert reference.returncode == 0, out[-4000:]
    uninterrupted = read_card(resolve_release(str(tmp_path / "reference")))

    # Kill 1: while speech detection shards are being written (after labels were made for some shards).
    first = _start(spec, output, home)
    _kill_when(first, lambda: _count(work / "speech", "*.items.parquet") >= 2)
    finished_speech = _count(work / "speech", "*.items.parquet")
    assert not (output / "LATEST").exists()

    # Kill 2: mid-augmentation (some materialised files written, release not published).
    second = _start(spec, output, home)
    _kill_when(second, lambda: _count(work / "audio", "*.flac") >= 3)
    assert not (output / "LATEST").exists()

    third = _start(spec, output, home)
    out, _ = third.communicate(timeout=400)
    assert third.returncode == 0, out[-4000:]
    assert out.count("speech detection") and out.count("reused") >= finished_speech

    card = read_card(resolve_release(str(output)))
    assert card["content_sha256"] == uninterrupted["content_sha256"]

    # No repeated labelling: every Whisper label in the cache was computed once.
    cache_root = output / "cache"
    whisper_dirs = [p for p in cache_root.iterdir() if p.name.startswith("whisper")]
    assert whisper_dirs
    keys: list[str] = []
    for settings_dir in whisper_dirs[0].iterdir():
        for seg in (settings_dir / "segments").glob("*.parquet"):
            keys += pq.read_table(seg).column("key").to_pylist()
    assert len(keys) == len(set(keys)) > 0
