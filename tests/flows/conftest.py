"""Prefect's test harness (a temporary server for the whole session) for flow tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")


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
