"""The plan's per-shard and per-partition steps (each one Prefect task); `tasks.plan.step` reduces between them.

Order: `dedup_keys` (every shard) -> `resolve_part` (every partition) -> `screen_shard` (every shard:
labels, splits, PII, plausibility, eligibility, counts) -> `count_groups` (every partition) ->
`boundary_ranks` (every shard, only when a balance threshold falls inside a histogram bin) ->
`finish_shard` (every shard: ASR picks, classifier variants, recipes, the shard's three plan files).
Each step reads one plan shard or one partition, so no process holds the corpus. A plan shard is a
run of consecutive labelling shards (`plan_inputs`): its part of every manifest holds ~`run.part_rows` rows.
"""

from __future__ import annotations

from typing import Any, TypedDict

import numpy as np
import pandas as pd

from manifests import uri as fs
from manifests.schema import SENTIMENTS, SPLITS
from tasks.core.hashing import seeded_hex, seeded_hex_many
from tasks.core.results import PlanShard, ShardResult
from tasks.core.rows import REJECT_COLUMNS
from tasks.core.shards import read_frame, read_frames, work_rows, write_frame
from tasks.core.work import cache_dir, concat_rejects, work_dir
from tasks.plan import quota, shuffle
from tasks.spec import DatasetSpec

DEDUP_COLUMNS = ("utterance_id", "source", "segment_key", "sentiment_origin", "transcript_origin")
HELPER_COLUMNS = ["_asr", "_clf", "_rank"]


class PlanInput(TypedDict):
    """One plan shard's inputs: its labelling shards' items files (in shard order) and all their rejects files."""

    items_uris: list[str]
    rejects_uris: list[str]


