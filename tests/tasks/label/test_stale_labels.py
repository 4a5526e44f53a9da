"""A rebuild reflects edited labels: work files are keyed by their content, and cached pseudo-labels
never stand in for a human label that appeared or changed (issue 14 item 1)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from tasks.core.label_cache import text_key
from tasks.core.shards import read_frame
from tasks.ingest.step import ingest_source, make_shards
from tasks.label.sentiment import text_classifier as tc
from tasks.label.transcripts import whisper, whisper_model
from tasks.publish.releases import release_changes
from tasks.spec import parse_spec
from tasks.spec_labelers import TextClassifierSettings, WhisperSettings
from tests.tasks.ingest.corpora.test_base import write_tone


def _spec(tmp_path: Path, corpus: Path, license: str | None = None) -> object:
    source = {"name": "s", "kind": "folder", "path": str(corpus), **({"license": license} if license else {})}
    return parse_spec({"name": "t", "output": str(tmp_path / "out"), "sources": [source]})


def _shard_rows(spec: object) -> pd.DataFrame:
    uris = make_shards(spec, [ingest_source(spec, 0)])
    return pd.concat([read_frame(u) for u in uris], ignore_index=True)


def test_make_shards_reflects_an_edited_metadata_row_and_licence(tmp_path: Path) -> None:
    corpus = tmp_path / "c"
    write_tone(corpus / "a.wav", 0.5)
    (corpus / "metadata.csv").write_text("file_name,transcript,sentiment,speaker_id\n"
                                         "a.wav,I am so happy,positive,spk1\n")
    first = _shard_rows(_spec(tmp_path, corpus))
    assert first.loc[0, ["transcript_raw", "sentiment", "speaker_id"]].tolist() == ["I am so happy", "positive", "spk1"]

    (corpus / "metadata.csv").write_text("file_name,transcript,sentiment,speaker_id\n"
                                         "a.wav,I am so angry,negative,spk2\n")
    second = _shard_rows(_spec(tmp_path, corpus))
    # Same audio, same utterance_id: before, the first shard file was found and reused.
    assert second.loc[0, "segment_key"] == first.loc[0, "segment_key"]
    assert second.loc[0, ["transcript_raw", "sentiment", "speaker_id"]].tolist() == ["I am so angry", "negative", "spk2"]

    third = _shard_rows(_spec(tmp_path, corpus, license="CC0-1.0"))
    assert third.loc[0, "license"] == "CC0-1.0"
    again = _shard_rows(_spec(tmp_path, corpus, license="CC0-1.0"))  # unchanged input: the same shard file
    assert len(list((tmp_path / "out" / "work" / "shards").iterdir())) == 3 and again.equals(third)


def _utts(**cols: object) -> pd.DataFrame:
    base = {"utterance_id": ["s/a", "s/b"], "segment_key": ["k1", "k2"], "transcript": ["i am so happy", None],
            "sentiment": ["positive", "neutral"], "speaker_id": ["spk1", None], "license": [None, None],
            "split": ["train", "train"], "transcript_origin": ["human", None],
            "sentiment_origin": ["human", "human"], "duration_s": [1.0, float("nan")]}
    return pd.DataFrame({**base, **cols})


def test_release_changes_counts_label_speaker_and_licence_edits() -> None:
    before = _utts()
    assert release_changes(before, _utts(), "r1")["changed"] == 0  # missing == missing is no change
    after = _utts(transcript=["i am so angry", None], sentiment=["negative", "neutral"])
    changes = release_changes(before, after, "r1")
    assert changes["changed"] == 1 and changes["unchanged"] == 1
    assert changes["changed_columns"] == {"transcript": 1, "sentiment": 1}
    assert changes["examples"]["changed"] == ["s/a"]
    changes = release_changes(before, _utts(speaker_id=["spk2", "spk9"], license=["CC0-1.0", "CC0-1.0"]), "r1")
    assert changes["changed"] == 2 and changes["changed_columns"] == {"speaker_id": 2, "license": 2}
    # A column the previous release did not have counts as missing there.
    changes = release_changes(before.drop(columns=["license"]), _utts(license=["CC0-1.0", None]), "r1")
    assert changes["changed"] == 1 and changes["changed_columns"] == {"license": 1}


def test_a_cached_whisper_label_never_replaces_a_human_transcript(tmp_path: Path) -> None:
    settings = WhisperSettings()
    cache = whisper.make_cache(str(tmp_path), settings)
    cache.put_many({"seg-a": {"text": "I am so happy", "confidence": 0.9, "avg_logprob": -0.2,
                              "no_speech_prob": 0.01, "compression_ratio": 1.0}})
    items = pd.DataFrame([{"utterance_id": "s/a", "source": "s", "language": "en", "segment_key": "seg-a",
                           "audio_uri": str(tmp_path / "never-read.wav"), "transcript_raw": "I am so angry",
                           "transcript": None, "transcript_origin": None}])
    row = whisper.fill_missing_transcripts(items, settings, cache).items.iloc[0]
    assert (row.transcript_raw, row.transcript_origin) == ("I am so angry", "human")
    assert "angry" in row.transcript.lower()


def _row(transcript: str, sentiment: str | None = None) -> dict[str, object]:
    return {"utterance_id": "s/a", "source": "s", "language": "en", "transcript": transcript,
            "transcript_raw": transcript, "sentiment": sentiment,
            "sentiment_origin": "human" if sentiment else None}


def test_sentiment_follows_an_edited_transcript_and_a_human_label_wins(tmp_path: Path) -> None:
    settings = TextClassifierSettings()
    cache = tc.make_cache(str(tmp_path), settings)
    first = tc.fill_missing_sentiment(pd.DataFrame([_row("i am so happy")]), settings, cache).items.iloc[0]
    assert (first.sentiment, first.sentiment_origin) == ("positive", "text_classifier")
    assert cache.get_many([text_key("i am so happy")])  # the pseudo-label is cached for that text

    # The human transcript changed: the label is recomputed from the new text, not taken from the cache.
    edited = tc.fill_missing_sentiment(pd.DataFrame([_row("i am so angry and i hate this")]), settings, cache)
    assert (edited.items.iloc[0].sentiment, edited.items.iloc[0].sentiment_origin) == ("negative", "text_classifier")
    # A human sentiment appeared: it wins over the cached pseudo-label of the same text.
    human = tc.fill_missing_sentiment(pd.DataFrame([_row("i am so happy", "negative")]), settings, cache)
    assert (human.items.iloc[0].sentiment, human.items.iloc[0].sentiment_origin) == ("negative", "human")


def test_transcript_work_files_follow_the_whisper_model_content_not_its_path(tmp_path: Path) -> None:
    """Weights replaced under the same model path: the transcripts stage runs again (it did not)."""
    from tasks.label.steps import transcripts_shard

    bundled = whisper_model.resolve_model_path("tiny.en")
    model = tmp_path / "my-whisper"
    model.mkdir()
    for item in bundled.iterdir():
        if item.name == "config.json":
            (model / item.name).write_bytes(item.read_bytes())
        else:
            (model / item.name).symlink_to(item)
    corpus = tmp_path / "c"
    write_tone(corpus / "a.wav", 0.5)
    (corpus / "metadata.csv").write_text("file_name,transcript,sentiment\na.wav,I am so happy,positive\n")
    spec = parse_spec({"name": "t", "output": str(tmp_path / "out"),
                       "sources": [{"name": "s", "kind": "folder", "path": str(corpus)}],
                       "labelers": {"whisper": {"model": str(model)}, "quality_sample_per_source": 0}})
    (shard,) = make_shards(spec, [ingest_source(spec, 0)])
    first = transcripts_shard(spec, shard)
    assert transcripts_shard(spec, shard)["reused"] is True
    (model / "config.json").write_text((model / "config.json").read_text() + "\n")  # another model, same path
    second = transcripts_shard(spec, shard)
    assert second["reused"] is False and second["items_uri"] != first["items_uri"]


def test_noise_pool_durations_follow_a_file_replaced_under_the_same_name(tmp_path: Path) -> None:
    from tasks.augment.pools import _durations

    noise = write_tone(tmp_path / "noise" / "n.wav", 1.0)
    work = str(tmp_path / "work")
    assert _durations({"n": str(noise)}, work, "noise")[0] == {"n": 1.0}
    write_tone(noise, 2.0)
    os.utime(noise, ns=(noise.stat().st_atime_ns, noise.stat().st_mtime_ns + 10**9))
    assert _durations({"n": str(noise)}, work, "noise")[0] == {"n": 2.0}  # before: 1.0 from the cache
