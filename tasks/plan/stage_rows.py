"""Turn accepted utterances into the rows of the two training stages.

A stage row is an utterance *variant*: (utterance, variant number) identifies one augmentation recipe.
The ASR stage uses the balanced sample (oversampled repeats are new variants, so never byte-identical
duplicates); the classifier stage uses every accepted utterance once (variant 0, shared with the ASR
stage, so a materialised file serves both) and windows it in utterance time.
"""

from __future__ import annotations

import pandas as pd

from manifests.augmentation import Recipe
from manifests.schema import CLASS_INDEX

RECIPE_COLUMNS = ["speed", "rir_id", "noise_id", "noise_offset_s", "snr_db", "gain", "aug_seed"]
SR = 16000


def recipe_key(utterance_id: str, variant: int) -> str:
    """Row id of an utterance variant; the augmentation RNG is keyed by it."""
    return f"{utterance_id}#{int(variant)}"


def target_text(sentiment: str, transcript: str) -> str:
    """The ASR-stage target: the sentiment word capitalised, one space, the transcript."""
    return f"{sentiment.capitalize()} {transcript}"


def utterance_duration_after(duration_s: float, speed: float) -> float:
    """Length in utterance time: the recipe's resampling makes round(n / speed) samples."""
    n_in = round(duration_s * SR)
    return round(n_in / speed) / SR


def variant_rows(utterances: pd.DataFrame, variants: pd.DataFrame, recipes: dict[str, Recipe]) -> pd.DataFrame:
    """Stage rows (one per utterance variant) with the recipe and the clean source segment.

    `variants` has columns utterance_id, variant. audio_uri points at the source until the
    materialiser replaces it with an augmented file.
    """
    merged = variants.merge(utterances, on="utterance_id", how="left", validate="many_to_one")
    rows = pd.DataFrame(
        {
            "row_id": [recipe_key(u, v) for u, v in zip(merged["utterance_id"].tolist(), merged["variant"].tolist(),
                                                         strict=True)],
            "utterance_id": merged["utterance_id"],
            "variant": merged["variant"].astype(int),
            "source": merged["source"],
            "split": merged["split"],
            "sentiment": merged["sentiment"],
            "transcript": merged["transcript"],
            "source_audio_uri": merged["audio_uri"],
            "audio_uri": merged["audio_uri"],
            "offset_s": merged["offset_s"].astype(float),
            "duration_s": merged["duration_s"].astype(float),
            "recipe_applied": False,
            "sentiment_origin": merged["sentiment_origin"],
            "transcript_origin": merged["transcript_origin"],
        }
    )
    chosen = [recipes[rid] for rid in rows["row_id"].tolist()]
    for c in RECIPE_COLUMNS:  # the fields `Recipe.to_row` gives, a column at a time
        rows[c] = [getattr(r, c) for r in chosen]
    return rows


def asr_stage_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """ASR-stage manifest rows from (possibly materialised) variant rows."""
    out = rows.copy()
    out["target_text"] = [target_text(s, t) for s, t in zip(out["sentiment"].tolist(), out["transcript"].tolist(),
                                                                  strict=True)]
    return out.drop(columns=["transcript", "variant"], errors="ignore").reset_index(drop=True)


def classifier_input_rows(rows: pd.DataFrame, speech: pd.Series) -> pd.DataFrame:
    """Utterance-level rows for windowing: duration in utterance time plus the VAD intervals.

    `speech` maps utterance_id -> list of (start, end) speech intervals in source time of the clean
    utterance (relative to its offset).
    """
    out = rows.copy()
    out["source_duration_s"] = out["duration_s"]
    # A materialised file already is the utterance in utterance time; a lazy row still needs the
    # recipe's speed applied to its source duration.
    out["duration_s"] = [
        d if applied else utterance_duration_after(d, s)
        for d, s, applied in zip(out["source_duration_s"].tolist(), out["speed"].tolist(),
                                 out["recipe_applied"].tolist(), strict=True)
    ]  # tolist: the values iteration yields, without iterating Arrow-backed columns value by value
    lookup = dict(zip(speech.index.tolist(), speech.tolist(), strict=True))  # Series.get costs ~7 us a call
    out["speech_intervals"] = [list(lookup.get(u, [])) for u in out["utterance_id"].tolist()]
    return out


def finish_classifier_rows(windows: pd.DataFrame, weights: pd.Series) -> pd.DataFrame:
    out = windows.copy()
    if "source_duration_s" in out.columns:
        # offset_s/duration_s are in audio_uri's time (the contract); windows were cut in utterance time.
        # Noise examples were never utterance rows: their duration_s already is their cut.
        out["duration_s"] = out["source_duration_s"].astype(float).fillna(out["duration_s"].astype(float))
    out["class_weight"] = weights.astype(float).to_numpy()
    out["class_index"] = out["sentiment"].map(CLASS_INDEX).astype("Int32")
    return out.drop(
        columns=[c for c in ("transcript", "variant", "speech_intervals", "source_duration_s", "utterance_duration_s")
                 if c in out.columns]
    ).reset_index(drop=True)
