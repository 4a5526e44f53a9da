"""Train/dev/test assignment that never puts one speaker (or one recording) in two splits.

Why hashing: a split decided by `sha256(f"{seed}:{group}")` depends only on the seed and the
group, so a refresh that adds data never moves an existing speaker to another split, and shards
can be assigned independently.

Rules
- A row with a non-null official `split` (from the corpus) keeps it (`split_origin = "official"`).
  Common spellings (`validation`, `val`, `training`, ...) are normalised; an unknown value is
  treated as missing and hash-assigned, with a log warning.
- Every other row is assigned by its group (`split_origin = "hashed"`):
  `f"{source}/{speaker_id}"`; without a speaker, `f"{source}/file:{audio_sha256}"` so all crops
  of one recording stay together (then `audio_uri`, then the utterance itself as a last resort).
  The hash's first 64 bits map to u in [0, 1): u < train -> train, u < train + dev -> dev, else test.
- Caveat: fractions apply to *groups*, not rows. A corpus with few speakers can end with an empty
  dev or test split (3 speakers at 80/10/10 all land in train with probability 0.8^3 = 0.51).
  `split_counts` / `empty_split_warnings` make that visible in the dataset card.

Per-source policies (`sources[].split`, `sources[].split_policy`; applied at ingest by
`apply_source_policy`, so every later step, the trained classifier's row choice included, sees the
same split):
- `split: train|dev|test` puts the whole source into that split (`split_origin = "source"`),
  e.g. a 2-speaker corpus that is only wanted for training.
- `split_policy: utterance_stratified` splits an acted corpus whose few speakers make a
  speaker-disjoint split impossible (TESS: 2 speakers) at the utterance level
  (`split_origin = "stratified"`): within each stratum (speaker, emotion) the utterances are
  ranked by `sha256(f"{seed}:{utterance_id}")` and the first round(n * train) go to train, the
  next round(n * (train + dev)) - round(n * train) to dev, the rest to test. Every speaker then
  appears in every split (a known, flagged leak: a model may learn voices); the validator accepts
  that only for sources under this policy, and the card says so. Official splits still win.
  Ranks depend on the stratum's members, so adding utterances to such a source can move others.

`split_leakage` reports segment keys in two splits (always a bug) and groups in two splits among
hash-assigned rows only: official splits may share speakers (MELD's do). It reads `split_origin`;
when that column is missing every row is checked (strict), so writers should keep the column.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from manifests.schema import SENTIMENTS, SPLITS
from tasks.core.hashing import seeded_digest
from tasks.core.rows import StageResult, reject_row, rejects_frame
from tasks.spec import SourceSpec, SplitSpec

log = logging.getLogger(__name__)

STAGE = "splits"
POLICY_ORIGINS: tuple[str, ...] = ("source", "stratified")  # split_origin values set by a source policy
_SPLIT_ALIASES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "valid": "dev",
    "val": "dev",
    "validation": "dev",
    "development": "dev",
    "test": "test",
    "testing": "test",
    "eval": "test",
}


def _present(value: object) -> bool:
    """True for a real value (not None/NaN/empty string)."""
    if value is None:
        return False
    try:
        if pd.isna(value):
            return False
    except (TypeError, ValueError):
        return True
    return str(value) != ""


def unit_hash(seed: int, key: str) -> float:
    """Seeded, platform-independent hash of `key` mapped to [0, 1)."""
    digest = seeded_digest(seed, key)
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_group(row: pd.Series | dict[str, Any]) -> str:
    """The unit that must stay within one split: speaker, else recording, else the utterance."""
    get = row.get
    source = str(get("source"))
    if _present(get("speaker_id")):
        return f"{source}/{get('speaker_id')}"
    if _present(get("audio_sha256")):
        return f"{source}/file:{get('audio_sha256')}"
    if _present(get("audio_uri")):
        return f"{source}/uri:{get('audio_uri')}"
    return f"{source}/utt:{get('utterance_id')}"


def present_mask(values: pd.Series) -> list[bool]:
    """`_present` of every value of a column, without a Python call per value for the common dtypes."""
    numpy_kind = values.dtype.kind if isinstance(values.dtype, np.dtype) else ""  # not nullable Int64 (pd.NA)
    if numpy_kind in ("i", "u", "b"):
        return [True] * len(values)
    if numpy_kind == "f":
        return values.notna().tolist()
    if isinstance(values.dtype, pd.StringDtype) or values.dtype == object and all(
            type(v) is str for v in values.tolist()):
        return (values.notna() & (values.astype(object).fillna("") != "")).tolist()
    return [_present(v) for v in values.tolist()]


def column_values(values: pd.Series) -> list[Any]:
    """The values `to_dict("records")` gives for a column (there pd.NA is None, in `tolist` it stays NA)."""
    out = values.tolist()
    if isinstance(values.dtype, np.dtype) or values.dtype == "str":
        return out
    return [None if v is pd.NA else v for v in out]


def split_groups(items: pd.DataFrame) -> list[str]:
    """`split_group` of every row of `items` (the same strings), reading a few columns once, not per row."""
    n = len(items)

    def column(name: str) -> tuple[list[Any], list[bool]]:
        if name not in items.columns:
            return [None] * n, [False] * n
        return column_values(items[name]), present_mask(items[name])

    sources = [str(s) for s in column("source")[0]]
    speakers, has_speaker = column("speaker_id")
    shas, has_sha = column("audio_sha256")
    uris, has_uri = column("audio_uri")
    uids = column("utterance_id")[0]
    return [f"{src}/{spk}" if p_spk else f"{src}/file:{sha}" if p_sha else f"{src}/uri:{uri}" if p_uri
            else f"{src}/utt:{uid}"
            for src, spk, p_spk, sha, p_sha, uri, p_uri, uid
            in zip(sources, speakers, has_speaker, shas, has_sha, uris, has_uri, uids, strict=True)]


def hashed_split(group: str, spec: SplitSpec, seed: int) -> str:
    """train/dev/test for a group from its seeded hash and the spec's fractions."""
    u = unit_hash(seed, group)
    if u < spec.train:
        return "train"
    if u < spec.train + spec.dev:
        return "dev"
    return "test"


