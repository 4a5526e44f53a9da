"""The main flow: ingest -> transcripts -> sentiment -> speech -> splits and balance -> augment -> publish.

Wiring only: each @task is a thin wrapper over a stage step (`tasks/<stage>/step.py`), and tasks pass
shard URIs (not DataFrames) so results stay small. Shards are persisted under `<output>/work/` and
labels under `<output>/cache/`, so a re-run or a resumed run redoes only what is unfinished.
The spec chooses the task runner (threads, a local Dask cluster, or a Dask scheduler address).
"""

from __future__ import annotations

import os
import time
from typing import Any, TypeVar

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.mapping import in_flight_limit, map_shards
from tasks.augment import step as augment_step
from tasks.core import limits, output_lock
from tasks.core.guard_logging import install_quiet_guard_errors
from tasks.core.results import (
    AugmentResult,
    IngestResult,
    PartResult,
    PlanResult,
    PublishResult,
    PublishSetup,
    PublishWeights,
    SentimentSetup,
    ShardResult,
    ShardWindows,
)
from tasks.core.security import install_log_redaction
from tasks.ingest import source_guards
from tasks.ingest import step as ingest_step
from tasks.label import steps as label_steps
from tasks.plan import step as plan_step
from tasks.preflight import check_spec_paths
from tasks.publish import finish_process
from tasks.publish import parts as publish_parts
from tasks.publish import step as publish_step
from tasks.spec import DatasetSpec

# Redact credentials from every log record of this process; at import, so Dask worker processes
# that unpickle these tasks get it too (docs/security.md).
install_log_redaction()
install_quiet_guard_errors()  # a refusing guard logs its message, not a traceback

R = TypeVar("R", IngestResult, ShardResult, AugmentResult, ShardWindows, PartResult)
STAGES = ("ingest", "transcripts", "sentiment", "speech_detection", "split_and_balance", "augment", "publish")


def _with_pid(result: R) -> R:
    return {**result, "pid": os.getpid()}  # type: ignore[return-value]


def _retry_unless_layout_error(task: Any, task_run: Any, state: Any) -> bool:
    """A source of the wrong layout fails the same way every time: retrying only delays the message."""
    from tasks.ingest.corpora.base import CorpusLayoutError

    try:
        state.result()
    except CorpusLayoutError:
        return False
    except Exception:
        return True
    return True


@task(name="ingest-source", retries=1, retry_delay_seconds=2, retry_condition_fn=_retry_unless_layout_error)
def ingest_source_task(spec: DatasetSpec, index: int) -> IngestResult:
    logger = get_run_logger()
    return _with_pid(ingest_step.ingest_source(spec, index, log=logger.info, warn=logger.warning))


@task(name="make-shards")
def make_shards_task(spec: DatasetSpec, ingest: list[IngestResult]) -> list[str]:
    """All sources' items hashed into shards (reads every ingested item: on a worker, not the flow)."""
    return ingest_step.make_shards(spec, ingest, log=get_run_logger().info)


@task(name="plan-transcripts")
def plan_transcripts_task(spec: DatasetSpec, shard_uris: list[str]) -> str | None:
    """Stop before any paid job over the cost cap; then Whisper's packing plan, fixed across shards."""
    log = get_run_logger().info
    label_steps.estimate_transcribe_cost(spec, shard_uris, log=log)
    return label_steps.plan_transcripts(spec, shard_uris, log=log)


@task(name="fill-transcripts", retries=1, retry_delay_seconds=5)
def transcripts_task(spec: DatasetSpec, shard_uri: str, position: str, plan_uri: str | None = None) -> ShardResult:
    return _with_pid(label_steps.transcripts_shard(spec, shard_uri, log=get_run_logger().info, position=position,
                                                plan_uri=plan_uri))


@task(name="fill-sentiment", retries=1, retry_delay_seconds=5)
def sentiment_task(spec: DatasetSpec, shard_uri: str, position: str, model_uri: str | None = None) -> ShardResult:
    return _with_pid(label_steps.sentiment_shard(spec, shard_uri, log=get_run_logger().info, position=position,
                                              model_uri=model_uri))


@task(name="prepare-sentiment")
def prepare_sentiment_task(spec: DatasetSpec, shard_uris: list[str]) -> SentimentSetup:
    """Once per run: train the in-run text classifier; estimate (and cap) Comprehend's cost."""
    return label_steps.prepare_sentiment(spec, shard_uris, log=get_run_logger().info)


@task(name="detect-speech", retries=1, retry_delay_seconds=5)
def speech_task(spec: DatasetSpec, shard_uri: str, position: str) -> ShardResult:
    return _with_pid(label_steps.speech_shard(spec, shard_uri, log=get_run_logger().info, position=position))


