"""Pipeline steps called directly (no Prefect): what they log and hand to later steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.guards import GuardError
from tasks.ingest.step import ingest_source
from tasks.spec import parse_spec
from tests.tasks.ingest.corpora.test_base import write_tone


def test_ingest_warns_once_per_source_about_unread_metadata_columns(tmp_path: Path) -> None:
    sources = []
    for name, header in (("renamed", "file_name,text,label"), ("plain", "file_name,transcript,sentiment")):
        corpus = tmp_path / name
        write_tone(corpus / "a.wav", 0.5)
        (corpus / "metadata.csv").write_text(f"{header}\na.wav,hello there,neutral\n")
        sources.append({"name": name, "kind": "folder", "path": str(corpus)})
    spec = parse_spec({"name": "t", "output": str(tmp_path / "out"), "sources": sources})
    infos: list[str] = []
    warnings: list[str] = []

    def info(msg: str, *args: object) -> None:
        infos.append(msg % args)

    def warn(msg: str, *args: object) -> None:
        warnings.append(msg % args)

    renamed = ingest_source(spec, 0, log=info, warn=warn)
    assert len(warnings) == 1 and warnings[0].startswith("ingest renamed (folder): metadata file ")
    assert "column(s) label, text are not read" in warnings[0]
    assert renamed["notes"] == [warnings[0].split(": ", 1)[1]] and renamed["found"] == 1
    plain = ingest_source(spec, 1, log=info, warn=warn)
    assert len(warnings) == 1 and plain["notes"] == []
    assert len(infos) == 2  # the found/accepted/rejected line of each source, as before


def test_every_item_rejected_at_ingest_still_publishes_a_valid_empty_release(tmp_path: Path) -> None:
    """No shards at all (nothing accepted by the adapter): plan and publish still work, without Prefect,
    when the spec allows the source to fail (otherwise source_accepted_nothing stops publish)."""
    from manifests.io import read_card, read_release, resolve_release
    from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, REJECTS, UTTERANCES
    from manifests.validate import validate_release
    from tasks.ingest.step import make_shards
    from tasks.plan.step import plan_stages
    from tasks.publish.step import publish

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "zero.wav").write_bytes(b"")
    (corpus / "metadata.csv").write_text("file_name,transcript,sentiment\nmissing.wav,hi,positive\n")
    spec = parse_spec({"name": "t", "output": str(tmp_path / "out"), "augment": {"enabled": False},
                       "sources": [{"name": "s", "kind": "folder", "path": str(corpus)}]})
    ingest = [ingest_source(spec, 0)]
    assert make_shards(spec, ingest) == []
    plan = plan_stages(spec, [])
    # DESIGN-16: no shard at all still plans one (empty) shard 0, so every manifest has a part 0
    assert [s["index"] for s in plan["shards"]] == [0] and plan["row_shard_uris"] == [plan["shards"][0]["rows_uri"]]
    augmented = [{"rows_uri": uri, "materialized": 0} for uri in plan["row_shard_uris"]]
    with pytest.raises(GuardError, match="source 's' accepted none of its 2 found item"):
        publish(spec, plan, augmented, ingest, {})
    assert not (tmp_path / "out" / "releases").exists()  # refused before anything was written
    spec.run.allow_failed_sources = ["s"]
    publish(spec, plan, augmented, ingest, {})
    report = validate_release(spec.output)
    assert report.ok, report.problems
    tables = read_release(spec.output)
    assert all(tables[n].empty for n in (UTTERANCES, ASR_STAGE, CLASSIFIER_STAGE))
    assert sorted(tables[REJECTS]["reason"]) == ["empty_audio", "missing_audio"]
    card = read_card(resolve_release(spec.output))
    assert card["asr_stage"]["empty_reason"].startswith("no utterance was accepted: all 2 found item(s)")
