"""Builds a small, valid schema-v1 release by hand, for tests of the writer, reader and validator."""

from __future__ import annotations

import json

import pandas as pd

from manifests import io as mio
from manifests import uri as fs
from manifests.schema import ASR_STAGE, CLASS_INDEX, CLASSIFIER_STAGE, MANIFEST_NAMES, REJECTS, UTTERANCES

SPEC = {
    "augment": {"speeds": [0.95, 1.0, 1.05], "snr_db": [0.0, 15.0], "splits": ["train"], "enabled": True},
    "segments": {"window_s": 5.0, "hop_s": 2.5},
    "weights": {"power": 1.0, "max_weight": None},
}


def make_tables() -> dict[str, pd.DataFrame]:
    sentiments = ["negative", "neutral", "neutral", "positive", "neutral", "negative"]
    splits = ["train", "train", "train", "train", "dev", "test"]
    utt = pd.DataFrame(
        {
            "utterance_id": [f"src/u{i}" for i in range(6)],
            "source": "src",
            "corpus": "folder",
            "audio_uri": [f"/data/u{i}.wav" for i in range(6)],
            "offset_s": 0.0,
            "duration_s": 3.0,
            "sample_rate": 16000,
            "num_channels": 1,
            "audio_sha256": [f"{i:064x}" for i in range(6)],
            "segment_key": [f"{i:064x}:0.000:3.000" for i in range(6)],
            "language": "en",
            "transcript": [f"sentence {i}" for i in range(6)],
            "transcript_raw": [f"Sentence {i}." for i in range(6)],
            "transcript_origin": "human",
            "sentiment": sentiments,
            "sentiment_origin": "human",
            "speaker_id": [f"s{i}" for i in range(6)],
            "split": splits,
        }
    )
    train = utt[utt["split"] == "train"]
    # Uniform ASR train: one per class (neutral undersampled), dev/test natural.
    chosen = ["src/u0", "src/u1", "src/u3", "src/u4", "src/u5"]
    asr_src = utt[utt["utterance_id"].isin(chosen)]
    asr = pd.DataFrame(
        {
            "row_id": asr_src["utterance_id"] + "#0",
            "utterance_id": asr_src["utterance_id"],
            "source": "src",
            "split": asr_src["split"],
            "sentiment": asr_src["sentiment"],
            "source_audio_uri": asr_src["audio_uri"],
            "audio_uri": asr_src["audio_uri"],
            "offset_s": 0.0,
            "duration_s": 3.0,
            "recipe_applied": False,
            "speed": [1.05 if s == "train" else 1.0 for s in asr_src["split"]],
            "gain": 1.0,
            "aug_seed": 7,
            "target_text": asr_src["sentiment"].str.capitalize() + " " + asr_src["transcript"],
        }
    )
    clf = pd.DataFrame(
        {
            "row_id": utt["utterance_id"] + "#0@0.00",
            "utterance_id": utt["utterance_id"],
            "source": "src",
            "split": utt["split"],
            "sentiment": utt["sentiment"],
            "source_audio_uri": utt["audio_uri"],
            "audio_uri": utt["audio_uri"],
            "offset_s": 0.0,
            "duration_s": 3.0,
            "recipe_applied": False,
            "speed": 1.0,
            "gain": 1.0,
            "aug_seed": 0,
            "start_s": 0.0,
            "end_s": 5.0,
            "valid_s": 3.0,
            "speech_present": True,
            "class_index": utt["sentiment"].map(CLASS_INDEX),
        }
    )
    weights = []
    for _split, part in clf.groupby("split"):
        freq = part["sentiment"].value_counts(normalize=True)
        raw = part["sentiment"].map(1 / freq)
        weights.append(raw / raw.mean())
    clf["class_weight"] = pd.concat(weights).sort_index()
    del train
    rejects = pd.DataFrame(
        [{"source": "src", "input_ref": "/data/bad.wav", "stage": "ingest", "reason": "unreadable_audio",
          "detail": "/data/bad.wav: not a sound file"}]
    )
    return {UTTERANCES: utt, ASR_STAGE: asr, CLASSIFIER_STAGE: clf, REJECTS: rejects}


def write_release(output: str, tables: dict[str, pd.DataFrame] | None = None, release: str = "r1",
                  found: dict[str, int] | None = None) -> mio.ReleasePaths:
    tables = tables or make_tables()
    paths = mio.release_paths(output, release)
    for name in MANIFEST_NAMES:
        mio.write_manifest(tables[name], name, paths.manifest(name))
    written = {n: mio.read_manifest(paths.manifest(n)) for n in MANIFEST_NAMES}
    card = {
        "name": "t",
        "release": release,
        "schema_version": "1",
        "content_sha256": mio.content_sha256(written, release_root=paths.root),
        "counts": {"sources": {k: {"found": v} for k, v in (found or {"src": 7}).items()}},
        "spec": SPEC,
    }
    fs.write_bytes(paths.card_json, json.dumps(card).encode())
    mio.point_latest(output, release)
    return paths
