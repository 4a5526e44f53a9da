"""Fixtures shared by the process-level flow tests (resume, Dask)."""

from __future__ import annotations

import pytest

from manifests.io import read_card, resolve_release
from tests.flows.buildutil import demo_spec_file, run_build

SMALL_SHARDS = 8  # 63 demo utterances -> 8 shards: kills land between shards, Dask gets several tasks


@pytest.fixture(scope="session")
def small_shard_reference(tmp_path_factory):
    """An uninterrupted single-process build of the demo with small shards: the release to equal."""
    folder = tmp_path_factory.mktemp("small-shard-reference")
    spec = demo_spec_file(folder, "spec.yaml", shard_size=SMALL_SHARDS)
    run_build(spec, folder / "out", folder / "prefect-home")
    return read_card(resolve_release(str(folder / "out")))
