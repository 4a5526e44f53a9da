"""Amazon Transcribe output split back to the packed clips (staging is tested end to end in test_aws_transcribe.py)."""

from __future__ import annotations

import pytest

from tasks.label.transcripts import aws_transcribe_media as media


def test_words_go_to_the_clip_holding_their_midpoint() -> None:
    clips = [{"key": "x", "start_s": 0.0, "end_s": 2.0}, {"key": "y", "start_s": 2.5, "end_s": 4.0}]
    out = {"results": {"transcripts": [{"transcript": "hi there. bye"}], "items": [
        {"type": "pronunciation", "start_time": "0.1", "end_time": "0.5", "alternatives": [{"content": "hi", "confidence": "0.9"}]},
        {"type": "pronunciation", "start_time": "1.8", "end_time": "2.3", "alternatives": [{"content": "there", "confidence": "0.7"}]},
        {"type": "punctuation", "alternatives": [{"content": ".", "confidence": "0.0"}]},
        {"type": "pronunciation", "start_time": "2.3", "end_time": "2.9", "alternatives": [{"content": "bye", "confidence": "0.5"}]},
    ]}}  # fmt: skip
    labels = media.split_transcript(out, clips)
    assert labels["x"] == {"text": "hi there.", "confidence": pytest.approx(0.8), "num_words": 2}  # 2.05 in gap: nearer x
    assert labels["y"]["text"] == "bye" and labels["y"]["confidence"] == pytest.approx(0.5)


def test_split_of_silence_only_job_gives_no_words() -> None:
    labels = media.split_transcript({"results": {"transcripts": [{"transcript": ""}], "items": []}},
                                    [{"key": "x", "start_s": 0.0, "end_s": 1.0}])  # fmt: skip
    assert labels == {"x": {"text": "", "confidence": None, "num_words": 0}}
