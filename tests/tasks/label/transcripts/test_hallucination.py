"""Hallucinated Whisper transcripts (issue 15 item 4): thresholds on the decoder's own signals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from manifests.schema import UTTERANCES_SCHEMA
from tasks.core.audio import segment_key, sha256_uri
from tasks.core.shards import read_frame, write_frame
from tasks.label.steps import transcripts_shard
from tasks.label.transcripts import hallucination
from tasks.spec import parse_spec
from tasks.spec_labelers import HallucinationSettings

# Numbers measured with tiny.en (docs/labelers.md): a Persian Common Voice clip declared English that
# passed the decode gates, and a LibriSpeech dev-clean clip (the weakest of the 75).
PERSIAN = {"transcript_confidence": 0.49, "avg_logprob": -1.17, "no_speech_prob": 0.18, "compression_ratio": 0.91,
           "transcript_raw": "Thank you for watching and I'll see you next time."}
ENGLISH = {"transcript_confidence": 0.63, "avg_logprob": -0.78, "no_speech_prob": 0.12, "compression_ratio": 1.62,
           "transcript_raw": "What did he mean? asked Pira."}
LOOP = {"transcript_confidence": 0.98, "avg_logprob": -0.04, "no_speech_prob": 0.3, "compression_ratio": 29.3,
        "transcript_raw": "Beep beep beep beep"}


def _frame(*rows: dict, origin: str = "whisper") -> pd.DataFrame:
    return pd.DataFrame([{"utterance_id": f"fa/{i}", "source": "fa", "language": "en", "transcript_origin": origin,
                          "sentiment_origin": "vader", **r} for i, r in enumerate(rows)])


def test_thresholds_separate_the_measured_clips() -> None:
    s = HallucinationSettings()
    assert hallucination.problems(ENGLISH, s) == []
    assert hallucination.problems(PERSIAN, s) == [
        "mean word probability 0.49 < min_word_probability 0.55", "avg_logprob -1.17 < min_avg_logprob -1"]
    assert hallucination.problems(LOOP, s) == ["compression_ratio 29.30 > max_compression_ratio 2.4"]


def test_reject_policy_makes_low_confidence_rejects_and_a_warning() -> None:
    items = _frame(PERSIAN, PERSIAN, ENGLISH)
    kept, rejects = hallucination.screen(items, HallucinationSettings())
    assert list(kept["utterance_id"]) == ["fa/2"]
    assert set(rejects["reason"]) == {"low_confidence_transcript"} and len(rejects) == 2
    assert rejects["detail"].str.startswith("hallucinated transcript").all()
    assert "language the source declares ('en')" in rejects["detail"].iloc[0]
    section, fired = hallucination.summarize(kept, [rejects], HallucinationSettings())
    assert section["by_source"]["fa"] == {"whisper_labelled": 3, "rejected_hallucinated": 2,
                                          "rejected_decode_gates": 0, "excluded_hallucinated": 0,
                                          "share_flagged": 0.6667}
    assert [(g["guard"], g["level"]) for g in fired] == [("hallucinated_transcripts", "warning")]


def test_human_transcripts_are_never_flagged_and_off_means_off() -> None:
    assert not hallucination.flagged(_frame(PERSIAN, origin="human"), HallucinationSettings()).any()
    assert not hallucination.flagged(_frame(PERSIAN), HallucinationSettings(policy="off")).any()


def test_exclude_policy_keeps_the_row_out_of_the_stages() -> None:
    items = _frame(PERSIAN, ENGLISH, {**PERSIAN, "sentiment_origin": "mapped_emotion"})
    s = HallucinationSettings(policy="exclude")
    kept, rejects = hallucination.screen(items, s)
    assert len(kept) == 3 and rejects.empty
    asr, clf = hallucination.excluded(items, s)
    assert list(asr) == [True, False, True]
    assert list(clf) == [True, False, False]  # an emotion label does not depend on the invented words


def test_a_human_emotion_label_is_never_dropped_for_a_bad_pseudo_transcript() -> None:
    acted = {**PERSIAN, "sentiment_origin": "mapped_emotion"}
    kept, rejects = hallucination.screen(_frame(acted, PERSIAN), HallucinationSettings())
    assert list(kept["utterance_id"]) == ["fa/0"] and list(rejects["input_ref"]) == ["fa/1"]
    asr, clf = hallucination.excluded(kept, HallucinationSettings())
    assert list(asr) == [True] and list(clf) == [False]  # out of ASR training, kept for the classifier


REAL = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "real"


def _real_rows(paths: list[Path], source: str) -> list[dict]:
    rows = []
    for path in paths:
        duration = sf.info(str(path)).duration
        sha = sha256_uri(str(path))
        row = dict.fromkeys(UTTERANCES_SCHEMA.names)
        row.update(utterance_id=f"{source}/{path.stem}", source=source, audio_uri=str(path), offset_s=0.0,
                   duration_s=duration, audio_sha256=sha, segment_key=segment_key(sha, 0.0, duration), language="en")
        rows.append(row)
    return rows


@pytest.mark.realdata
def test_persian_declared_english_is_flagged_and_librispeech_kept(tmp_path: Path) -> None:
    """The issue's case through the pipeline's transcripts step: Persian Common Voice clips in a source
    that says nothing about language (so `en`) mixed with LibriSpeech dev-clean. The decode gates alone
    let 4 of these 10 Persian clips through with invented English; the hallucination guard rejects them."""
    fa = sorted((REAL / "commonvoice_fa" / "clips").glob("*.mp3"))[:10]
    ls = sorted((REAL / "librispeech" / "LibriSpeech" / "dev-clean").glob("*/*/*.flac"))[:10]
    if len(fa) < 10 or len(ls) < 10:
        pytest.skip(f"real Common Voice / LibriSpeech samples not found under {REAL}")
    shard = tmp_path / "shard.parquet"
    write_frame(str(shard), pd.DataFrame(_real_rows(fa, "fa") + _real_rows(ls, "ls")))
    spec = parse_spec({"name": "t", "output": str(tmp_path / "out"), "labelers": {"quality_sample_per_source": 0},
                       "sources": [{"name": "fa", "kind": "folder", "path": str(tmp_path)},
                                   {"name": "ls", "kind": "folder", "path": str(tmp_path)}]})
    result = transcripts_shard(spec, str(shard))
    kept = read_frame(result["items_uri"])
    rejects = pd.concat([read_frame(u) for u in result["rejects_uris"]], ignore_index=True)
    assert (kept["source"] == "ls").sum() == 10, rejects.to_dict("records")  # English is never flagged
    assert set(rejects["reason"]) == {"low_confidence_transcript"} and set(rejects["source"]) == {"fa"}
    assert len(rejects) >= 8
    assert rejects["detail"].str.startswith("hallucinated transcript").sum() >= 3
    section, fired = hallucination.summarize(kept, [rejects], spec.labelers.whisper.hallucination)
    assert section["by_source"]["ls"]["share_flagged"] == 0.0
    assert [(g["guard"], g["level"], g["detail"]["source"]) for g in fired] == [
        ("hallucinated_transcripts", "warning", "fa")]
