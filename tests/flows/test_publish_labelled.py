"""The post-labelling half of a build as its own flow (`publish_labelled` / `plan_and_publish`), and the
output-lock check that publish makes with the build's token wherever it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.build_dataset import publish_labelled, publish_task
from manifests.io import read_card, resolve_release
from manifests.validate import validate_release
from tasks.core.guards import GuardError
from tasks.core.output_lock import lock_uri
from tests.tasks.releasebuild import build, finish_inputs, labelled_shards, tone_corpus, tone_spec


def test_publish_labelled_publishes_what_a_whole_build_publishes(prefect_harness, tmp_path: Path) -> None:
    corpus = tone_corpus(tmp_path / "corpus")
    spec = tone_spec(corpus, tmp_path / "out", run={"finish_in_child_from_rows": 0})  # finishing step: a child
    labelled, ingest = labelled_shards(spec)

    result = publish_labelled(spec, labelled, ingest)

    assert result["published"] and validate_release(str(tmp_path / "out")).ok
    assert set(result["timings"]) == {"split_and_balance", "augment", "publish"}
    assert not Path(lock_uri(spec.output)).exists()  # held while it ran, released after
    whole = build(tone_spec(corpus, tmp_path / "whole"))  # every stage, no Prefect, finishing in this process
    assert result["content_sha256"] == whole["content_sha256"]
    assert read_card(resolve_release(str(tmp_path / "out")))["counts"] == \
        read_card(resolve_release(str(tmp_path / "whole")))["counts"]
    # The shard list reaches the flow as a work file, not as flow-run parameters (the server stores
    # those and refuses megabytes: 32,768 shards at 10 million items)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["publish-labelled"])))
    params = max(runs, key=lambda r: r.created).parameters
    assert set(params) == {"spec", "inputs_uri"}
    assert json.loads(Path(params["inputs_uri"]).read_text())["labelled"] == json.loads(json.dumps(labelled))


def _publish_with_token(spec: Any, labelled: list[dict], ingest: list[dict], token: str) -> dict:
    """The publish task's own body (what a Dask worker runs), given the build's lock token."""
    from prefect.logging import disable_run_logger

    args = finish_inputs(spec, labelled, ingest)
    with disable_run_logger():  # the finishing task is the one that moves LATEST
        return publish_task.fn(*args, token)


def test_publish_task_refuses_to_move_latest_when_the_builds_lock_was_taken(tmp_path: Path) -> None:
    """What a Dask worker does: this process holds no lock, the task gets the build's token."""
    corpus = tone_corpus(tmp_path / "corpus", rows="a.wav,I am so happy,positive,spk1\n")
    spec = tone_spec(corpus, tmp_path / "out")
    labelled, ingest = labelled_shards(spec)
    Path(lock_uri(spec.output)).write_text(json.dumps({"token": "another-build", "pid": 1, "host": "elsewhere",
                                                       "spec": "t", "started_at": 0, "heartbeat_at": 0}))
    with pytest.raises(GuardError, match="output_lock_lost"):
        _publish_with_token(spec, labelled, ingest, "this-build")
    assert not (tmp_path / "out" / "LATEST").exists()  # written, validated, but never pointed at

    Path(lock_uri(spec.output)).write_text(json.dumps({"token": "this-build", "pid": 1, "host": "elsewhere",
                                                       "spec": "t", "started_at": 0, "heartbeat_at": 0}))
    assert _publish_with_token(spec, labelled, ingest, "this-build")["published"]
    assert validate_release(str(tmp_path / "out")).ok
