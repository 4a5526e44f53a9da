"""Exports of a stage table for other toolkits: NeMo JSONL manifests and lhotse manifests.

Both toolkits read a range of a file (path, offset, duration) and know nothing of our recipes. A row
whose audio is already what the model hears (materialised, or an identity recipe) is exported as a
range of its file; for classifier windows the range is the window's real audio (`valid_s`; pad to
`window_s` when batching). A row with an unapplied recipe (a release built with
`augment.materialize: false`) is rendered once to a FLAC in `render_dir`; without `render_dir`
the export refuses rather than silently handing out clean audio.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from manifests import uri as fs
from manifests.audio_io import SAMPLE_RATE, RowReader, open_audio
from manifests.release import Release, check_split, naming_original, open_release, stage_name
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE

NON_SPEECH = "non_speech"  # the classifier label of windows without speech


def _value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    return v.item() if hasattr(v, "item") else v


def _direct(row: dict[str, Any]) -> bool:
    """True when the row's file range is already the audio the model hears."""
    if bool(row.get("recipe_applied")):
        return True
    recipe = RowReader.recipe(row)
    return recipe.is_identity and recipe.gain is not None


def _ranges(release: Release, stage: str, split: str | None, render_dir: str | None) -> list[dict[str, Any]]:
    """Rows with `path`, `offset`, `duration` (seconds) and `label`, rendering lazy rows when asked."""
    name = stage_name(stage)
    if name not in (ASR_STAGE, CLASSIFIER_STAGE):
        raise ValueError(f"only the asr and classifier stages can be exported (got {stage!r})")
    check_split(split)
    if render_dir is not None and not fs.is_s3(render_dir):
        render_dir = os.path.abspath(os.path.expanduser(render_dir))  # manifests must not depend on the cwd
    frame = release.table(name)
    if split is not None:
        frame = frame[frame["split"] == split]
    rows = [{k: _value(v) for k, v in r.items()} for r in frame.to_dict("records")]
    lazy = [r for r in rows if not _direct(r)]
    if lazy and render_dir is None:
        raise ValueError(
            f"{len(lazy)} {name} row(s) (e.g. {lazy[0]['row_id']}) carry an augmentation recipe that has not "
            "been applied; pass render_dir= to write them as FLAC, or build with augment.materialize: true"
        )
    reader = RowReader(release.pools, SAMPLE_RATE)
    out = []
    for row in rows:
        is_clf = name == CLASSIFIER_STAGE
        if is_clf:
            label = row["sentiment"] if row.get("speech_present") and row.get("sentiment") else NON_SPEECH
        else:
            label = row["target_text"]
        if _direct(row):
            offset = float(row.get("offset_s") or 0.0) + (float(row["start_s"]) if is_clf else 0.0)
            duration = float(row["valid_s"] if is_clf else row["duration_s"])
            path = str(row["audio_uri"])
        else:
            with naming_original(str(row["audio_uri"]), release.audio_origins):
                audio = reader.window(row)[0][: round(float(row["valid_s"]) * SAMPLE_RATE)] if is_clf \
                    else reader.utterance(row)
            path = _render(audio, str(render_dir), str(row["row_id"]))
            offset, duration = 0.0, len(audio) / SAMPLE_RATE
        out.append({**row, "path": path, "offset": round(offset, 6), "duration": round(duration, 6), "label": label})
    return out


def _render(audio: np.ndarray, render_dir: str, row_id: str) -> str:
    import io

    import soundfile as sf

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", row_id).strip("_")[:80]
    target = fs.join(render_dir, f"{safe}-{hashlib.sha256(row_id.encode()).hexdigest()[:12]}.flac")
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    fs.write_bytes(target, buf.getvalue())
    return target


def _extras(row: dict[str, Any], is_clf: bool) -> dict[str, Any]:
    keys = ["row_id", "utterance_id", "source", "split", "sentiment"]
    if is_clf:
        keys += ["class_index", "speech_present", "class_weight"]
    out = {k: row.get(k) for k in keys}
    if is_clf:
        out["class_index"] = -1 if out["class_index"] is None else int(out["class_index"])
        out["window_s"] = round(float(row["end_s"]) - float(row["start_s"]), 6)
    return out


