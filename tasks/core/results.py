"""What each stage's step returns: typed, small and JSON-able, because Prefect persists and Dask pickles them.

Why TypedDicts and not dataclasses: a step result crosses a Prefect task boundary (kept in the
flow's memory, pickled to Dask workers) and is merged by the flow (`_chain` carries earlier
stages' rejects and guards along; `_with_pid` adds the worker's pid). Plain dicts keep that
serialisation trivial and let `guards.collect` read any stage's `guards` the same way; the types
make the keys each stage passes on explicit and checkable.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class IngestResult(TypedDict):
    """One source after ingest (`tasks.ingest.step.ingest_source`)."""

    source: str
    items_uri: str
    rejects_uri: str
    found: int
    notes: list[str]
    guards: NotRequired[list[dict[str, Any]]]  # language identification's guard records
    pid: NotRequired[int]


class ShardResult(TypedDict):
    """One shard after a labelling step (transcripts, sentiment, speech); the flow chains them."""

    items_uri: str
    rejects_uris: list[str]
    reused: bool
    rows: NotRequired[int]  # rows in items_uri (the plan sizes its shards by them; read from the file when absent)
    guards: NotRequired[list[dict[str, Any]]]
    pid: NotRequired[int]


class SentimentSetup(TypedDict):
    """Run-level set-up before the sentiment shards (`tasks.label.steps.prepare_sentiment`)."""

    model_uri: str | None
    comprehend_cost: dict[str, Any] | None


class PlanShard(TypedDict):
    """One plan shard (a run of consecutive labelled shards, `tasks.plan.shard_step.plan_inputs`): its three files."""

    index: int  # part number of the release's manifests
    utterances_uri: str  # the shard's accepted items (split, pii flags, speech_intervals), by utterance_id
    rows_uri: str  # the shard's stage rows for augment (in_asr / in_classifier, recipe)
    rejects_uri: str  # every reject of the shard's items: labelling stages and plan


class PlanResult(TypedDict):
    """The plan (`tasks.plan.step.plan_stages`): its shards' files, plus the card sections it computed."""

    plan_dir: str
    shards: list[PlanShard]
    row_shard_uris: list[str]  # == [s["rows_uri"] for s in shards]: what augment maps over
    pools_uri: str
    balance_report: dict[str, Any]
    eligibility: dict[str, Any]
    pools: dict[str, Any]
    pii: dict[str, Any]
    split_shares: Any
    plausibility: Any
    hallucination: dict[str, Any] | None
    guards: list[dict[str, Any]]


class AugmentResult(TypedDict):
    """One shard of stage rows after augmentation (`tasks.augment.step.augment_shard`)."""

    rows_uri: str
    materialized: int
    pid: NotRequired[int]


class PublishResult(TypedDict):
    """The published release (`tasks.publish.step.publish`); the flow adds its timings."""

    release: str
    release_uri: str
    content_sha256: str
    counts: dict[str, int]
    found: dict[str, int]
    changes: dict[str, Any]
    guards: list[dict[str, Any]]
    published: bool
    unchanged_since: NotRequired[str]  # published False: the build equals this release


class PublishSetup(TypedDict):
    """The release being published (`tasks.publish.step.prepare_publish`): name, folder, part count."""

    release: str
    release_uri: str
    n_parts: int
    found: dict[str, int]
    ingest_rejects: dict[str, list[str]]  # str(part) -> work files of the ingest rejects hashed to it
    ingest_reasons: dict[str, dict[str, int]]  # source -> reason -> count (the sources' guards)
    guards: list[dict[str, Any]]  # fired while preparing (leftover incomplete releases)


class ShardWindows(TypedDict):
    """Publish pass 1 for one shard (`tasks.publish.parts.shard_windows`): staged rows and small counts."""

    index: int
    asr_uri: str
    windows_uri: str
    window_counts: dict[str, dict[str, int]]  # split -> class -> speech windows
    windows: int
    accepted: dict[str, int]  # source -> utterances
    reject_reasons: dict[str, dict[str, int]]  # source -> reason -> count
    pid: NotRequired[int]


class PublishWeights(TypedDict):
    """Between the publish passes (`tasks.publish.parts.release_weights`): global class weights, noise."""

    weights: dict[str, dict[str, float]]  # split -> class -> class_weight
    report: dict[str, Any]
    noise_uri: str | None  # staged noise windows (each part takes those hashed to it)
    rirs: dict[str, str]
    noises: dict[str, str]
    guards: NotRequired[list[dict[str, Any]]]


class PartResult(TypedDict):
    """Publish pass 2 for one shard (`tasks.publish.parts.publish_shard`): the card's part records."""

    index: int
    records: dict[str, dict[str, Any]]  # manifest -> {"part", "path", "rows", "sha256", "content_sha256"}
    aggregates_uri: str  # the part's card aggregates (tasks.publish.aggregates), JSON under work/
    pid: NotRequired[int]
