"""Empty shards: a stage file may hold no rows, and every later stage must still work (issue 14, item 9)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from manifests.io import read_card, read_release, resolve_release
from manifests.schema import ASR_STAGE, REJECTS, UTTERANCES
from manifests.validate import validate_release
from tasks.augment import step as augment_step
from tasks.core.shards import read_frame, write_frame
from tasks.ingest import step as ingest_step
from tasks.ingest.corpora.base import utterances_frame
from tasks.label import steps as label_steps
from tasks.plan import step as plan_step
from tasks.publish import step as publish_step
from tasks.spec import parse_spec


def _silent_corpus(path: Path) -> Path:
    path.mkdir(parents=True)
    sf.write(path / "silence.wav", np.zeros(32000, dtype=np.float32), 16000, subtype="PCM_16")
    return path


def test_whisper_rejecting_every_item_of_a_shard_still_publishes(tmp_path: Path) -> None:
    """One 2 s silent WAV, default spec: Whisper rejects it, and sentiment/speech/plan/publish go on."""
    corpus = _silent_corpus(tmp_path / "c")
    # the source accepts nothing, so it must be allowed to fail (run.allow_failed_sources, #15.3)
    spec = parse_spec({"name": "t", "output": str(tmp_path / "out"), "run": {"allow_failed_sources": ["s"]},
                       "sources": [{"name": "s", "kind": "folder", "path": str(corpus)}]})
    ingest = [ingest_step.ingest_source(spec, 0)]
    shards = ingest_step.make_shards(spec, ingest)
    assert len(shards) == 1
    result = label_steps.transcripts_shard(spec, shards[0])
    assert read_frame(result["items_uri"]).empty
    rejects = list(result["rejects_uris"])
    for stage in (label_steps.sentiment_shard, label_steps.speech_shard):
        result = stage(spec, result["items_uri"])  # used to raise KeyError: 'segment_key'
        rejects += result["rejects_uris"]
        items = read_frame(result["items_uri"])
        assert items.empty and "segment_key" in items.columns
    plan = plan_step.plan_stages(spec, [{**result, "rejects_uris": rejects}])
    augmented = [augment_step.augment_shard(spec, u) for u in plan["row_shard_uris"]]
    publish_step.publish(spec, plan, augmented, ingest, {})
    report = validate_release(spec.output)
    assert report.ok, report.problems
    tables = read_release(spec.output)
    assert tables[UTTERANCES].empty and tables[ASR_STAGE].empty
    assert tables[REJECTS]["reason"].tolist() == ["low_confidence_transcript"]
    assert read_card(resolve_release(spec.output))["asr_stage"]["empty_reason"]


def test_every_stage_function_accepts_an_empty_shard(tmp_path: Path) -> None:
    """Each per-shard stage, and augment, given a shard file with the columns and no row."""
    spec = parse_spec({"name": "t", "output": str(tmp_path / "out"),
                       "sources": [{"name": "s", "kind": "folder", "path": str(tmp_path)}]})
    shard = tmp_path / "empty.parquet"
    write_frame(str(shard), utterances_frame([]))
    uri = str(shard)
    for stage in (label_steps.transcripts_shard, label_steps.sentiment_shard, label_steps.speech_shard):
        result = stage(spec, uri)
        items = read_frame(result["items_uri"])
        assert items.empty
        assert {"utterance_id", "segment_key", "transcript", "sentiment"} <= set(items.columns)
        uri = result["items_uri"]
    rows = publish_step._empty_stage_rows(utterances_frame([]))
    rows_uri = str(tmp_path / "rows-0000.parquet")
    write_frame(rows_uri, rows)
    out = augment_step.augment_shard(spec, rows_uri)
    assert out["materialized"] == 0 and read_frame(out["rows_uri"]).empty


def test_text_classifier_keeps_the_columns_of_an_empty_frame() -> None:
    from tasks.label.sentiment.text_classifier import fill_missing_sentiment
    from tasks.spec_labelers import TextClassifierSettings

    result = fill_missing_sentiment(utterances_frame([]), TextClassifierSettings(), None)
    assert result.items.empty and "segment_key" in result.items.columns
    assert isinstance(result.items, pd.DataFrame)
