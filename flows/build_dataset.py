"""The main flow: ingest -> transcripts -> sentiment -> splits and balance -> segments -> augment -> publish.

Wiring only: each @task is a thin wrapper over a pure function in `tasks/`, and tasks pass shard
URIs (not DataFrames) so results stay small. Shards are persisted under `<output>/work/`, labels in
`<output>/cache/`, so a re-run or a resumed run redoes only what is unfinished.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task

from tasks import pipeline
from tasks.spec import DatasetSpec, check_spec_paths


@task(name="ingest-source", retries=1, retry_delay_seconds=2)
def ingest_source_task(spec: DatasetSpec, index: int) -> dict[str, Any]:
    return pipeline.ingest_source(spec, index, log=get_run_logger().info)


@task(name="fill-transcripts")
def transcripts_task(spec: DatasetSpec, shard_uri: str, position: str) -> dict[str, Any]:
    return pipeline.transcripts_shard(spec, shard_uri, log=get_run_logger().info, position=position)


@task(name="fill-sentiment")
def sentiment_task(spec: DatasetSpec, shard_uri: str, position: str) -> dict[str, Any]:
    return pipeline.sentiment_shard(spec, shard_uri, log=get_run_logger().info, position=position)


@task(name="detect-speech")
def speech_task(spec: DatasetSpec, shard_uri: str, position: str) -> dict[str, Any]:
    return pipeline.speech_shard(spec, shard_uri, log=get_run_logger().info, position=position)


@task(name="split-and-balance")
def plan_task(spec: DatasetSpec, shard_results: list[dict[str, Any]]) -> dict[str, Any]:
    return pipeline.plan_stages(spec, shard_results, log=get_run_logger().info)


@task(name="augment")
def augment_task(spec: DatasetSpec, rows_uri: str, position: str) -> dict[str, Any]:
    return pipeline.augment_shard(spec, rows_uri, log=get_run_logger().info, position=position)


@task(name="publish")
def publish_task(spec: DatasetSpec, plan: dict[str, Any], augmented: list[dict[str, Any]],
                 ingest: list[dict[str, Any]], timings: dict[str, float]) -> dict[str, Any]:
    return pipeline.publish(spec, plan, augmented, ingest, timings, log=get_run_logger().info)


def _map(task_fn: Any, spec: DatasetSpec, uris: list[str]) -> list[dict[str, Any]]:
    futures = [task_fn.submit(spec, u, f"{i + 1}/{len(uris)}") for i, u in enumerate(uris)]
    return [f.result() for f in futures]


@flow(name="build-dataset", log_prints=True, validate_parameters=True)
def build_dataset(spec: DatasetSpec) -> dict[str, Any]:
    """Build and publish one release of the dataset described by `spec`."""
    log = get_run_logger()
    check_spec_paths(spec)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    ingest = [ingest_source_task.submit(spec, i) for i in range(len(spec.sources))]
    ingest_results = [f.result() for f in ingest]
    shard_uris = pipeline.make_shards(spec, ingest_results, log=log.info)
    timings["ingest"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labelled = _map(transcripts_task, spec, shard_uris)
    timings["transcripts"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labelled = _chain(labelled, _map(sentiment_task, spec, [r["items_uri"] for r in labelled]))
    timings["sentiment"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    labelled = _chain(labelled, _map(speech_task, spec, [r["items_uri"] for r in labelled]))
    timings["speech_detection"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    plan = plan_task.submit(spec, labelled).result()
    timings["split_and_balance"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    augmented = _map(augment_task, spec, plan["row_shard_uris"])
    timings["augment"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = publish_task.submit(spec, plan, augmented, ingest_results, timings).result()
    timings["publish"] = time.perf_counter() - t0
    log.info("release %s published at %s", result["release"], result["release_uri"])
    return result


def _chain(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Carry the rejects of earlier stages along with each shard's newest items."""
    out = []
    for prev, cur in zip(previous, current, strict=True):
        merged = dict(cur)
        merged["rejects_uris"] = list(prev.get("rejects_uris", [])) + list(cur.get("rejects_uris", []))
        out.append(merged)
    return out