def shards_per_plan_shard(spec: DatasetSpec, rows: list[int]) -> int:
    """Labelling shards per plan shard: `run.part_rows` over the mean rows of a labelling shard, at least one.

    Why rows, not `part_rows // shard_size`: labelling shards are a power of two, so they hold between
    half and all of `shard_size`; by count, a part held ~48,000 rows at 1 M items but ~30,000 at 10 M
    (328 parts and 5,248 shuffle files instead of 199 and 1,592). Rows are a pure function of the
    inputs, so the part layout never depends on the runner or the workers."""
    total = sum(rows)
    return max(1, spec.run.part_rows * len(rows) // total) if total else 1


def plan_inputs(spec: DatasetSpec, shard_results: list[ShardResult]) -> list[PlanInput]:
    """Consecutive labelling shards grouped into plan shards (the last may hold fewer).

    Why: labelling shards are small for Whisper's sake; planning and publish do milliseconds of work
    per shard, so per-shard task runs, shuffle files and manifest parts would cost more than the work.
    A shard result without `rows` (an older caller) has its items file's row count read from the footer."""
    rows = [int(r["rows"]) if "rows" in r else work_rows(r["items_uri"]) for r in shard_results]
    per = shards_per_plan_shard(spec, rows)
    groups = [shard_results[i:i + per] for i in range(0, len(shard_results), per)]
    return [{"items_uris": [r["items_uri"] for r in g],
             "rejects_uris": [u for r in g for u in r.get("rejects_uris", [])]} for g in groups]


def paths(plan_dir: str, n_parts: int) -> dict[str, str]:
    """The plan's work folders (the partition count is part of the shuffle folders' names)."""
    return {"dedup": fs.join(plan_dir, f"dedup-{n_parts}"), "losers": fs.join(plan_dir, f"losers-{n_parts}"),
            "groups": fs.join(plan_dir, f"groups-{n_parts}"), "screened": fs.join(plan_dir, "screened"),
            "hist": fs.join(plan_dir, "hist"), "talkers": fs.join(plan_dir, "talkers")}


def _file(folder: str, index: int) -> str:
    return fs.join(folder, f"s-{index:05d}.parquet")


def read_columns(uri: str, columns: list[str]) -> pd.DataFrame:
    """Only `columns` (those present) of a work file: the later passes need a few columns of a shard."""
    return read_frames([uri], columns)


# ---------------------------------------------------------------------------------- duplicates
def dedup_keys(plan_dir: str, index: int, items_uris: list[str], n_parts: int) -> int:
    """Write this plan shard's keyed rows (segment_key, origins, id) into the segment-key partitions."""
    from tasks.plan.splits import present_mask

    items = read_frames(items_uris, list(DEDUP_COLUMNS))
    if "segment_key" not in items.columns or items.empty:
        return 0
    keyed = items[np.asarray(present_mask(items["segment_key"]), dtype=bool)].assign(shard=index)
    return shuffle.write_parts(paths(plan_dir, n_parts)["dedup"], index, keyed, "segment_key", n_parts)


def resolve_part(plan_dir: str, part: int, n_parts: int) -> int:
    """Resolve one partition's duplicate segments (today's rule) and address each loser to its shard."""
    from tasks.plan.splits import resolve_duplicate_segments

    where = paths(plan_dir, n_parts)
    rows = shuffle.read_repeated(where["dedup"], part, "segment_key")  # only repeated keys can lose
    if rows.empty:
        return 0
    rejects = resolve_duplicate_segments(rows).rejects
    if rejects.empty:
        return 0
    shard_of = dict(zip(rows["utterance_id"].astype(str), rows["shard"], strict=True))
    rejects = rejects.assign(shard=[int(shard_of[str(u)]) for u in rejects["input_ref"]])
    for shard, losers in rejects.groupby("shard", sort=True):
        write_frame(fs.join(shuffle.shard_file(where["losers"], int(shard)), f"p-{part:05d}.parquet"),
                    losers.drop(columns=["shard"]).reset_index(drop=True))
    return int(len(rejects))


# ---------------------------------------------------------------------------------- screening
def _babble_wanted(spec: DatasetSpec) -> bool:
    aug = spec.augment
    return (not aug.noise_paths and aug.default_noise == "auto" and aug.enabled and aug.p_noise > 0
            and "train" in aug.splits)


def trim_talkers(rows: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The rows babble can use: the first train speakers in babble order, their first utterances by rank.

    Exact under merging: a speaker among the first N overall is among the first N of every shard it is
    in, and its first utterances overall are among its first in each shard.
    """
    from tasks.augment.noise_pool import BABBLE_FILES, MAX_TALKERS, TALKER_UTTERANCES, speaker_keys

    if rows.empty:
        return rows
    rows = rows.assign(_speaker=speaker_keys(rows))
    rows = rows.assign(_bkey=[seeded_hex(seed, "babble", s) for s in rows["_speaker"]],
                       _urank=[seeded_hex(seed, u) for u in rows["utterance_id"]])
    first = sorted(set(rows["_bkey"]))[: BABBLE_FILES * MAX_TALKERS + 1]
    rows = rows[rows["_bkey"].isin(first)].sort_values(["_bkey", "_urank"])
    rows = rows.groupby("_bkey", sort=False).head(TALKER_UTTERANCES)
    return rows.drop(columns=["_speaker", "_bkey", "_urank"]).reset_index(drop=True)


def screen_shard(spec: DatasetSpec, plan_dir: str, index: int, shard: PlanInput, n_parts: int) -> dict[str, Any]:
    """Labels, splits, PII, plausibility and eligibility of one plan shard; its partial reports and counts."""
    from tasks.label.transcripts import hallucination
    from tasks.plan import balance, pii, plausibility, splits
    from tasks.plan.split_report import shares_partial
    from tasks.plan.step import _require_labels

    where = paths(plan_dir, n_parts)
    items = read_frames(shard["items_uris"])
    rejects = [read_frames(shard["rejects_uris"], skip_empty=True)]  # one conversion, not one per file
    losers = shuffle.read_for_shard(where["losers"], index)
    if len(losers):
        items = items[~items["utterance_id"].astype(str).isin(set(losers["input_ref"].astype(str)))]
        rejects.append(losers[REJECT_COLUMNS])
    items, missing = _require_labels(items.reset_index(drop=True), spec)
    rejects.append(missing)
    items = splits.assign_splits(items, spec.splits, spec.seed)
    cache = pii.comprehend_cache(cache_dir(spec), spec.pii) if spec.pii.detect == "aws_comprehend" else None
    items, pii_report = pii.flag_items(items, spec.pii, region=spec.aws.region, cache=cache)
    pii_out = pii.asr_excluded(items, spec.pii)
    asr_sane, clf_sane, plaus = plausibility.screen_partial(items, spec)
    hall = (hallucination.summary_counts(items, rejects, spec.labelers.whisper.hallucination)
            if spec.labelers.transcripts == "whisper" else None)
    # the ASR candidates, exactly as balance.sample_asr_rows filters them
    pool = items.loc[~pii_out & asr_sane, [c for c in ("sentiment", "split", *balance.ORIGIN_FIELDS)
                                           if c in items.columns]]  # a row filter costs per column
    labelled = pool["sentiment"].isin(SENTIMENTS)
    split_ok = pool["split"].isin(SPLITS)
    allowed, asr_elig = balance.eligible(pool, "asr", spec.eligibility)
    excluded = {"null_sentiment": int((~labelled).sum()), "no_split": int((labelled & ~split_ok).sum()),
                "ineligible": int((labelled & split_ok & ~allowed).sum())}
    cand = pd.Series(False, index=items.index, dtype=bool)
    cand[pool.index[labelled & split_ok & allowed]] = True
    clf_ok, clf_elig = balance.eligible(items, "classifier", spec.eligibility)
    clf_ok &= clf_sane
    if "pii_detected" in items.columns:
        pii_report.update(asr_excluded=int(pii_out.sum()),
                          classifier_flagged=int((clf_ok & items["pii_detected"]).sum()))
    ranks = seeded_hex_many(spec.seed, items["utterance_id"].tolist())
    screened = items.assign(_asr=cand.to_numpy(), _clf=clf_ok.to_numpy(), _rank=ranks)
    write_frame(_file(where["screened"], index), screened)
    write_frame(fs.join(plan_dir, f"rejects-{index:05d}.parquet"), concat_rejects(rejects))

    cands = screened.loc[screened["_asr"], ["split", "sentiment", "source", "_rank"]]
    keys = [quota.group_key(*k) for k in zip(cands["split"].tolist(), cands["sentiment"].tolist(),
                                             cands["source"].tolist(), strict=True)]
    counts = {str(k): int(v) for k, v in pd.Series(keys, dtype=object).value_counts().sort_index().items()}
    balanced = cands["split"].isin(list(spec.balance.splits)).to_numpy()
    hist = pd.DataFrame({"key": pd.Series(keys, dtype=object)[balanced].to_numpy(),
                         "bin": [quota.rank_bin(r) for r in cands["_rank"][balanced].tolist()]})
    write_frame(_file(where["hist"], index), hist.groupby(["key", "bin"]).size().rename("n").reset_index())
    if len(items):
        groups = pd.DataFrame({"source": items["source"].astype(str),
                               "group": splits.split_groups(items)})
        shuffle.write_parts(where["groups"], index, groups.drop_duplicates(), "group", n_parts)
    if _babble_wanted(spec):
        train = items[items["split"] == "train"].drop(columns=["speech_intervals"], errors="ignore")
        write_frame(_file(where["talkers"], index), trim_talkers(train, spec.seed))
    return {
        "index": index,
        "per_source": {str(k): int(v) for k, v in items.groupby("source").size().items()} if len(items) else {},
        "split_shares": shares_partial(items),
        "pii": pii_report,
        "plausibility": plaus,
        "hallucination": hall,
        "asr_eligibility": asr_elig,
        "clf_eligibility": clf_elig,
        "excluded": excluded,
        "counts": counts,
    }


def count_groups(plan_dir: str, part: int, n_parts: int) -> dict[str, int]:
    """Distinct speakers/recordings per source in one partition of the group shuffle."""
    return shuffle.distinct_per(paths(plan_dir, n_parts)["groups"], part, "source")


# ---------------------------------------------------------------------------------- balance
def boundary_ranks(plan_dir: str, index: int, bounds: dict[str, list[int]]) -> dict[str, list[str]]:
    """This shard's candidate ranks that fall in each group's boundary bin (a few per group)."""
    rows = read_columns(_file(paths(plan_dir, 1)["screened"], index),
                        ["split", "sentiment", "source", "_asr", "_rank"])
    rows = rows[rows["_asr"]]
    out: dict[str, list[str]] = {}
    if rows.empty:
        return out
    keys = pd.Series([quota.group_key(*k) for k in zip(rows["split"].tolist(),
                                                          rows["sentiment"].tolist(), rows["source"].tolist(),
                                                          strict=True)], index=rows.index, dtype=object)
    bins = rows["_rank"].map(quota.rank_bin)
    for key, (b, _) in bounds.items():
        found = rows["_rank"][(keys == key) & (bins == b)]
        if len(found):
            out[key] = sorted(map(str, found))
    return out


def asr_variants(items: pd.DataFrame, groups: dict[str, dict[str, Any]], limits: dict[str, str]) -> pd.DataFrame:
    """(utterance_id, variant) of this shard's ASR rows under the build's balance plan."""
    cands = items[items["_asr"]]
    n = np.fromiter((quota.picks(groups.get(key), limits.get(key), rank) for key, rank in zip(
        (quota.group_key(*k) for k in zip(*(cands[c].tolist() for c in ("split", "sentiment", "source")),
                                          strict=True)), cands["_rank"].tolist(), strict=True)),
        dtype="int64", count=len(cands))
    uids = np.repeat(np.array(cands["utterance_id"].tolist(), dtype=object), n)  # row i, n[i] times, in order
    variants = np.arange(len(uids), dtype="int64") - np.repeat(np.cumsum(n) - n, n)  # 0..n[i]-1 for row i
    return pd.DataFrame({"utterance_id": pd.Series(uids, dtype=object), "variant": pd.Series(variants, dtype="int64")})


def finish_shard(spec: DatasetSpec, plan_dir: str, index: int, balance_plan: dict[str, Any],
                 pools_uri: str) -> PlanShard:
    """The shard's ASR picks, classifier variants and recipes; writes its utterances and stage rows."""
    from tasks.augment import noise_pool
    from tasks.augment import recipes as augment
    from tasks.plan.balance import recipe_signature
    from tasks.plan.stage_rows import recipe_key, variant_rows

    items = read_frame(_file(paths(plan_dir, 1)["screened"], index))
    asr = asr_variants(items, balance_plan["groups"], balance_plan["thresholds"])
    clf = augment.classifier_variants(items[items["_clf"].astype(bool)], spec.augment)
    variants = (pd.concat([asr, clf], ignore_index=True).drop_duplicates()
                .sort_values(["utterance_id", "variant"]).reset_index(drop=True))
    pools = noise_pool.load_pools(spec, pools_uri, fs.join(work_dir(spec), "augment"))
    speaker_of = (dict(zip(items["utterance_id"], noise_pool.speaker_keys(items), strict=True))
                  if pools.noise_speakers and len(items) else {})
    duration = dict(zip(items["utterance_id"].tolist(), items["duration_s"].tolist(), strict=True))
    split_of = dict(zip(items["utterance_id"].tolist(), items["split"].tolist(), strict=True))
    recipes = {}
    heard: dict[str, set[str]] = {}  # audio-deciding recipe fields already used per utterance
    several = set(variants["utterance_id"][variants["variant"] > 0].tolist())  # only repeats can collide
    for utt, var in zip(variants["utterance_id"].tolist(), variants["variant"].tolist(), strict=True):
        rid = recipe_key(utt, var)
        recipe = augment.draw_recipe(spec.seed, rid, split_of[utt], spec.augment, pools, float(duration[utt]),
                                     speaker_of.get(utt))
        if utt not in several:
            recipes[rid] = recipe
            continue
        # An oversampled repeat must not be byte-identical to an earlier variant: redraw (deterministically)
        # a few times; if the policy cannot vary the audio, the validator names the rows.
        for attempt in range(1, 17):
            if recipe_signature(recipe) not in heard.get(utt, set()):
                break
            recipe = augment.draw_recipe(spec.seed, f"{rid}~{attempt}", split_of[utt], spec.augment, pools,
                                         float(duration[utt]), speaker_of.get(utt))
        heard.setdefault(utt, set()).add(recipe_signature(recipe))
        recipes[rid] = recipe
    utterances = items.drop(columns=HELPER_COLUMNS).sort_values("utterance_id").reset_index(drop=True)
    rows = variant_rows(utterances.drop(columns=["speech_intervals"], errors="ignore"), variants, recipes)
    row_ids = rows["row_id"].tolist()  # set lookups on a list: an Arrow string column's isin goes through Python
    for column, chosen in (("in_asr", asr), ("in_classifier", clf)):
        keys = {recipe_key(u, v) for u, v in zip(chosen["utterance_id"].tolist(), chosen["variant"].tolist(),
                                                 strict=True)}
        rows[column] = np.fromiter((r in keys for r in row_ids), dtype=bool, count=len(row_ids))
    shard: PlanShard = {"index": index,
                        "utterances_uri": fs.join(plan_dir, f"utterances-{index:05d}.parquet"),
                        "rows_uri": fs.join(plan_dir, f"rows-{index:05d}.parquet"),
                        "rejects_uri": fs.join(plan_dir, f"rejects-{index:05d}.parquet")}
    write_frame(shard["utterances_uri"], utterances)
    write_frame(shard["rows_uri"], rows)
    return shard


STEPS = {"dedup_keys": dedup_keys, "resolve_part": resolve_part, "screen_shard": screen_shard,
         "count_groups": count_groups, "boundary_ranks": boundary_ranks, "finish_shard": finish_shard}
