"""The demo build on a 2-worker local Dask cluster (process workers) against a real Prefect server:
work is spread over several processes and the release equals the single-process one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from manifests.io import read_card, resolve_release
from manifests.validate import validate_release

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "flows" / "demo" / "demo.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free loopback port, with its own PREFECT_HOME."""
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("prefect server did not start")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _spec(tmp_path: Path, runner: str) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    for source in data["sources"]:
        source["path"] = str((DEMO.parent / source["path"]).resolve())
    data["augment"]["noise_paths"] = [str((DEMO.parent / p).resolve()) for p in data["augment"]["noise_paths"]]
    data["augment"]["rir_paths"] = [str((DEMO.parent / p).resolve()) for p in data["augment"]["rir_paths"]]
    data["run"] = {"shard_size": 16, "task_runner": runner, "max_workers": 2}
    path = tmp_path / f"spec-{runner}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _build(spec: Path, output: Path, api_url: str | None, home: Path) -> str:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    run = subprocess.run([sys.executable, "-m", "flows.cli", "build", str(spec), "--output", str(output)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run.stdout + run.stderr


def test_dask_build_spreads_work_and_equals_single_process(prefect_server, tmp_path):
    home = tmp_path / "client-home"
    _build(_spec(tmp_path, "dask"), tmp_path / "dask-out", prefect_server, home)
    _build(_spec(tmp_path, "threads"), tmp_path / "threads-out", None, tmp_path / "threads-home")

    dask_card = read_card(resolve_release(str(tmp_path / "dask-out")))
    threads_card = read_card(resolve_release(str(tmp_path / "threads-out")))
    assert validate_release(str(tmp_path / "dask-out")).ok
    pids = dask_card["lineage"]["worker_pids"]
    assert len(set(pids)) >= 2, pids  # at least two Dask worker processes did work
    assert set(pids).isdisjoint(threads_card["lineage"]["worker_pids"])
    assert dask_card["content_sha256"] == threads_card["content_sha256"]
