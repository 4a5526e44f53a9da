"""WER of an ASR labeler against human transcripts on a seeded held-out sample."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from tasks.core.audio import segment_key, sha256_uri
from tasks.core.rows import StageResult, rejects_frame
from tasks.label.transcripts import quality, whisper
from tasks.spec_labelers import WhisperSettings


def _rows(source: str, n: int, human: bool = True) -> list[dict]:
    return [{"utterance_id": f"{source}/{i:03d}", "source": source, "language": "en",
             "transcript_raw": f"words of {source} number {i}" if human else None,
             "transcript_origin": "human" if human else None} for i in range(n)]  # fmt: skip


def test_sample_is_per_source_seeded_and_human_only() -> None:
    items = pd.DataFrame(_rows("a", 30) + _rows("b", 5) + _rows("c", 10, human=False))
    chosen = quality.choose_quality_sample(items, 8, seed=1)
    picked = items.iloc[chosen]
    assert picked.groupby("source").size().to_dict() == {"a": 8, "b": 5}
    shuffled = items.sample(frac=1, random_state=3).reset_index(drop=True)  # row order does not matter
    assert set(shuffled.iloc[quality.choose_quality_sample(shuffled, 8, 1)].utterance_id) == set(picked.utterance_id)
    assert set(items.iloc[quality.choose_quality_sample(items, 8, seed=2)].utterance_id) != set(picked.utterance_id)
    assert quality.choose_quality_sample(items, 0, seed=1) == []


def test_per_shard_samples_reduce_to_the_global_sample() -> None:
    items = pd.DataFrame(_rows("a", 40))
    global_ids = set(items.iloc[quality.choose_quality_sample(items, 6, seed=5)].utterance_id)
    shards = [items.iloc[i::3].reset_index(drop=True) for i in range(3)]
    union = pd.concat([s.iloc[quality.choose_quality_sample(s, 6, seed=5)] for s in shards], ignore_index=True)
    union["asr_hypothesis"] = union["transcript_raw"]
    union["asr_hypothesis_origin"] = "whisper"
    union["transcript"] = union["transcript_raw"]
    assert len(union) == 18
    report = quality.transcript_quality(union, n=6, seed=5)
    assert report["sources"]["a"]["utterances"] == 6
    kept = union[union.utterance_id.isin(global_ids)]
    assert len(kept) == 6  # every globally chosen row is in some shard's sample


def _echo_labeler(wrong: dict[str, str], rejected: set[str]) -> object:
    """Stands in for an ASR model: returns scripted hypotheses (the input under test is quality.py)."""

    def label(frame: pd.DataFrame) -> StageResult:
        assert frame["transcript_raw"].isna().all()
        out = frame[~frame.utterance_id.isin(rejected)].copy()
        out["transcript"] = [wrong.get(u, f"words of {u.split('/')[0]} number {int(u.split('/')[1])}")
                             for u in out.utterance_id]  # fmt: skip
        out["transcript_origin"] = "whisper"
        return StageResult(out.reset_index(drop=True), rejects_frame())

    return label


def test_hypotheses_and_pooled_wer() -> None:
    items = pd.DataFrame(_rows("a", 4) + _rows("b", 2) + _rows("c", 2, human=False))
    kept = items.copy()
    kept["transcript"] = kept["transcript_raw"]
    labeler = _echo_labeler({"a/001": "words of a number one extra", "b/000": "birds of b"}, {"a/002"})
    out = quality.add_hypotheses(kept, items, 10, 13, labeler, "whisper")
    assert out["asr_hypothesis_origin"].notna().sum() == 6
    assert out.set_index("utterance_id").loc["a/002"].asr_hypothesis is None
    report = quality.transcript_quality(out, n=None, seed=13)
    a, b = report["sources"]["a"], report["sources"]["b"]
    assert (a["utterances"], a["hypotheses"], a["rejected_by_labeler"]) == (4, 3, 1)
    assert (a["word_errors"], a["reference_words"]) == (1, 15)  # one insertion over three 5-word references
    assert (b["word_errors"], b["reference_words"], b["wer"]) == (3, 10, 0.3)  # "birds" sub + 2 deletions
    assert report["overall"]["wer"] == round(4 / 25, 4)
    assert report["normalizer"]["name"] == "voicetone-en" and "c" not in report["sources"]
    assert quality.transcript_quality(kept)["overall"]["wer"] is None


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None, reason="needs espeak-ng, sox")
def test_whisper_wer_on_espeak_speech(tmp_path: Path) -> None:
    texts = ["Thank you very much for your help with the project.",
             "We need to finish this report before Friday afternoon."]  # fmt: skip
    rows = []
    for i, text in enumerate(texts):
        raw, path = tmp_path / f"{i}.raw.wav", tmp_path / f"{i}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(path)], check=True, capture_output=True)
        duration, sha = sf.info(path).duration, sha256_uri(str(path))
        rows.append({"utterance_id": f"h/{i}", "source": "h", "audio_uri": str(path), "offset_s": 0.0,
                     "duration_s": duration, "segment_key": segment_key(sha, 0.0, duration), "language": "en",
                     "transcript_raw": text.upper(), "transcript_origin": None})  # fmt: skip
    items = pd.DataFrame(rows)
    settings = WhisperSettings()
    kept = whisper.fill_missing_transcripts(items, settings, None).items
    out = quality.add_hypotheses(kept, items, 20, 13,
                                 lambda f: whisper.fill_missing_transcripts(f, settings, None), "whisper")  # fmt: skip
    assert (out["transcript_origin"] == "human").all() and out["asr_hypothesis"].notna().all()
    report = quality.transcript_quality(out)
    assert report["sources"]["h"]["hypotheses"] == 2 and report["overall"]["wer"] < 0.3
    assert report["sources"]["h"]["labelers"] == ["whisper"]