@task(name="split-and-balance", task_run_name="plan-{step}-{position}")
def plan_part_task(step: str, args: tuple, position: str) -> Any:
    """One per-shard (or per-partition) step of the plan (`tasks.plan.shard_step.STEPS`)."""
    from tasks.plan.shard_step import STEPS

    return STEPS[step](*args)


def _plan_mapper(spec: DatasetSpec) -> Any:
    """The plan's mapper: its per-shard steps run as tasks on the task runner (at most
    `run.max_task_runs_per_stage` runs per step, shards grouped beyond); reductions stay here."""
    def plan_map(step: str, calls: list[tuple]) -> list[Any]:
        return map_shards(plan_part_task, step, calls, spec.run.max_task_runs_per_stage,
                          max_in_flight=in_flight_limit(spec.run.max_workers))
    return plan_map


@task(name="augment", retries=1, retry_delay_seconds=5)
def augment_task(spec: DatasetSpec, rows_uri: str, position: str) -> AugmentResult:
    return _with_pid(augment_step.augment_shard(spec, rows_uri, log=get_run_logger().info, position=position))


@task(name="publish-prepare")
def publish_prepare_task(spec: DatasetSpec, plan: PlanResult, ingest: list[IngestResult]) -> PublishSetup:
    return publish_step.prepare_publish(spec, plan, ingest, log=get_run_logger().info)


@task(name="publish-windows", retries=1, retry_delay_seconds=5)
def publish_windows_task(spec: DatasetSpec, pair: dict[str, Any], position: str, setup: PublishSetup) -> ShardWindows:
    """Pass 1 of one shard's publish: its audio into the release, its rows and windows staged and counted."""
    return _with_pid(publish_parts.shard_windows(spec, setup, pair["shard"], pair["augmented"],
                                                 log=get_run_logger().info))


@task(name="publish-weights")
def publish_weights_task(spec: DatasetSpec, setup: PublishSetup, plan: PlanResult,
                         staged: list[ShardWindows]) -> PublishWeights:
    return publish_parts.release_weights(spec, setup, dict(plan), staged)


@task(name="publish-part", retries=1, retry_delay_seconds=5)
def publish_part_task(spec: DatasetSpec, pair: dict[str, Any], position: str, setup: PublishSetup,
                      weighting: PublishWeights) -> PartResult:
    """Pass 2 of one shard's publish: part `index` of the four manifests."""
    return _with_pid(publish_parts.publish_shard(spec, setup, weighting, pair["shard"], pair["staged"],
                                                 log=get_run_logger().info))


@task(name="publish")
def publish_task(spec: DatasetSpec, plan: PlanResult, setup: PublishSetup, weighting: PublishWeights,
                 parts: list[PartResult], augmented: list[AugmentResult], ingest: list[IngestResult],
                 timings: dict[str, float], lock_token: str | None = None) -> PublishResult:
    """The finishing step: release digest from the part records, card, plots, validation, LATEST.

    `lock_token`: the build's output lock, checked before LATEST moves even on a Dask worker."""
    logger = get_run_logger()
    return finish_process.finish(spec, plan, setup, weighting, parts, augmented, ingest, timings, lock_token,
                                 log=logger.info, warn=logger.warning)


def _publish(spec: DatasetSpec, plan: PlanResult, augmented: list[AugmentResult], ingest: list[IngestResult],
             timings: dict[str, float]) -> PublishResult:
    """Publish per shard on the task runner: prepare, windows per shard, weights, parts per shard, finish."""
    setup = publish_prepare_task.submit(spec, plan, ingest).result()
    pairs = [{"shard": s, "augmented": a} for s, a in zip(plan["shards"], augmented, strict=True)]
    staged = _map(publish_windows_task, spec, pairs, setup=setup)
    weighting = publish_weights_task.submit(spec, setup, plan, staged).result()
    pairs = [{"shard": s, "staged": w} for s, w in zip(plan["shards"], staged, strict=True)]
    parts = _map(publish_part_task, spec, pairs, setup=setup, weighting=weighting)
    return publish_task.submit(spec, plan, setup, weighting, parts, augmented, ingest, timings,
                               output_lock.held_token(spec.output)).result()