def normalise_split(value: object) -> str | None:
    """Canonical split name for an official split value, or None when missing/unknown."""
    if not _present(value):
        return None
    return _SPLIT_ALIASES.get(str(value).strip().lower())


def assign_splits(items: pd.DataFrame, spec: SplitSpec, seed: int) -> pd.DataFrame:
    """Copy of `items` with `split` filled for every row and `split_origin` official|hashed.

    Rows a source policy already placed (`split_origin` source|stratified, see
    `apply_source_policy`) keep their split and origin.
    """
    out = items.copy()
    if out.empty:
        out["split"] = pd.Series(dtype=object)
        out["split_origin"] = pd.Series(dtype=object)
        return out
    n = len(out)
    values = column_values(out["split"]) if "split" in out.columns else [None] * n
    set_by = column_values(out["split_origin"]) if "split_origin" in out.columns else [None] * n
    uids = column_values(out["utterance_id"]) if "utterance_id" in out.columns else [None] * n
    groups: list[str] | None = None  # computed once, only when some row needs a hash
    by_group: dict[str, str] = {}
    splits: list[str] = []
    origins: list[str] = []
    for i, (value, origin) in enumerate(zip(values, set_by, strict=True)):
        official = normalise_split(value)
        if origin in POLICY_ORIGINS and official is not None:
            splits.append(official)  # set at ingest by the source's split policy
            origins.append(str(origin))
            continue
        if official is not None:
            splits.append(official)
            origins.append("official")
            continue
        if _present(value):
            log.warning(
                "utterance %s has unknown split %r (allowed: %s); assigning by speaker hash",
                uids[i], value, ", ".join(SPLITS),
            )
        if groups is None:
            groups = split_groups(out)
        group = groups[i]
        if group not in by_group:
            by_group[group] = hashed_split(group, spec, seed)
        splits.append(by_group[group])
        origins.append("hashed")
    out["split"] = pd.Series(splits, index=out.index, dtype=object)
    out["split_origin"] = pd.Series(origins, index=out.index, dtype=object)
    return out


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5 + 1e-9))


def stratified_splits(items: pd.DataFrame, spec: SplitSpec, seed: int) -> pd.Series:
    """Utterance-level split per (speaker, emotion) stratum: hash rank, then the fractions' counts."""
    out = pd.Series(index=items.index, dtype=object)
    if items.empty:
        return out
    speaker = items["speaker_id"] if "speaker_id" in items.columns else pd.Series(None, index=items.index)
    emotion = items["emotion"] if "emotion" in items.columns else pd.Series(None, index=items.index)
    strata = [f"{s if _present(s) else ''}|{e if _present(e) else ''}" for s, e in zip(speaker, emotion, strict=True)]
    uids = items["utterance_id"].astype(str)
    for _, idx in pd.Series(items.index, index=items.index).groupby(strata, sort=True):
        ranked = sorted(idx, key=lambda i: (unit_hash(seed, uids[i]), uids[i]))
        n = len(ranked)
        n_train = _round_half_up(n * spec.train)
        n_dev = _round_half_up(n * (spec.train + spec.dev)) - n_train
        for k, i in enumerate(ranked):
            out[i] = "train" if k < n_train else "dev" if k < n_train + n_dev else "test"
    return out


def apply_source_policy(items: pd.DataFrame, source: SourceSpec, spec: SplitSpec, seed: int) -> pd.DataFrame:
    """`items` of one source with `split`/`split_origin` set by the source's split policy, if any.

    `split: X` sets every row (origin `source`); `utterance_stratified` sets the rows without an
    official split (origin `stratified`); the default `speaker` policy leaves the rows alone.
    """
    if source.split is None and source.split_policy == "speaker":
        return items
    out = items.copy()
    if "split" not in out.columns:
        out["split"] = None
    out["split"] = out["split"].astype(object)
    if "split_origin" not in out.columns:
        out["split_origin"] = pd.Series(None, index=out.index, dtype=object)
    if source.split is not None:
        out["split"] = source.split
        out["split_origin"] = "source"
        return out
    todo = [normalise_split(v) is None for v in out["split"].tolist()]
    mask = pd.Series(todo, index=out.index, dtype=bool)
    if mask.any():
        out.loc[mask, "split"] = stratified_splits(out[mask], spec, seed)
        out.loc[mask, "split_origin"] = "stratified"
    return out


