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
from tests.flows.buildutil import demo_spec_file, run_build, seed_language_cache
from tests.flows.conftest import SMALL_SHARDS


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


def test_dask_build_spreads_work_and_equals_single_process(prefect_server, small_shard_reference, demo_release,
                                                          tmp_path):
    spec = demo_spec_file(tmp_path, "spec.yaml", shard_size=SMALL_SHARDS, part_rows=SMALL_SHARDS,
                          task_runner="dask", max_workers=2)
    seed_language_cache(demo_release[0].output, tmp_path / "dask-out")  # Dask workers label the rest
    run_build(spec, tmp_path / "dask-out", tmp_path / "client-home", api_url=prefect_server)

    dask_card = read_card(resolve_release(str(tmp_path / "dask-out")))
    assert validate_release(str(tmp_path / "dask-out")).ok
    pids = dask_card["lineage"]["worker_pids"]
    assert len(set(pids)) >= 2, pids  # at least two Dask worker processes did work
    assert set(pids).isdisjoint(small_shard_reference["lineage"]["worker_pids"])
    assert dask_card["content_sha256"] == small_shard_reference["content_sha256"]


@pytest.mark.slow  # ~4 min: the default run covers Dask (above) and S3 (tests/infra/test_stack_moto.py) apart
def test_dask_build_reads_and_writes_s3(prefect_server, moto_server, s3_bucket, tmp_path):
    """The Dask path with corpora, augmentation material, cache, work files and release on s3:// (moto)."""
    from tasks.core import storage
    from tests.demo_corpus import demo_spec_data

    base = f"s3://{s3_bucket}"
    data = demo_spec_data(base)
    data["run"] = {"shard_size": SMALL_SHARDS, "part_rows": SMALL_SHARDS, "task_runner": "dask", "max_workers": 2}
    spec = tmp_path / "s3-dask.yaml"
    spec.write_text(yaml.safe_dump(data))
    output = f"{base}/datasets/dask-demo"

    run_build(spec, output, tmp_path / "client-home", api_url=prefect_server)

    assert validate_release(output).ok
    card = read_card(resolve_release(output))
    assert len(set(card["lineage"]["worker_pids"])) >= 2
    assert sum(c["found"] for c in card["counts"]["sources"].values()) == 69
    assert any("/cache/" in k for k in storage.list_files(output))