def _map(task_fn: Any, spec: DatasetSpec, uris: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
    """One result per shard, in shard order, from at most `run.max_task_runs_per_stage` task runs."""
    return map_shards(task_fn, spec, uris, spec.run.max_task_runs_per_stage,
                      max_in_flight=in_flight_limit(spec.run.max_workers), **kwargs)


def _chain(previous: list[ShardResult], current: list[ShardResult]) -> list[ShardResult]:
    """Carry the rejects and fired guards of earlier stages along with each shard's newest items."""
    return [
        {**cur, "rejects_uris": list(prev.get("rejects_uris", [])) + list(cur.get("rejects_uris", [])),
         "guards": list(prev.get("guards", [])) + list(cur.get("guards", []))}
        for prev, cur in zip(previous, current, strict=True)
    ]


def task_runner_for(spec: DatasetSpec) -> Any:
    """Threads by default; Dask (prefect-dask) when the spec asks, local cluster or existing scheduler."""
    if spec.run.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=spec.run.max_workers)
    from prefect_dask import DaskTaskRunner

    if spec.run.dask_address:
        return DaskTaskRunner(address=spec.run.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={"n_workers": spec.run.max_workers, "threads_per_worker": 1, "processes": True,
                        "dashboard_address": None}
    )


class _Progress:
    """A Prefect progress artifact moved forward as stages finish, with timings kept for the card."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t0 = time.perf_counter()
        self._id = create_progress_artifact(progress=0.0, key="build-progress",
                                            description="voicetone build: stages finished")

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = now - self._t0
        self._t0 = now
        if self._id is not None:
            update_progress_artifact(self._id, progress=100.0 * (STAGES.index(stage) + 1) / len(STAGES))


def _stages(spec: DatasetSpec) -> dict[str, Any]:
    """The build, stage by stage; every step runs as a task on the spec's task runner."""
    log = get_run_logger()
    check_spec_paths(spec)
    made = limits.ensure_cloud_limits(spec)  # global rate limits shared by all workers (Prefect server only)
    if made:
        log.info("cloud rate limits on the Prefect server: %s", ", ".join(made))
    progress = _Progress()

    ingest, shard_uris = _ingest(spec)
    progress.done("ingest")
    plan_uri = plan_transcripts_task.submit(spec, shard_uris).result()  # cost cap, then the packing plan
    labelled = _map(transcripts_task, spec, shard_uris, plan_uri=plan_uri)
    progress.done("transcripts")
    sentiment = prepare_sentiment_task.submit(spec, [r["items_uri"] for r in labelled]).result()
    labelled = _chain(labelled, _map(sentiment_task, spec, [r["items_uri"] for r in labelled],
                                     model_uri=sentiment["model_uri"]))
    progress.done("sentiment")
    labelled = _chain(labelled, _map(speech_task, spec, [r["items_uri"] for r in labelled]))
    progress.done("speech_detection")
    return plan_and_publish(spec, labelled, ingest, sentiment, progress)


def _ingest(spec: DatasetSpec) -> tuple[list[IngestResult], list[str]]:
    """One task per source, the ingest guards (a failed source stops here, before paid labelling), shards."""
    ingest = [f.result() for f in [ingest_source_task.submit(spec, i) for i in range(len(spec.sources))]]
    source_guards.check_ingest(spec, ingest)
    return ingest, make_shards_task.submit(spec, ingest).result()


def plan_and_publish(spec: DatasetSpec, labelled: list[ShardResult], ingest: list[IngestResult],
                     sentiment: SentimentSetup | None = None, progress: _Progress | None = None) -> dict[str, Any]:
    """Split and balance -> augment -> publish, from labelled shards (in shard order) and the ingest results.

    The second half of a build, callable from any flow whose task runner should run it (the
    planning-scale benchmark starts here, from shards it wrote). Publish checks the build's output
    lock (held by this flow process, if any) before moving LATEST, wherever it runs.
    """
    progress = progress or _Progress()
    plan: PlanResult = plan_step.plan_stages(spec, labelled, log=get_run_logger().info, mapper=_plan_mapper(spec))
    progress.done("split_and_balance")
    augmented = _map(augment_task, spec, plan["row_shard_uris"])
    progress.done("augment")
    pids = sorted({r["pid"] for r in [*ingest, *labelled, *augmented] if "pid" in r})
    plan = {**plan, "worker_pids": pids, "sentiment": sentiment}
    result = _publish(spec, plan, augmented, ingest, progress.timings)
    progress.done("publish")
    result["timings"] = progress.timings
    result["worker_pids"] = pids
    return result


def _run_locked(spec: DatasetSpec, stages: Any, *args: Any) -> dict[str, Any]:
    """Run the `stages` subflow on the spec's task runner while holding the output's lock; summarise."""
    logger = get_run_logger()
    with output_lock.hold(spec.output, spec.name, wait_s=spec.run.lock_wait_s, stale_s=spec.run.lock_stale_s,
                          log=logger.info, warn=logger.warning):
        result = stages.with_options(task_runner=task_runner_for(spec))(spec, *args)
        _summary_artifacts(result)
    if result.get("published", True):
        logger.info("release %s published at %s", result["release"], result["release_uri"])
    else:
        logger.info("no change since release %s (same content_sha256): nothing published, LATEST unchanged",
                    result["release"])
    return result


