"""Helpers for flow tests that run real `voicetone build` processes on the demo corpus."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.demo_corpus import REPO, demo_spec_data


def demo_spec_file(folder: Path, name: str, **run: Any) -> Path:
    """The demo spec with absolute paths and the given `run` settings, written to `folder/name`."""
    data = demo_spec_data()
    data["run"] = {**data.get("run", {}), **run}
    path = folder / name
    path.write_text(yaml.safe_dump(data))
    return path


def seed_language_cache(demo_output: str | Path, output: str | Path) -> int:
    """Copy the language-identification label cache (`cache/langid-*`) of a finished demo build into
    `output` (a local folder or an s3:// URI); the number of files copied.

    For demo builds that test orchestration (resume, Dask, S3 and IAM) or the thread environment of the
    other labelers (the small-shard reference), not language identification:
    with `labelers.language_id.check_declared` (the default) ingest runs Whisper base's encoder on each
    of the 63 utterances, most of a demo build's time. Such a build then redoes every other labeler
    (Whisper transcripts, VAD, sentiment). The language labels are computed fresh by the session's demo
    build; their independence of the thread environment is checked by
    tests/tasks/label/transcripts/test_whisper.py (the single-thread reference build is seeded too).
    """
    from tasks.core import storage

    cache = Path(demo_output) / "cache"
    files = [p for p in sorted(cache.glob("langid-*/**/*")) if p.is_file()]
    assert files, f"no language-identification cache under {cache}"
    for path in files:
        storage.write_bytes(storage.join(str(output), "cache", path.relative_to(cache).as_posix()), path.read_bytes())
    return len(files)


def build_env(home: Path, api_url: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **(extra or {})}
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def start_build(spec: Path, output: Path | str, home: Path, api_url: str | None = None,
                env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "build", str(spec), "--output", str(output)],
        cwd=REPO, env=build_env(home, api_url, env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )


def run_build(spec: Path, output: Path | str, home: Path, api_url: str | None = None, timeout: float = 1800,
              env: dict[str, str] | None = None) -> str:
    """Run `voicetone build` in a subprocess (`env`: extra environment variables); its output.

    `timeout` only guards against a hung build (a demo build takes ~2 min on 2 quiet cores, several
    times that on a loaded machine); on expiry the build's process group is killed, so no orphaned
    build (and its Prefect server) keeps loading the machine for the rest of the session.
    """
    proc = start_build(spec, output, home, api_url, env)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"voicetone build did not finish in {timeout:.0f} s:\n{out[-4000:]}") from None
    assert proc.returncode == 0, out[-4000:]
    return out
