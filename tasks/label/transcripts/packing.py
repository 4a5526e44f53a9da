"""Whisper's packing groups: which clips are decoded together, fixed by the items, not by the shards.

Why: Whisper packs short clips into shared 29 s windows (tasks/label/transcripts/whisper_decode.py), so a clip's
words and scores depend on its window neighbours. When each shard packed its own clips,
``run.shard_size`` (and so the runner's work split) changed the neighbours and thus the
pseudo-transcripts ("the weather is ice" vs "nice") and every column computed from them. Now a plan
over *all* items of the build, made once before the transcripts stage, fixes the groups:

- Candidates are the clips Whisper labels: rows without a human transcript in a language the model
  knows, plus the seeded quality sample of human-transcribed rows (`quality.choose_quality_sample`,
  taken here over the whole build, ``n`` per source), whose hypotheses fill ``asr_hypothesis``.
- Per language, candidates are ordered by the *bit-reversed* shard hash of their utterance id
  (`tasks.core.shards.assign_shards` takes the low bits of that hash, so every shard, at any shard size, is
  a contiguous run of this order), and cut greedily into groups of at most one decode batch
  (``batch_size x PACK_WINDOW_S`` of audio plus gaps). A group therefore mostly lies in one shard.
- A shard's transcripts task decodes, for every group one of its clips belongs to, all the group's
  clips the label cache does not hold yet (reading the other shards' clips from their URIs), in
  segment-key order, and caches them in one write; a group shared by two shards is decoded by
  whichever gets there first, and the other finds it in the cache (run concurrently, both decode
  the same clips to the same labels).

So a clip's label depends on the build's items and the label cache, never on ``shard_size``,
``max_workers`` or the runner. Groups hold the clips missing from the cache, so a refresh with a
filled cache decodes only its new clips (the cache keeps labelled clips' text fixed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

import pandas as pd

from tasks.core.shards import stable_hash
from tasks.label.transcripts.whisper_decode import PACK_GAP_S, PACK_WINDOW_S

if TYPE_CHECKING:
    from tasks.spec_labelers import WhisperSettings

PLAN_COLUMNS = ["key", "group", "utterance_id", "audio_uri", "offset_s", "duration_s", "language", "quality"]
_HASH_BITS = 48  # assign_shards uses the first 12 hex digits of stable_hash(utterance_id)


def shard_order(utterance_id: str) -> int:
    """The bit-reversed shard hash: every shard of every shard size is a contiguous run of this order."""
    value = int(stable_hash(utterance_id)[:12], 16)
    return int(format(value, f"0{_HASH_BITS}b")[::-1], 2)


def group_capacity_s(settings: WhisperSettings) -> float:
    """Audio per group: one decode batch of packed windows."""
    return settings.batch_size * PACK_WINDOW_S


def make_plan(items: pd.DataFrame, settings: WhisperSettings, quality_n: int = 0, seed: int = 13) -> pd.DataFrame:
    """The packing plan (`PLAN_COLUMNS`) of every clip Whisper labels in `items` (all shards of a build).

    ``quality`` marks the rows of the quality sample (their human transcript is kept; Whisper's
    hypothesis goes to ``asr_hypothesis``). ``key`` is the label-cache key, ``group`` a stable name.
    """
    from tasks.core.label_cache import UNCACHED_PREFIX
    from tasks.label.transcripts.quality import choose_quality_sample
    from tasks.label.transcripts.whisper import candidate_keys

    if items.empty:
        return pd.DataFrame(columns=PLAN_COLUMNS)
    items = items.reset_index(drop=True)
    need = candidate_keys(items, settings)
    sample = choose_quality_sample(items, quality_n, seed) if quality_n > 0 else []
    if sample:
        probe = items.iloc[sample].copy().reset_index(drop=True)
        probe["transcript_raw"] = None
        quality = candidate_keys(probe, settings)
        rows = [(i, key, False) for i, key in need.items()] + [(sample[i], key, True) for i, key in quality.items()]
    else:
        rows = [(i, key, False) for i, key in need.items()]
    rows = [(i, key, q) for i, key, q in rows if not key[0].startswith(UNCACHED_PREFIX)]  # never cached: kept local
    plan = pd.DataFrame({
        "key": [key for _, (key, _), _ in rows],
        "utterance_id": [str(items.at[i, "utterance_id"]) for i, _, _ in rows],
        "audio_uri": [items.at[i, "audio_uri"] for i, _, _ in rows],
        "offset_s": [items.at[i, "offset_s"] for i, _, _ in rows],
        "duration_s": [items.at[i, "duration_s"] for i, _, _ in rows],
        "language": [language for _, (_, language), _ in rows],
        "quality": [q for _, _, q in rows],
    })
    return assign_groups(plan, group_capacity_s(settings))


def assign_groups(plan: pd.DataFrame, capacity_s: float) -> pd.DataFrame:
    """`plan` (key, utterance_id, duration_s, language, ...) with each key's ``group``, in shard order.

    A key held by several rows (the same audio twice) is placed by its first row in shard order and
    decoded once; every row keeps its utterance id (the quality sample is a set of utterances).
    """
    if plan.empty:
        return pd.DataFrame(columns=PLAN_COLUMNS)
    plan = plan.assign(_order=[shard_order(u) for u in plan["utterance_id"]])
    plan = plan.sort_values(["_order", "key", "utterance_id"], kind="mergesort").reset_index(drop=True)
    first = plan.drop_duplicates("key")
    group_of: dict[str, str] = {}
    for language, part in first.groupby("language", sort=True):
        used, name = 0.0, ""
        for key, duration in zip(part["key"], part["duration_s"], strict=True):
            seconds = float(duration) if duration is not None and pd.notna(duration) else PACK_WINDOW_S
            if not name or used >= capacity_s:
                name, used = f"{language}:{stable_hash(key)[:16]}", 0.0  # named by its first clip
            group_of[key] = name
            used += seconds + PACK_GAP_S
    plan["group"] = plan["key"].map(group_of)
    return plan[PLAN_COLUMNS]


def plan_for(plan: pd.DataFrame, keys: Iterable[str]) -> pd.DataFrame:
    """The rows of every group holding one of `keys` (what a shard's task may decode)."""
    wanted = set(keys)
    groups = set(plan.loc[plan["key"].isin(wanted), "group"])
    return plan[plan["group"].isin(groups)]


def plan_digest(plan: pd.DataFrame) -> str:
    """Identity of (part of) a plan: its groups and members, for a work file's settings."""
    rows = sorted(zip(plan["group"], plan["key"], plan["utterance_id"], plan["quality"].astype(bool), strict=True))
    return stable_hash(json.dumps(rows))[:24]


def write_plan(items: pd.DataFrame, settings: WhisperSettings, quality_n: int, seed: int, folder: str) -> str:
    """Make the plan of all `items` and store it under `folder`, named by its content; returns its URI."""
    from manifests import uri as fs
    from tasks.core.shards import write_frame

    plan = make_plan(items, settings, quality_n, seed)
    uri = fs.join(folder, f"plan-{plan_digest(plan)}.parquet")
    if not fs.exists(uri):
        write_frame(uri, plan)
    return uri


def shard_part(plan: pd.DataFrame, utterance_ids: Iterable[str]) -> tuple[pd.DataFrame, set[str]]:
    """(the groups a shard's utterances belong to, the shard's quality-sample utterances)."""
    mine = plan[plan["utterance_id"].isin(set(utterance_ids))]
    return plan_for(plan, mine["key"]), set(mine.loc[mine["quality"].astype(bool), "utterance_id"])