def _multi_split(frame: pd.DataFrame, keys: pd.Series) -> list[tuple[str, list[str], pd.DataFrame]]:
    """(key, splits, rows) for each key whose rows lie in more than one split."""
    n_splits = frame.groupby(keys)["split"].nunique()
    leaking = set(n_splits[n_splits > 1].index)
    if not leaking:
        return []
    mask = keys.isin(leaking)
    return [
        (str(key), sorted(set(grp["split"].dropna())), grp)
        for key, grp in frame[mask].groupby(keys[mask], sort=True)
    ]


def split_leakage(items: pd.DataFrame) -> list[str]:
    """Sentences naming segment keys, and hash-assigned speakers/recordings, found in two splits."""
    problems: list[str] = []
    if items.empty or "split" not in items.columns:
        return problems
    if "segment_key" in items.columns:
        seg = items[items["segment_key"].map(_present)]
        for key, splits, grp in _multi_split(seg, seg["segment_key"]):
            ids = ", ".join(sorted(map(str, grp.get("utterance_id", grp.index))))
            problems.append(f"segment_key {key} is in splits {', '.join(splits)} (utterances {ids})")
    hashed = items[items["split_origin"] == "hashed"] if "split_origin" in items.columns else items
    if not hashed.empty:
        groups = pd.Series(split_groups(hashed), index=hashed.index)
        for group, splits, grp in _multi_split(hashed, groups):
            kind = "recording" if "/file:" in group or "/uri:" in group else "speaker"
            problems.append(f"{kind} {group} is in splits {', '.join(splits)} ({len(grp)} utterances)")
    return problems


def _duplicate_rank(row: pd.Series) -> tuple[int, int, str]:
    """Sort key of the duplicate-resolution rule (smaller wins)."""
    return (
        0 if row.get("sentiment_origin") == "human" else 1,
        0 if row.get("transcript_origin") == "human" else 1,
        str(row.get("utterance_id")),
    )


def resolve_duplicate_segments(items: pd.DataFrame) -> StageResult:
    """Keep one row per `segment_key` (the same audio listed twice, possibly by two sources).

    Rule: prefer a human sentiment label, then a human transcript, then the lexicographically
    smallest utterance_id. The others become `duplicate_segment` rejects naming the kept row.
    Rows without a segment_key are kept as they are (nothing to compare them on).
    """
    if items.empty or "segment_key" not in items.columns:
        return StageResult(items=items.copy(), rejects=rejects_frame())
    has_key = pd.Series(present_mask(items["segment_key"]), index=items.index, dtype=bool)
    dropped: list = []
    rejects: list[dict[str, str]] = []
    keyed = items[has_key]
    dup = keyed[keyed["segment_key"].duplicated(keep=False)]
    for key, grp in dup.groupby("segment_key", sort=True):
        ranked = sorted(grp.index, key=lambda i: _duplicate_rank(grp.loc[i]))
        kept = grp.loc[ranked[0]]
        for idx in ranked[1:]:
            row = grp.loc[idx]
            dropped.append(idx)
            rejects.append(
                reject_row(
                    source=str(row.get("source")),
                    input_ref=str(row.get("utterance_id")),
                    stage=STAGE,
                    reason="duplicate_segment",
                    detail=(
                        f"{row.get('utterance_id')} is the same audio (segment {key}) as "
                        f"{kept.get('utterance_id')}, which was kept (rule: human sentiment, then human "
                        f"transcript, then smallest utterance_id); remove one listing to silence this"
                    ),
                )
            )
    return StageResult(items=items.drop(index=dropped), rejects=rejects_frame(rejects))


def split_counts(items: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Utterances per source and split, every split present (0 when empty); key `all` totals."""
    counts: dict[str, dict[str, int]] = {}
    if not items.empty:
        for (source, split), n in items.groupby(["source", "split"], dropna=False).size().items():
            counts.setdefault(str(source), {s: 0 for s in SPLITS})[str(split)] = int(n)
    total = {s: sum(c.get(s, 0) for c in counts.values()) for s in SPLITS}
    return {**dict(sorted(counts.items())), "all": total}


def empty_split_warnings(items: pd.DataFrame) -> list[str]:
    """Sentences for splits left empty overall or for a sentiment class (small corpora)."""
    warnings: list[str] = []
    totals = split_counts(items)["all"]
    for split in SPLITS:
        if totals[split] == 0:
            warnings.append(f"split {split} is empty: too few speakers/recordings for the fractions")
    if not items.empty and "sentiment" in items.columns:
        for split in SPLITS:
            present = set(items.loc[items["split"] == split, "sentiment"].dropna())
            missing = [c for c in SENTIMENTS if c not in present]
            if totals[split] and missing:
                warnings.append(f"split {split} has no {', '.join(missing)} utterances")
    return warnings
