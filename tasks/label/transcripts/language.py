"""Language identification at ingest: the audio, not a default, says which language a row is in.

Why at ingest: every later stage depends on the language (Whisper's decoding language, the packing
plan's groups, the normaliser, which sentiment labeler may label the row), so it must be known
before the shards are made.

Rule (docs/labelers.md#language-identification):
- A row whose source declares a language (the corpus, its metadata, `sources[].language` or the
  spec's top-level `language`) keeps it: ``language_origin = declared``.
- A row without one gets the language the multilingual Whisper (`labelers.language_id.model`,
  default the bundled ``base``) detects on its first 30 s (`WhisperModel.detect_language`):
  ``language_origin = detected``. With ``scope: source`` (default) that is the language with the
  highest mean probability over the source's undeclared rows, unless the row's own detection is at
  least ``mismatch_min_probability`` sure of another one: Whisper base is unsure on short clips (on
  the Common Voice Persian sample of 1-5 s clips only 37 of 83 are `fa` clip by clip, with Arabic,
  English and Hebrew the usual wrong guesses), while a folder is nearly always one language.
  ``scope: utterance`` takes each row's own top language. This holds whatever `labelers.whisper.model` is: an English-only
  transcription model (tiny.en) then rejects the non-English rows as ``unsupported_language``
  instead of inventing English for them.
- With ``check_declared`` (default) declared rows are checked too: when detection puts at least
  ``mismatch_min_probability`` (default 0.99: base is wrongly up to
  0.982 sure on short real Persian clips) on another language, ``mismatch_policy: reject``
  (default) rejects the row as ``language_mismatch`` (both languages in the detail), ``keep`` keeps
  the declared language. Either way a `language_mismatch` guard counts them.
- ``language_probability``: the detector's probability of the row's final language (for a declared
  row, of the declared one), null when nothing was detected.

Detections are cached in the label cache (labeler ``langid-<model>``, keyed by segment key).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from tasks.core import guards
from tasks.core.label_cache import cacheable, clip_key
from tasks.core.rows import reject_row, rejects_frame
from tasks.label.transcripts.common import has_text
from tasks.label.transcripts.normalize import base_language
from tasks.spec_labelers import LanguageIdSettings, WhisperSettings

STAGE = "ingest"
WINDOW_S = 30.0  # Whisper's encoder window: detection looks at the first 30 s
SAMPLE_RATE = 16000
LANGID_VERSION = "1"


def preflight_problems(spec: Any) -> list[str]:
    """The detection model must load (resolve, checksum) before any work: exit 2, not a failed ingest."""
    from tasks.label.transcripts import whisper_model

    try:
        path = whisper_model.resolve_model_path(spec.labelers.language_id.model)
    except whisper_model.WhisperModelError as err:
        return [f"  - labelers.language_id.model: {err}"]
    if whisper_model.is_english_only(detector_settings(spec.labelers.language_id, spec.labelers.whisper)):
        return [f"  - labelers.language_id.model: {str(path)!r} is English-only; language identification needs a "
                "multilingual model (the bundled 'base')"]
    return []


def detector_settings(lid: LanguageIdSettings, whisper: WhisperSettings) -> WhisperSettings:
    """The transcription settings (device, threads, compute type) with the detection model."""
    return whisper.model_copy(update={"model": lid.model})


def _cache(root_uri: str | None, settings: WhisperSettings) -> Any:
    if root_uri is None:
        return None
    from tasks.core.label_cache import LabelCache
    from tasks.label.transcripts import whisper_model

    path = whisper_model.resolve_model_path(settings.model)
    cache_settings = {"model": whisper_model.model_id(settings), "model_fingerprint": whisper_model.model_fingerprint(path),
                      "compute_type": settings.compute_type, "window_s": WINDOW_S, "version": LANGID_VERSION}
    return LabelCache.shared(root_uri, f"langid-{whisper_model.model_id(settings)}", cache_settings)


def detect_audio(audio: np.ndarray, settings: WhisperSettings) -> dict[str, float]:
    """Language -> probability for one 16 kHz mono clip (first 30 s), by the multilingual model."""
    from tasks.label.transcripts import whisper_model

    model = whisper_model.get_model(settings)
    if not model.model.is_multilingual:
        raise whisper_model.WhisperModelError(
            f"labelers.language_id.model {settings.model!r} is English-only; language identification needs a "
            "multilingual model (the bundled 'base')"
        )
    _, _, probs = model.detect_language(audio=audio[: int(WINDOW_S * SAMPLE_RATE)])
    return {str(lang): float(p) for lang, p in probs}


def _label(probs: dict[str, float]) -> dict[str, Any]:
    top = max(probs, key=lambda k: probs[k])
    kept = {k: round(v, 5) for k, v in sorted(probs.items(), key=lambda kv: -kv[1])[:10]}
    return {"language": top, "probability": probs[top], "top": json.dumps(kept, sort_keys=True)}


def identify(
    items: pd.DataFrame, lid: LanguageIdSettings, whisper_settings: WhisperSettings, cache_root: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """(kept items with language, language_origin, language_probability; rejects; guards)."""
    from tasks.core.audio import AudioError, read_audio

    items = items.copy().reset_index(drop=True)
    if "language" not in items.columns:
        items["language"] = None
    declared = [has_text(v) for v in items["language"]]
    items["language"] = items["language"].astype(object)
    items["language_origin"] = pd.Series(["declared" if d else "detected" for d in declared], dtype=object)
    items["language_probability"] = np.nan
    todo = [i for i, d in enumerate(declared) if not d or lid.check_declared]
    if not len(items) or not todo:
        return items, rejects_frame(), _guards(items, [], lid)
    settings = detector_settings(lid, whisper_settings)
    cache = _cache(cache_root, settings)
    keys = {i: clip_key(items.at[i, "segment_key"], items.at[i, "utterance_id"]) for i in todo}
    found = cache.get_many(cacheable(keys.values())) if cache is not None else {}
    rejects, rejected, new = [], set(), {}
    if any(k not in found for k in keys.values()):
        from tasks.core.threads import pin_native_threads

        pin_native_threads()  # numpy's BLAS computes the mel spectrogram: see tasks/threads.py
    for i in todo:
        if keys[i] in found or keys[i] in new:
            continue
        row = items.iloc[i]
        duration = row.get("duration_s")
        duration = None if duration is None or pd.isna(duration) else min(float(duration), WINDOW_S)
        try:
            audio = read_audio(str(row["audio_uri"]), offset_s=float(row.get("offset_s") or 0.0),
                               duration_s=duration, target_sr=SAMPLE_RATE, mono=True)  # fmt: skip
        except AudioError as err:
            rejects.append(reject_row(str(row["source"]), str(row["utterance_id"]), STAGE, "unreadable_audio",
                                      f"{row['utterance_id']}: language identification cannot read it: {err}"))
            rejected.add(i)
            continue
        new[keys[i]] = _label(detect_audio(audio, settings))
    if cache is not None and new:
        cache.put_many({k: new[k] for k in cacheable(new)})
    found.update(new)
    mismatches: list[dict[str, Any]] = []
    majority = _source_languages(items, [i for i in todo if not declared[i] and i not in rejected], found, keys)
    for i in todo:
        if i in rejected:
            continue
        label = found[keys[i]]
        probs = json.loads(label["top"])
        if not declared[i]:
            chosen = label["language"]
            if lid.scope == "source" and not (float(label["probability"]) >= lid.mismatch_min_probability):
                chosen = majority[str(items.at[i, "source"])]
            items.at[i, "language"] = chosen
            items.at[i, "language_probability"] = float(probs.get(chosen, 0.0))
            continue
        mine = base_language(items.at[i, "language"])
        items.at[i, "language_probability"] = float(probs.get(mine, 0.0))
        if label["language"] != mine and float(label["probability"]) >= lid.mismatch_min_probability:
            utt = str(items.at[i, "utterance_id"])
            mismatches.append({"utterance_id": utt, "declared": mine, "detected": label["language"]})
            if lid.mismatch_policy == "reject":
                rejects.append(reject_row(
                    str(items.at[i, "source"]), utt, STAGE, "language_mismatch",
                    f"{utt}: declared language {mine!r} but the audio is {label['language']!r} (probability "
                    f"{float(label['probability']):.2f} >= {lid.mismatch_min_probability}); fix the declared "
                    "language, or set labelers.language_id.mismatch_policy: keep"))  # fmt: skip
                rejected.add(i)
    kept = items.drop(index=sorted(rejected)).reset_index(drop=True)
    return kept, rejects_frame(rejects), _guards(kept, mismatches, lid)


def _source_languages(items: pd.DataFrame, rows: list[int], found: dict[str, Any], keys: dict[int, str]) -> dict[str, str]:
    """Per source, the language with the highest mean probability over its undeclared rows."""
    sums: dict[str, dict[str, float]] = {}
    for i in rows:
        acc = sums.setdefault(str(items.at[i, "source"]), {})
        for lang, p in json.loads(found[keys[i]]["top"]).items():
            acc[lang] = acc.get(lang, 0.0) + float(p)
    return {src: max(sorted(acc), key=lambda k: acc[k]) for src, acc in sums.items()}


def _guards(items: pd.DataFrame, mismatches: list[dict[str, Any]], lid: LanguageIdSettings) -> list[dict[str, Any]]:
    out = []
    detected = items[items["language_origin"] == "detected"] if len(items) else items
    if len(detected):
        counts = {str(k): int(v) for k, v in detected["language"].value_counts().sort_index().items()}
        out.append(guards.guard("language_detected", f"{len(detected)} utterance(s) without a declared language: "
                                f"detected {counts}", level="info", counts=counts))  # fmt: skip
    if mismatches:
        pairs: dict[str, int] = {}
        for m in mismatches:
            pairs[f"{m['declared']}->{m['detected']}"] = pairs.get(f"{m['declared']}->{m['detected']}", 0) + 1
        action = "rejected as language_mismatch" if lid.mismatch_policy == "reject" else "kept (mismatch_policy: keep)"
        out.append(guards.guard("language_mismatch", f"{len(mismatches)} utterance(s) whose declared language the "
                                f"audio contradicts ({pairs}): {action}", level="warning", counts=pairs,
                                examples=mismatches[:5]))  # fmt: skip
    return out


def card_section(utterances: pd.DataFrame) -> dict[str, Any]:
    """The card's `languages`: utterances per language and per origin, and how sure detection was."""
    if not len(utterances) or "language" not in utterances.columns:
        return {"by_language": {}, "by_origin": {}}
    origin = utterances["language_origin"] if "language_origin" in utterances.columns else None
    out: dict[str, Any] = {
        "by_language": {str(k): int(v) for k, v in utterances["language"].fillna("?").value_counts().sort_index().items()},
        "by_origin": {} if origin is None else {str(k): int(v) for k, v in origin.fillna("?").value_counts().sort_index().items()},
    }  # fmt: skip
    if origin is not None and "language_probability" in utterances.columns:
        probs = utterances.loc[origin == "detected", "language_probability"].dropna()
        if len(probs):
            out["detected_probability_median"] = round(float(probs.median()), 4)
            out["detected_probability_min"] = round(float(probs.min()), 4)
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
