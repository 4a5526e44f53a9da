"""Whisper's packing groups come from the build's items, not from the shards (tasks/label/transcripts/packing.py):
`run.shard_size` must not change pseudo-transcripts, their scores or the quality-sample hypotheses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tasks.core.shards import read_frame
from tasks.ingest import step as ingest_step
from tasks.label import steps as label_steps
from tasks.label.transcripts import packing, whisper_decode
from tasks.spec import parse_spec
from tests.flows.buildutil import seed_language_cache

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None, reason="needs espeak-ng and sox"
)

SENTENCES = [  # (text, human transcript?)
    ("The weather is nice today.", False),
    ("Please call Stella and ask her to bring these things.", False),
    ("We need to finish this report before Friday.", False),
    ("Thank you very much for your help.", True),
    ("The train was late again this morning.", False),
    ("I am so happy to see you.", True),
    ("Nothing works and I want to go home.", False),
]
COLUMNS = ["transcript_raw", "transcript", "transcript_origin", "transcript_confidence", "avg_logprob",
           "no_speech_prob", "compression_ratio", "asr_hypothesis", "asr_hypothesis_origin"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder source of espeak-ng sentences at 16 kHz; two rows carry a human transcript."""
    root = tmp_path_factory.mktemp("packing-corpus")
    lines = ["file_name,transcript,sentiment"]
    for n, (text, human) in enumerate(SENTENCES):
        raw = root / f"raw{n}.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(root / f"s{n}.wav")], check=True,
                       capture_output=True)
        raw.unlink()
        lines.append(f"s{n}.wav,{text if human else ''},neutral")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def _label(corpus: Path, output: Path, shard_size: int) -> tuple[pd.DataFrame, int]:
    """The transcripts stage of a build with this shard size: (labelled items by utterance, shards)."""
    spec = parse_spec({"name": "packing", "output": str(output), "run": {"shard_size": shard_size},
                       "sources": [{"name": "s", "kind": "folder", "path": str(corpus)}],
                       "labelers": {"transcripts": "whisper", "quality_sample_per_source": 1}})
    shards = ingest_step.make_shards(spec, [ingest_step.ingest_source(spec, 0)])
    plan_uri = label_steps.plan_transcripts(spec, shards)
    frames = [read_frame(label_steps.transcripts_shard(spec, uri, plan_uri=plan_uri)["items_uri"]) for uri in shards]
    items = pd.concat(frames, ignore_index=True).set_index("utterance_id").sort_index()
    return items[COLUMNS], len(shards)


def test_shard_size_does_not_change_transcripts_or_scores(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    decoded: list[int] = []
    real = whisper_decode.decode_group
    monkeypatch.setattr(whisper_decode, "decode_group", lambda m, g, s, mode: decoded.append(len(g)) or real(m, g, s, mode))
    default, n_default = _label(corpus, tmp_path / "default", 500)
    assert n_default == 1 and (default["transcript_origin"] == "whisper").sum() == 5
    assert default["asr_hypothesis"].notna().sum() == 1  # one human row per source is the quality sample
    for size in (1, 3):
        # the languages the first build identified (only cache/langid-*: Whisper's cache is not copied)
        seed_language_cache(tmp_path / "default", tmp_path / f"size{size}")
        other, n_shards = _label(corpus, tmp_path / f"size{size}", size)
        assert n_shards > 1
        pd.testing.assert_frame_equal(other, default, check_dtype=False, check_exact=True)  # bit for bit
    assert decoded, "the builds decode through the patched decode_group"  # else the check below is vacuous
    # The label cache stays valid across shard sizes: a build into the same output decodes nothing.
    decoded.clear()
    again, _ = _label(corpus, tmp_path / "size1", 500)
    assert decoded == []
    pd.testing.assert_frame_equal(again, default, check_dtype=False, check_exact=True)


def test_groups_follow_shards_and_capacity() -> None:
    """Every shard of every size is a contiguous run of the plan's order, so groups rarely straddle shards."""
    from tasks.core.shards import assign_shards

    ids = pd.Series([f"src/u{i:03d}" for i in range(200)])
    order = sorted(ids, key=packing.shard_order)
    for size in (1, 7, 25, 100):
        shard_of = assign_shards(pd.Series(order), size).tolist()
        changes = sum(a != b for a, b in zip(shard_of, shard_of[1:], strict=False))
        assert changes == len(set(shard_of)) - 1  # each shard is one run
    plan = pd.DataFrame({"key": [f"k{i:03d}" for i in range(200)], "utterance_id": ids, "audio_uri": "x",
                         "offset_s": 0.0, "duration_s": 4.0, "language": "en", "quality": False})
    groups = packing.assign_groups(plan, 58.0)
    sizes = groups.groupby("group").size()
    assert sizes.max() == 13 and sizes.sum() == 200  # 58 s of 4 s clips plus 0.5 s gaps
    again = packing.assign_groups(plan.sample(frac=1.0, random_state=1), 58.0)
    assert dict(zip(again["key"], again["group"], strict=True)) == dict(zip(groups["key"], groups["group"], strict=True))
