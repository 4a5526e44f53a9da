"""Shared fixtures: an S3 API on localhost (moto server over real HTTP) and fresh buckets in it.

A real HTTP server rather than ``mock_aws``, so boto3 clients made anywhere in the process (worker
threads included) and pyarrow's S3 filesystem all reach the same fake S3 (see facts.md on moto).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Variables the fake-AWS environment sets or clears; restored to their old values afterwards.
_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
_AWS_CLEARED = ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start a moto server on 127.0.0.1 (free port) and point the AWS env at it; yields its URL.

    Sets AWS_ENDPOINT_URL and test credentials for the session and restores the previous
    environment when the session ends. ``tasks.core.storage.s3_client()`` keys its cache on these
    variables, so it talks to the server without further setup.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    empty = tmp_path_factory.mktemp("aws-config") / "none"
    with pytest.MonkeyPatch.context() as mp:
        for name in _AWS_CLEARED:
            mp.delenv(name, raising=False)
        for name, value in _AWS_ENV.items():
            mp.setenv(name, value)
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        # Never read a developer's real ~/.aws files during tests.
        mp.setenv("AWS_CONFIG_FILE", str(empty))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
        try:
            yield endpoint
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(moto_server: str) -> str:
    """A new, empty bucket on the moto server; yields its name (use ``f"s3://{s3_bucket}/..."``)."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=name)
    return name


@pytest.fixture
def speech_wav(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``speech_wav("I am so happy", name="a.wav")`` -> a WAV of espeak-ng speech (22.05 kHz).

    Skips the test when espeak-ng is not installed.
    """
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")

    def make(text: str, name: str | None = None, voice: str = "en-us", speed_wpm: int = 160) -> Path:
        out = tmp_path / (name or f"speech-{uuid.uuid4().hex[:8]}.wav")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-w", str(out), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return out

    return make


# ------------------------------------------------------------------ Prefect
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def demo_release(prefect_harness, tmp_path_factory):
    """The demo dataset built once through the real flow; shared by the end-to-end tests."""
    from flows.build_dataset import build_dataset
    from flows.cli import DEMO_SPEC
    from tasks.spec import load_spec

    output = tmp_path_factory.mktemp("demo-out") / "voicetone-demo"
    spec = load_spec(DEMO_SPEC, output=str(output))
    result = build_dataset(spec)
    return spec, result
