"""A whole build through the pipeline functions, without Prefect (what `flows/build_dataset.py` wires),
for fast tests of publishing: tones with human labels, no labelers, no augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.augment import step as augment_step
from tasks.core import work
from tasks.ingest import step as ingest_step
from tasks.label import steps as label_steps
from tasks.plan import step as plan_step
from tasks.publish import step as publish_step
from tasks.spec import DatasetSpec, parse_spec
from tests.tasks.ingest.corpora.test_base import write_tone


def tone_corpus(folder: Path, rows: str = "a.wav,I am so happy,positive,spk1\nb.wav,Just a day,neutral,spk2\n") -> Path:
    """Two tones and a metadata.csv (file_name,transcript,sentiment,speaker_id) with `rows`."""
    write_tone(folder / "a.wav", 1.0, seed=1)
    write_tone(folder / "b.wav", 1.0, seed=2)
    (folder / "metadata.csv").write_text("file_name,transcript,sentiment,speaker_id\n" + rows)
    return folder


def tone_spec(corpus: Path, output: Path | str, **more: Any) -> DatasetSpec:
    return parse_spec({"name": "t", "output": str(output),
                       "sources": [{"name": "s", "kind": "folder", "path": str(corpus)}],
                       "labelers": {"transcripts": "none", "sentiment": "none"},
                       "augment": {"enabled": False}, **more})


def labelled_shards(spec: DatasetSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ingest and label as the flow's first half does: (labelled shard results, ingest results)."""
    ingest = [ingest_step.ingest_source(spec, i) for i in range(len(spec.sources))]
    labelled = []
    for uri in ingest_step.make_shards(spec, ingest):
        t = label_steps.transcripts_shard(spec, uri)
        s = label_steps.sentiment_shard(spec, t["items_uri"])
        v = label_steps.speech_shard(spec, s["items_uri"])
        labelled.append({**v, "rejects_uris": t["rejects_uris"] + s["rejects_uris"] + v["rejects_uris"]})
    return labelled, ingest


def build(spec: DatasetSpec, log: Any = work.noop, warn: Any = None) -> dict[str, Any]:
    """Every stage in order, as the flow runs them, then publish."""
    labelled, ingest = labelled_shards(spec)
    plan = plan_step.plan_stages(spec, labelled)
    augmented = [augment_step.augment_shard(spec, u) for u in plan["row_shard_uris"]]
    return publish_step.publish(spec, plan, augmented, ingest, {}, log=log, warn=warn)


def finish_inputs(spec: DatasetSpec, labelled: list[dict[str, Any]] | None = None,
                  ingest: list[dict[str, Any]] | None = None) -> tuple[Any, ...]:
    """Every stage (or from the given labelled shards and ingest results) and publish's part tasks, as the
    flow runs them: the finishing step's arguments (spec, plan, setup, weighting, written parts,
    augmented, ingest, timings)."""
    from tasks.publish import parts

    if labelled is None or ingest is None:
        labelled, ingest = labelled_shards(spec)
    plan = plan_step.plan_stages(spec, labelled)
    augmented = [augment_step.augment_shard(spec, u) for u in plan["row_shard_uris"]]
    setup = publish_step.prepare_publish(spec, plan, ingest)
    staged = [parts.shard_windows(spec, setup, shard, aug) for shard, aug in zip(plan["shards"], augmented, strict=True)]
    weighting = parts.release_weights(spec, setup, dict(plan), staged)
    written = [parts.publish_shard(spec, setup, weighting, shard, s)
               for shard, s in zip(plan["shards"], staged, strict=True)]
    return spec, plan, setup, weighting, written, augmented, ingest, {}
