"""Materialise augmentation: render each stage row's recipe on its clean audio and write it as FLAC.

The pools are `tasks.augment.pools`', the recipes `tasks.augment.recipes`', the DSP
`manifests.augmentation`'s (training jobs apply the same recipes lazily). Files are named by a hash of
(source segment, recipe, RIR/noise files, DSP version), so a resumed run reuses what it already wrote,
and rows sharing a variant share one file. A simulated RIR enters that hash by its path relative to
the work folder, never by its absolute path, so the output folder does not change file names or the
release's ``content_sha256``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from manifests import uri as fs
from manifests.augmentation import DSP_VERSION, Recipe, apply_recipe
from tasks.augment.pools import SR, AugmentPools

FAILURE_COLUMNS = ["row_id", "utterance_id", "source", "reason", "detail"]


class _RowError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def content_name(row: Any, recipe: Recipe, pools: AugmentPools, sr: int) -> str:
    """File name: the utterance id made safe, plus a hash of what determines the audio."""
    spec = recipe.to_row()
    spec.pop("aug_seed")  # does not change the audio; rows with equal recipes share one file
    key = json.dumps(
        {
            "version": DSP_VERSION,
            "source": row["source_audio_uri"],
            # the source's bytes (segment_key holds their sha256): a file replaced under its name is new audio
            "segment_key": row["segment_key"] if "segment_key" in row else None,
            "offset_s": _num(row["offset_s"]),
            "duration_s": _num(row["duration_s"]),
            "sr": sr,
            "recipe": spec,
            "rir": pools.file_identity("rir", recipe.rir_id),
            "noise": pools.noise_key(recipe.noise_id) if recipe.noise_id else None,
        },
        sort_keys=True,
    )
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(row["utterance_id"])).strip("_")[:80] or "utt"
    return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _render(row: Any, recipe: Recipe, pools: AugmentPools, sr: int) -> tuple[np.ndarray, float]:
    """Read the clean utterance and apply the recipe; problems become _RowError."""
    from tasks.core.audio import AudioError, read_audio

    try:
        audio = read_audio(row["source_audio_uri"], _num(row["offset_s"]) or 0.0, _num(row["duration_s"]),
                           target_sr=sr, mono=True)
    except AudioError as err:
        raise _RowError(err.reason, err.detail) from None
    rir = noise = None
    for kind, item_id in (("RIR", recipe.rir_id), ("noise", recipe.noise_id)):
        if item_id is None:
            continue
        try:
            array = pools.load_rir(item_id, sr) if kind == "RIR" else pools.load_noise(item_id, sr)
        except KeyError:
            raise _RowError("missing_audio", f"{kind} {item_id!r} named by the recipe is not in the pools; "
                                             "check augment.rir_paths / noise_paths.") from None
        except Exception as err:  # any decoder failure names the file
            raise _RowError("unreadable_audio", f"{kind} file {item_id!r} cannot be read: {err}") from None
        rir, noise = (array, noise) if kind == "RIR" else (rir, array)
    try:
        return apply_recipe(audio, sr, recipe, rir, noise)
    except ValueError as err:
        reason = "empty_audio" if "silent" in str(err) else "unreadable_audio"
        raise _RowError(reason, f"{err}") from None


def materialize(
    rows: pd.DataFrame, pools: AugmentPools, out_dir: str, sr: int = SR, log: Callable[..., None] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write each row's augmented utterance as FLAC; return (rows pointing at it, failures).

    Rows are stage rows (utterance_id, row_id, source_audio_uri, offset_s, duration_s and the recipe
    columns). A finished file has a JSON sidecar with the gain used, its length and the sha256 of its
    bytes; a resumed run reuses it only when it verifies (`tasks.core.work_audio.check_reusable`) and
    redoes it otherwise, logging why through `log`. The returned rows carry `audio_sha256`.
    Failures (row_id, utterance_id, source, reason, detail) never raise.
    """
    from tasks.core.audio import write_flac
    from tasks.core.work_audio import check_reusable

    done: dict[str, tuple[str, float, float, str]] = {}  # name -> (uri, gain, duration_s, sha256)
    kept: list[tuple[Any, str, float, float, str]] = []  # (position, uri, gain, duration_s, sha256)
    failures: list[dict[str, Any]] = []
    for pos, (_, row) in enumerate(rows.iterrows()):
        recipe = Recipe.from_row(row)
        name = content_name(row, recipe, pools, sr)
        try:
            if name not in done:
                flac_uri, meta_uri = fs.join(out_dir, f"{name}.flac"), fs.join(out_dir, f"{name}.json")
                meta, problem = check_reusable(flac_uri, meta_uri)
                if meta is not None:
                    done[name] = (flac_uri, float(meta["gain"]), int(meta["num_samples"]) / sr, str(meta["sha256"]))
                else:
                    if problem and log is not None:
                        log("augment: %s; redoing it", problem)
                    audio, gain = _render(row, recipe, pools, sr)
                    if len(audio) == 0:
                        raise _RowError("empty_audio", "the augmented utterance has no samples")
                    sha = write_flac(flac_uri, audio, sr)
                    meta = {"gain": gain, "num_samples": len(audio), "sample_rate": sr, "sha256": sha,
                            "source_audio_uri": row["source_audio_uri"], "recipe": recipe.to_row()}
                    fs.write_text(meta_uri, json.dumps(meta, sort_keys=True))
                    done[name] = (flac_uri, gain, len(audio) / sr, sha)
        except _RowError as err:
            failures.append({"row_id": row.get("row_id"), "utterance_id": row.get("utterance_id"),
                             "source": row.get("source"), "reason": err.reason,
                             "detail": f"Augmenting row {row.get('row_id')} ({row['source_audio_uri']}) failed: "
                                       f"{err.detail}"})
            continue
        except Exception as err:  # one bad row must not stop the shard
            failures.append({"row_id": row.get("row_id"), "utterance_id": row.get("utterance_id"),
                             "source": row.get("source"), "reason": "unreadable_audio",
                             "detail": f"Augmenting row {row.get('row_id')} ({row['source_audio_uri']}) failed: "
                                       f"{type(err).__name__}: {err}"})
            continue
        kept.append((pos, *done[name]))
    result = rows.iloc[[k[0] for k in kept]].copy()
    result["audio_uri"] = np.array([k[1] for k in kept], dtype=object)
    result["offset_s"] = 0.0
    result["duration_s"] = np.array([k[3] for k in kept], dtype=float)
    result["recipe_applied"] = True
    result["gain"] = np.array([k[2] for k in kept], dtype=float)
    result["audio_sha256"] = np.array([k[4] for k in kept], dtype=object)
    return result, pd.DataFrame(failures, columns=FAILURE_COLUMNS)
