"""Spec validation messages for the mistakes people make most."""

from __future__ import annotations

import pytest

from tasks.spec import SpecError, parse_spec

BASE = {"name": "x", "output": "/tmp/x", "sources": [{"name": "s", "kind": "folder", "path": "/tmp/s"}]}


@pytest.mark.parametrize("kind", ["vader", "trained", "hf_model"])
def test_a_classifier_kind_as_the_sentiment_labeler_says_where_it_goes(kind):
    with pytest.raises(SpecError) as err:
        parse_spec({**BASE, "labelers": {"sentiment": kind}})
    message = str(err.value)
    assert "labelers.sentiment" in message
    assert "set `sentiment: text_classifier` and `text_classifier: {kind: " + kind + "}`" in message


def test_faster_whisper_as_the_transcript_labeler_points_at_whisper():
    with pytest.raises(SpecError, match=r"the local Whisper labeler is `transcripts: whisper`"):
        parse_spec({**BASE, "labelers": {"transcripts": "faster-whisper"}})


def test_the_right_spelling_still_parses():
    spec = parse_spec({**BASE, "labelers": {"sentiment": "text_classifier", "text_classifier": {"kind": "trained"}}})
    assert spec.labelers.text_classifier.kind == "trained"