@flow(name="build-dataset", log_prints=True, validate_parameters=True)
def build_dataset(spec: DatasetSpec) -> dict[str, Any]:
    """Build and publish one release of the dataset described by `spec`.

    One build per output at a time (`tasks.core.output_lock`): a second one waits up to `run.lock_wait_s`.
    """
    return _run_locked(spec, _build_stages)


@flow(name="build-dataset-stages", log_prints=True)
def _build_stages(spec: DatasetSpec) -> dict[str, Any]:
    """The stages, run as a subflow so the spec can choose its task runner at run time."""
    return _stages(spec)


def publish_labelled(spec: DatasetSpec, labelled: list[dict[str, Any]], ingest: list[dict[str, Any]],
                     sentiment: dict[str, Any] | None = None) -> dict[str, Any]:
    """Plan, augment and publish already-labelled shards, under the output lock, on the spec's runner.

    `labelled` are shards as the speech stage leaves them (items with labels and `speech_intervals`),
    `ingest` the per-source ingest results (found counts, ingest rejects). For benchmarks and tools
    that start after labelling; a build goes through `build_dataset`. The lists reach the flow as one
    work file (`work/publish-labelled/<hash>.json`): the Prefect server stores a flow run's parameters
    and refuses megabytes of them (32,768 shards at 10 million items: HTTP 422).
    """
    import json

    from manifests import uri as fs
    from tasks.core.shards import stable_hash
    from tasks.core.work import work_dir

    data = json.dumps({"labelled": labelled, "ingest": ingest, "sentiment": sentiment}, sort_keys=True)
    inputs_uri = fs.join(work_dir(spec), "publish-labelled", f"{stable_hash(data)[:16]}.json")
    fs.write_bytes(inputs_uri, data.encode())
    return publish_labelled_flow(spec, inputs_uri)


@flow(name="publish-labelled", log_prints=True, validate_parameters=False)
def publish_labelled_flow(spec: DatasetSpec, inputs_uri: str) -> dict[str, Any]:
    """`publish_labelled` as a flow: its labelled shards, ingest results and sentiment setup in `inputs_uri`."""
    return _run_locked(spec, _publish_labelled_stages, inputs_uri)


@flow(name="publish-labelled-stages", log_prints=True, validate_parameters=False)
def _publish_labelled_stages(spec: DatasetSpec, inputs_uri: str) -> dict[str, Any]:
    import json

    from manifests import uri as fs

    data = json.loads(fs.read_bytes(inputs_uri))
    return plan_and_publish(spec, data["labelled"], data["ingest"], data.get("sentiment"))  # type: ignore[arg-type]


def report_link(release_uri: str) -> str | None:
    """Where report.html can be opened from: a file:// URL (local) or the s3:// URI; None if absent."""
    from pathlib import Path

    from manifests import uri as fs
    from tasks.publish.html import REPORT_FILE

    target = fs.join(release_uri, REPORT_FILE)
    if not fs.exists(target):
        return None
    return target if fs.is_s3(target) else Path(target).resolve().as_uri()


def release_markdown(result: dict[str, Any], card: dict[str, Any], warnings_md: str, summary_md: str) -> str:
    """The run's Markdown artifact: warnings first, then the link to the report, then the summary."""
    link = report_link(result["release_uri"])
    report = f"**Report**: [{link}]({link}) (plots, tables, audio)" if link else "No report.html in this release."
    return (f"# Release `{result['release']}`\n\n## Warnings\n\n{warnings_md}\n\n{report}\n\n"
            f"`{result['release_uri']}`\n\n## Summary\n\n{summary_md}")


def _summary_artifacts(result: dict[str, Any]) -> None:
    """A Markdown summary and tables of counts and rejects, visible on the flow run in the UI."""
    from prefect.artifacts import create_table_artifact

    from manifests.io import read_card, resolve_release
    from tasks.publish.card import render_summary
    from tasks.publish.markdown import render_warnings

    paths = resolve_release(result["release_uri"])
    card = read_card(paths)
    create_markdown_artifact(
        key="release-summary",
        markdown=release_markdown(result, card, render_warnings(card), render_summary(card)),
        description="voicetone release summary",
    )
    sources = (card.get("counts") or {}).get("sources") or {}
    create_table_artifact(
        key="release-counts",
        table=[{"source": name, **{k: v for k, v in c.items() if isinstance(v, int | float | str | bool)}}
               for name, c in sources.items()],
        description="found / accepted / rejected per source",
    )
    examples = (card.get("rejects") or {}).get("examples") or []
    if examples:
        create_table_artifact(key="release-rejects", table=examples, description="reject examples")
