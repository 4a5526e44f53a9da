"""Builds a small, valid schema-v1 release by hand, for tests of the writer, reader and validator.

`make_tables` gives six 3 s utterances of one source; `add_utterance` adds one more (any source,
split, length) with hand-written windows, and `reweight` recomputes class weights after a change,
so a test can break exactly one rule of an otherwise valid release.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from manifests import io as mio
from manifests import uri as fs
from manifests.schema import ASR_STAGE, CLASS_INDEX, CLASSIFIER_STAGE, MANIFEST_NAMES, REJECTS, UTTERANCES

SPEC = {
    "augment": {"speeds": [0.95, 1.0, 1.05], "snr_db": [0.0, 15.0], "splits": ["train"], "enabled": True},
    "segments": {"window_s": 5.0, "hop_s": 2.5, "min_last_window_s": 1.0},
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
    clf["class_weight"] = 1.0
    reweight({CLASSIFIER_STAGE: clf})
    del train
    rejects = pd.DataFrame(
        [{"source": "src", "input_ref": "/data/bad.wav", "stage": "ingest", "reason": "unreadable_audio",
          "detail": "/data/bad.wav: not a sound file"}]
    )
    return {UTTERANCES: utt, ASR_STAGE: asr, CLASSIFIER_STAGE: clf, REJECTS: rejects}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def reweight(tables: dict[str, pd.DataFrame], weight_fn=None) -> None:
    """Class weights of the speech windows, per split; default: (1/freq) scaled to mean 1.

    `weight_fn(counts) -> {class: weight}` replaces the default rule (e.g. tasks.publish.weights.class_weights).
    """
    clf = tables[CLASSIFIER_STAGE]
    speech = clf["speech_present"].astype(bool) & clf["sentiment"].notna()
    clf["class_weight"] = 1.0
    for _split, part in clf[speech].groupby("split"):
        counts = part["sentiment"].value_counts()
        if weight_fn is None:
            raw = part["sentiment"].map(1 / (counts / counts.sum()))
            clf.loc[part.index, "class_weight"] = raw / raw.mean()
        else:
            per_class = weight_fn({str(c): int(n) for c, n in counts.items()})
            clf.loc[part.index, "class_weight"] = part["sentiment"].map(per_class).astype(float)


def add_utterance(tables: dict[str, pd.DataFrame], uid: str, split: str, sentiment: str, *,
                  source: str = "src", duration: float = 3.0, windows=None, asr_variants: int = 1,
                  sentiment_origin: str = "human", speaker: str | None = None) -> None:
    """Append a consistent utterance: its row, `asr_variants` ASR rows (0 = none) and its windows.

    `windows` are (start, end, valid) tuples; by default the rule's single padded window for a
    clip up to 5 s. Call `reweight` afterwards.
    """
    utt = tables[UTTERANCES]
    row = utt.iloc[0].to_dict() | {
        "utterance_id": uid, "source": source, "audio_uri": f"/data/{uid}.wav", "duration_s": duration,
        "audio_sha256": _sha(uid), "segment_key": f"{_sha(uid)}:0.000:{duration:.3f}",
        "transcript": f"words of {uid}", "sentiment": sentiment, "sentiment_origin": sentiment_origin,
        "speaker_id": speaker or f"spk-{uid}", "split": split,
    }
    tables[UTTERANCES] = pd.concat([utt, pd.DataFrame([row])], ignore_index=True)
    base = {"utterance_id": uid, "source": source, "split": split, "sentiment": sentiment,
            "source_audio_uri": row["audio_uri"], "audio_uri": row["audio_uri"], "offset_s": 0.0,
            "duration_s": duration, "recipe_applied": False, "gain": 1.0}
    asr_rows = [base | {"row_id": f"{uid}#{v}", "speed": [1.0, 0.95, 1.05][v % 3] if split == "train" else 1.0,
                        "aug_seed": v, "target_text": f"{sentiment.capitalize()} {row['transcript']}"}
                for v in range(asr_variants)]
    if asr_rows:
        tables[ASR_STAGE] = pd.concat([tables[ASR_STAGE], pd.DataFrame(asr_rows)], ignore_index=True)
    windows = windows if windows is not None else [(0.0, 5.0, min(duration, 5.0))]
    clf_rows = [base | {"row_id": f"{uid}#0@{s:.2f}", "speed": 1.0, "aug_seed": 0, "start_s": s, "end_s": e,
                        "valid_s": v, "speech_present": True, "class_index": CLASS_INDEX[sentiment],
                        "class_weight": 1.0} for s, e, v in windows]
    tables[CLASSIFIER_STAGE] = pd.concat([tables[CLASSIFIER_STAGE], pd.DataFrame(clf_rows)], ignore_index=True)


def write_release(output: str, tables: dict[str, pd.DataFrame] | None = None, release: str = "r1",
                  found: dict[str, int] | None = None, spec: dict | None = None,
                  card_extra: dict | None = None) -> mio.ReleasePaths:
    """Write the tables and a card; `found` defaults to accepted + rejected per source (consistent)."""
    tables = tables or make_tables()
    if found is None:
        sources = pd.concat([tables[UTTERANCES]["source"], tables[REJECTS]["source"]])
        found = {str(k): int(v) for k, v in sources.value_counts().items()}
    paths = mio.release_paths(output, release)
    for name in MANIFEST_NAMES:
        mio.write_manifest(tables[name], name, paths.manifest(name))
    written = {n: mio.read_manifest(paths.manifest(n)) for n in MANIFEST_NAMES}
    card = {
        "name": "t",
        "release": release,
        "schema_version": "1",
        "content_sha256": mio.content_sha256(written, release_root=paths.root),
        "counts": {"sources": {k: {"found": v} for k, v in found.items()}},
        "spec": {**SPEC, **(spec or {})},
        **(card_extra or {}),
    }
    fs.write_bytes(paths.card_json, json.dumps(card).encode())
    mio.point_latest(output, release)
    return paths


def materialise_audio(tables: dict[str, pd.DataFrame], release_root: str, *, absolute: bool = False,
                      with_hash: bool = True) -> list[str]:
    """Give every stage row its own materialised FLAC under `<release_root>/audio/`, as publish does.

    Rows name the files relative to the release root (the current form), or by absolute path when
    `absolute` (the form releases used before); `audio_sha256` holds each file's hash unless
    `with_hash` is false (older releases had no such column). Returns the files' paths.
    """
    from pathlib import Path

    import numpy as np
    import soundfile as sf

    audio = Path(release_root) / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    written = []
    for name in (ASR_STAGE, CLASSIFIER_STAGE):
        df = tables[name]
        uris, hashes = [], []
        for i, row_id in enumerate(df["row_id"]):
            rng = np.random.default_rng(i + (0 if name == ASR_STAGE else 1000))
            t = np.arange(int(float(df["duration_s"].iloc[i]) * 16000)) / 16000
            wave = 0.3 * np.sin(2 * np.pi * (200 + 30 * i) * t) + 0.01 * rng.standard_normal(len(t))
            file_name = f"{name}-{i}-{_sha(str(row_id))[:8]}.flac"
            path = audio / file_name
            sf.write(path, wave.astype(np.float32), 16000, format="FLAC", subtype="PCM_16")
            written.append(str(path))
            uris.append(str(path) if absolute else f"audio/{file_name}")
            hashes.append(hashlib.sha256(path.read_bytes()).hexdigest())
        df["audio_uri"] = uris
        df["recipe_applied"] = True
        df["offset_s"] = 0.0
        if with_hash:
            df["audio_sha256"] = hashes
        elif "audio_sha256" in df.columns:
            del df["audio_sha256"]
    return written


def split_parts(tables: dict[str, pd.DataFrame], n_parts: int) -> list[dict[str, pd.DataFrame]]:
    """The tables cut into `n_parts` parts as publish cuts them: an utterance and its stage rows in the
    part its id hashes to; rejects by `input_ref`, windows of no utterance by `row_id`."""
    from manifests.parts import part_of

    utt_ids = set(tables[UTTERANCES]["utterance_id"])

    def where(name: str, df: pd.DataFrame) -> pd.Series:
        if name == REJECTS:
            keys = df["input_ref"]
        elif name == UTTERANCES:
            keys = df["utterance_id"]
        else:
            keys = df["utterance_id"].where(df["utterance_id"].isin(utt_ids), df["row_id"])
        return keys.map(lambda k: part_of(k, n_parts)) if len(df) else pd.Series(dtype="int64")

    placed = {name: where(name, df) for name, df in tables.items()}
    return [{name: df[placed[name] == i] if len(df) else df for name, df in tables.items()} for i in range(n_parts)]


def write_release_v2(output: str, tables: dict[str, pd.DataFrame] | None = None, release: str = "r2",
                     n_parts: int = 3, spec: dict | None = None) -> mio.ReleasePaths:
    """The same release as `write_release`, in the schema-version-2 layout (a folder of parts per manifest)."""
    from manifests.parts import manifest_section, release_digest, write_part

    tables = tables or make_tables()
    sources = pd.concat([tables[UTTERANCES]["source"], tables[REJECTS]["source"]])
    found = {str(k): int(v) for k, v in sources.value_counts().items()}
    paths = mio.release_paths(output, release)
    records: dict[str, list[dict]] = {name: [] for name in MANIFEST_NAMES}
    for i, part in enumerate(split_parts(tables, n_parts)):
        for name in MANIFEST_NAMES:
            records[name].append(write_part(part[name], name, paths.root, i, release_name=release))
    card = {
        "name": "t",
        "release": release,
        "schema_version": "2",
        "content_sha256": release_digest({n: [r["content_sha256"] for r in records[n]] for n in MANIFEST_NAMES}),
        "manifests": {n: manifest_section(records[n]) for n in MANIFEST_NAMES},
        "counts": {"sources": {k: {"found": v} for k, v in found.items()}},
        "spec": {**SPEC, **(spec or {})},
    }
    fs.write_bytes(paths.card_json, json.dumps(card).encode())
    mio.point_latest(output, release)
    return paths