def export_nemo(uri: str | Release, stage: str, out_path: str, split: str | None = None,
                render_dir: str | None = None) -> int:
    """Write a NeMo JSONL manifest; returns the number of lines.

    Each line: `audio_filepath`, `offset`, `duration` (seconds), `text` (ASR: the target text with
    the sentiment word; classifier: the label, `non_speech` for windows without speech), `label`
    (= text for the classifier), plus row_id, utterance_id, source, split, sentiment and, for the
    classifier, class_index (-1 non-speech), speech_present, class_weight and window_s.
    """
    release = uri if isinstance(uri, Release) else open_release(uri)
    is_clf = stage_name(stage) == CLASSIFIER_STAGE
    lines = []
    for row in _ranges(release, stage, split, render_dir):
        entry = {"audio_filepath": row["path"], "duration": row["duration"], "offset": row["offset"],
                 "text": row["label"]}
        if is_clf:
            entry["label"] = row["label"]
        entry.update(_extras(row, is_clf))
        lines.append(json.dumps(entry, ensure_ascii=False))
    fs.write_bytes(out_path, ("\n".join(lines) + ("\n" if lines else "")).encode())
    return len(lines)


def _probe(path: str) -> tuple[int, int, int]:
    """(sample_rate, frames, channels) through soundfile (ranged reads on S3)."""
    import soundfile as sf

    if not fs.is_s3(path) and not os.path.exists(path):
        raise FileNotFoundError(f"audio file not found: {path} (moved or deleted since the release was built?)")
    with open_audio(path) as src, sf.SoundFile(src) as f:
        return f.samplerate, f.frames, f.channels


def _save(manifest: Any, out_dir: str, name: str) -> None:
    """lhotse writes local files; an s3:// out_dir gets the file uploaded."""
    import tempfile

    if not fs.is_s3(out_dir):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        manifest.to_file(str(Path(out_dir, name)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        manifest.to_file(str(Path(tmp, name)))
        fs.write_bytes(fs.join(out_dir, name), Path(tmp, name).read_bytes())


def export_lhotse(uri: str | Release, stage: str, out_dir: str, split: str | None = None,
                  render_dir: str | None = None) -> Any:
    """Write `recordings.jsonl.gz` and `supervisions.jsonl.gz` under `out_dir`; return the CutSet.

    One recording per audio file, one supervision per row (`id` = row_id, `text` as in
    `export_nemo`). `custom` holds typed fields: sentiment (str or None), class_index (int, -1
    non-speech), speech_present (bool), class_weight (float), split, utterance_id, window_s. The
    returned CutSet has one cut per row (`trim_to_supervisions`). Audio is read by lhotse's
    soundfile backend (no torchcodec needed); S3 files become `url` sources.
    """
    from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.audio import AudioSource

    release = uri if isinstance(uri, Release) else open_release(uri)
    is_clf = stage_name(stage) == CLASSIFIER_STAGE
    rows = _ranges(release, stage, split, render_dir)
    recordings: dict[str, Recording] = {}
    supervisions = []
    for row in rows:
        path = row["path"]
        rec_id = f"{Path(path).stem[:60]}-{hashlib.sha256(path.encode()).hexdigest()[:10]}"
        if rec_id not in recordings:
            with naming_original(path, release.audio_origins):
                sr, frames, channels = _probe(path)
            source = AudioSource(type="url" if fs.is_s3(path) else "file", channels=list(range(channels)),
                                 source=path)
            recordings[rec_id] = Recording(id=rec_id, sources=[source], sampling_rate=sr, num_samples=frames,
                                           duration=frames / sr)
        rec = recordings[rec_id]
        duration = min(row["duration"], rec.duration - row["offset"])
        custom = {k: v for k, v in _extras(row, is_clf).items() if k not in ("row_id", "source")}
        supervisions.append(SupervisionSegment(
            id=row["row_id"], recording_id=rec_id, start=row["offset"], duration=round(duration, 6),
            channel=rec.channel_ids[0] if len(rec.channel_ids) == 1 else list(rec.channel_ids),
            text=row["label"], custom=custom,
        ))
    rec_set = RecordingSet.from_recordings(recordings.values())
    sup_set = SupervisionSet.from_segments(supervisions)
    _save(rec_set, out_dir, "recordings.jsonl.gz")
    _save(sup_set, out_dir, "supervisions.jsonl.gz")
    return CutSet.from_manifests(recordings=rec_set, supervisions=sup_set).trim_to_supervisions(
        keep_overlapping=False).to_eager()
