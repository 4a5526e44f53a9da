"""NeMo JSONL and lhotse exports: ranges, labels, rendering of lazy rows, read back by lhotse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from manifests.dataset import AsrDataset, ClassifierDataset
from manifests.export import NON_SPEECH, export_lhotse, export_nemo
from manifests.release import open_release


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_nemo_classifier_lines(small_release: Path, tmp_path: Path) -> None:
    out = tmp_path / "clf.jsonl"
    assert export_nemo(str(small_release), "classifier", str(out)) == 6
    lines = _lines(out)
    frame = open_release(str(small_release)).classifier
    for line, row in zip(lines, frame.itertuples(), strict=True):
        assert line["audio_filepath"] == row.audio_uri and line["offset"] == 0.0 and line["duration"] == 3.0
        assert line["text"] == line["label"] == row.sentiment and line["class_index"] == row.class_index
        assert line["speech_present"] is True and line["class_weight"] == pytest.approx(row.class_weight)
        assert line["window_s"] == 5.0 and line["row_id"] == row.row_id


def test_nemo_refuses_unapplied_recipes_unless_rendered(small_release: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="render_dir"):
        export_nemo(str(small_release), "asr", str(tmp_path / "asr.jsonl"))
    n = export_nemo(str(small_release), "asr", str(tmp_path / "asr.jsonl"), render_dir=str(tmp_path / "r"))
    lines = _lines(tmp_path / "asr.jsonl")
    data = AsrDataset(str(small_release), split=None)
    assert n == len(data) == len(lines)
    for line, i in zip(lines, range(len(data)), strict=True):
        expected = data[i]["waveform"].numpy()
        assert line["text"] == data.records[i]["target_text"]
        assert line["duration"] == pytest.approx(len(expected) / 16000, abs=1e-6)
        if data.records[i]["speed"] != 1.0:  # rendered: the file is exactly the augmented utterance
            assert line["audio_filepath"].startswith(str(tmp_path / "r")) and line["offset"] == 0.0
            audio, _ = sf.read(line["audio_filepath"], dtype="float32")
            assert np.max(np.abs(audio - expected)) < 1e-3
        else:
            assert line["audio_filepath"] == data.records[i]["audio_uri"]


def test_lhotse_manifests_load_back_into_a_cutset(small_release: Path, tmp_path: Path) -> None:
    from lhotse import CutSet, RecordingSet, SupervisionSet, load_manifest

    cuts = export_lhotse(str(small_release), "classifier", str(tmp_path / "lh"))
    recordings = load_manifest(tmp_path / "lh" / "recordings.jsonl.gz")
    supervisions = load_manifest(tmp_path / "lh" / "supervisions.jsonl.gz")
    assert isinstance(recordings, RecordingSet) and isinstance(supervisions, SupervisionSet)
    assert len(recordings) == 6 and len(supervisions) == 6
    loaded = CutSet.from_manifests(recordings=recordings, supervisions=supervisions).trim_to_supervisions(
        keep_overlapping=False).to_eager()
    assert sorted(c.supervisions[0].id for c in loaded) == sorted(c.supervisions[0].id for c in cuts)
    data = ClassifierDataset(str(small_release), split=None)
    by_id = {r["row_id"]: i for i, r in enumerate(data.records)}
    for cut in loaded:
        sup = cut.supervisions[0]
        assert sup.custom["sentiment"] == sup.text and isinstance(sup.custom["class_index"], int)
        assert isinstance(sup.custom["speech_present"], bool) and isinstance(sup.custom["class_weight"], float)
        audio = cut.resample(16000).load_audio()  # lhotse's soundfile backend: no torchcodec needed
        assert audio.shape[0] == 2  # the stereo source's two channels
        mono = audio.mean(axis=0)
        ours = data[by_id[sup.id]]["waveform"].numpy()[: len(mono)]
        assert len(mono) == 3 * 16000 and np.corrcoef(mono, ours)[0, 1] > 0.99


def test_demo_exports(materialized_release: Path, lazy_release: Path, tmp_path: Path) -> None:
    n = export_nemo(str(materialized_release), "classifier", str(tmp_path / "clf.jsonl"))
    lines = _lines(tmp_path / "clf.jsonl")
    assert n == len(open_release(str(materialized_release)).classifier)
    non_speech = [x for x in lines if not x["speech_present"]]
    assert non_speech and all(x["label"] == NON_SPEECH and x["class_index"] == -1 for x in non_speech)
    cuts = export_lhotse(str(lazy_release), "asr", str(tmp_path / "lh"), split="train",
                         render_dir=str(tmp_path / "render"))
    cut = next(c for c in cuts if c.recording.sources[0].source.startswith(str(tmp_path / "render")))
    assert cut.sampling_rate == 16000 and cut.load_audio().shape[1] == round(cut.duration * 16000)
    assert cut.supervisions[0].text.split(" ", 1)[0] in {"Negative", "Neutral", "Positive"}
