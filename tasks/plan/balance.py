"""ASR-stage sampling: a uniform sentiment distribution in train, natural dev/test.

Why hashes instead of an RNG: an utterance's rank is `sha256(f"{seed}:{utterance_id}")`, which
does not depend on the other rows, so a refresh that adds 10 % more data keeps almost every earlier
choice (new items only displace the earlier items they outrank).

Per balanced split (default: train) and sentiment class, the target n is
- undersample: the smallest class's count;  oversample: the largest;
- target_size: `target_per_class` (undersampling classes above it, oversampling those below).
Classes with no rows: `on_missing_class="error"` raises ValueError naming split and class;
"balance_existing" balances the classes present and adds a warning to the report.

Pick order inside a class (the source cap, against source/sentiment confounds): each source's
items are ordered by their hash; sources are visited round-robin in the order of
`sha256(f"{seed}:source:{source}")`, one item per turn, skipping a source once it has given
`cap = max(1, floor(max_source_share * n))` items or ran out. When every source with items left is
capped and n is not reached, the cap is lifted and the round-robin continues over those sources
(the cap holds "when other sources can fill it"). With one source this is simply "smallest hashes".

Oversampling (n > items): every item is used once (variant 0), then repeats cycle through the pick
order: slot i is item `order[i % m]` with `variant = i // m`, so repeat counts differ by at most one
within a class. A repeat is a new row: the flow builds row_id from (utterance_id, variant)
(`tasks.plan.stage_rows.recipe_key`) and draws the augmentation recipe per row_id, so repeats are
distinct augmented variants, never byte-identical copies. The flow relies on that: do not
disable augmentation for oversampled train rows.
Because oversampling never leaves an item out, an oversampled class's source shares are those of
its items; the report flags a cap that could not be met.

Dev/test (and any split not in `balance_splits`) keep all rows with a sentiment, variant 0.
Rows with a null sentiment never enter the ASR stage (counted as excluded).

Eligibility (`eligible`): the spec's `eligibility.<stage>.<split>` lists the label origins a stage
may use in a split (e.g. ASR test = human sentiment and human transcripts only). Ineligible rows
are left out *before* balancing, so an "impossible balance" message names the classes that are
missing after the rules; they are exclusions (counted in the card), not rejects.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from manifests.schema import SENTIMENTS, SPLITS
from tasks.core.hashing import seeded_hex
from tasks.spec import BalanceSpec, EligibilitySpec

ORIGIN_FIELDS: tuple[str, ...] = ("sentiment_origin", "transcript_origin")
STAGES: tuple[str, ...] = ("asr", "classifier")


def eligible(
    items: pd.DataFrame, stage: str, rules: EligibilitySpec | dict | None
) -> tuple[pd.Series, dict]:
    """Mask of rows the stage may use under the spec's origin rules, and the exclusion counts.

    A rule for (stage, split) lists allowed values per origin field; a row is eligible when every
    listed field holds an allowed value (a null origin never matches a rule). Splits without a rule,
    and rows without a split, are eligible. Counts: {"total": n, "by_split": {split: {"total": n,
    "<field>": {origin: n}}}}; a row failing two fields counts once in the totals.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    if rules is None:
        rules = EligibilitySpec()
    elif isinstance(rules, dict):
        rules = EligibilitySpec.model_validate(rules)
    mask = pd.Series(True, index=items.index, dtype=bool)
    report: dict = {"total": 0, "by_split": {}}
    per_split = getattr(rules, stage)
    if items.empty or not per_split or "split" not in items.columns:
        return mask, report
    for split, rule in sorted(per_split.items()):
        in_split = items["split"] == split
        failed = pd.Series(False, index=items.index, dtype=bool)
        entry: dict = {"total": 0}
        for field in ORIGIN_FIELDS:
            allowed = getattr(rule, field)
            if allowed is None:
                continue
            values = items[field] if field in items.columns else pd.Series(None, index=items.index, dtype=object)
            bad = in_split & ~values.isin(allowed)
            if bad.any():
                named = values[bad].astype(object).where(values[bad].notna(), "unknown").map(str)
                entry[field] = {str(k): int(n) for k, n in named.value_counts().sort_index().items()}
            failed |= bad
        entry["total"] = int(failed.sum())
        if entry["total"]:
            report["by_split"][str(split)] = entry
        mask &= ~failed
    report["total"] = int((~mask).sum())
    return mask, report


def recipe_signature(recipe: object) -> str:
    """What decides a variant's audio (the recipe without aug_seed, which only seeds the draw).

    Two oversampled repeats of one utterance with equal signatures would be byte-identical
    duplicates; the flow redraws a repeat until its signature is new.
    """
    fields = dict(recipe.to_row()) if hasattr(recipe, "to_row") else dict(recipe)  # type: ignore[call-overload]
    fields.pop("aug_seed", None)
    return json.dumps(fields, sort_keys=True, default=str)


def _rank(seed: int, key: str) -> str:
    """Stable sort key of an item or source (hex digest compares like the number)."""
    return seeded_hex(seed, key)


def pick_order(by_source: dict[str, list[str]], n: int, cap: int, seed: int) -> list[str]:
    """Up to n distinct items chosen round-robin over sources (hash order) with a per-source cap."""
    sources = sorted(by_source, key=lambda s: _rank(seed, f"source:{s}"))
    queues = {s: sorted(by_source[s], key=lambda u: _rank(seed, u)) for s in sources}
    taken = dict.fromkeys(sources, 0)
    order: list[str] = []
    for limit in (cap, math.inf):  # second pass: cap lifted because nobody else can fill
        progressed = True
        while len(order) < n and progressed:
            progressed = False
            for s in sources:
                if len(order) >= n:
                    break
                if taken[s] < len(queues[s]) and taken[s] < limit:
                    order.append(queues[s][taken[s]])
                    taken[s] += 1
                    progressed = True
    return order


def _source_cap(n: int, share: float) -> int:
    return n if share >= 1.0 else max(1, math.floor(share * n + 1e-9))


def _target(counts: dict[str, int], spec: BalanceSpec) -> int:
    if spec.method == "undersample":
        return min(counts.values())
    if spec.method == "oversample":
        return max(counts.values())
    if spec.target_per_class is None:
        raise ValueError("balance.method 'target_size' needs balance.target_per_class (an integer >= 1)")
    return spec.target_per_class


def present_classes(counts: dict[str, int], split: str, spec: BalanceSpec, warnings: list[str],
                    eligibility_on: bool = False) -> dict[str, int]:
    """The classes of a split that have rows; a missing class is an error or a warning, as the spec says
    (shared by the whole-frame sample and the per-shard quotas, `tasks.plan.quota`)."""
    missing = [c for c in SENTIMENTS if counts.get(c, 0) == 0]
    if missing and spec.on_missing_class == "error":
        raise ValueError(
            f"split {split!r} has no {', '.join(repr(c) for c in missing)} utterances"
            f"{' eligible for the ASR stage' if eligibility_on else ''}, so it cannot be balanced; add data"
            f"{', relax eligibility.asr.' + split if eligibility_on else ''} or set "
            f"balance.on_missing_class: balance_existing"
        )
    present = {c: n for c, n in counts.items() if n > 0}
    if missing and present:
        warnings.append(
            f"split {split} has no {', '.join(missing)} utterances; balanced among {', '.join(present)}"
        )
    return present


def _balance_split(
    rows: pd.DataFrame, split: str, spec: BalanceSpec, seed: int, warnings: list[str], eligibility_on: bool = False
) -> tuple[pd.DataFrame, dict]:
    """Selected rows (with `variant`) of one balanced split and its report entry."""
    counts = {c: int((rows["sentiment"] == c).sum()) for c in SENTIMENTS}
    present = present_classes(counts, split, spec, warnings, eligibility_on)
    entry: dict = {"balanced": True, "target_per_class": None, "classes": {}}
    if not present:
        warnings.append(f"split {split} has no labelled utterances to balance")
        return rows.iloc[0:0].assign(variant=pd.Series(dtype="int64")), entry
    n = _target(present, spec)
    entry["target_per_class"] = n
    cap = _source_cap(n, spec.max_source_share)
    parts: list[pd.DataFrame] = []
    for cls in SENTIMENTS:
        cls_rows = rows[rows["sentiment"] == cls]
        m = len(cls_rows)
        if m == 0:
            entry["classes"][cls] = {"available": 0, "selected": 0, "distinct": 0}
            continue
        by_uid = cls_rows.set_index("utterance_id", drop=False)
        by_source = cls_rows.groupby("source")["utterance_id"].apply(list).to_dict()
        order = pick_order(by_source, min(n, m), cap, seed)
        slots = [(order[i % m], i // m) for i in range(n)] if n > m else [(u, 0) for u in order]
        picked = by_uid.loc[[u for u, _ in slots]].reset_index(drop=True)
        picked["variant"] = [v for _, v in slots]
        parts.append(picked)
        shares = picked["source"].value_counts()
        entry["classes"][cls] = {"available": m, "selected": n, "distinct": min(n, m)}
        if spec.max_source_share < 1.0 and shares.max() > cap:
            top = str(shares.idxmax())
            warnings.append(
                f"split {split} class {cls}: source {top} provides {shares.max()}/{n} rows, above "
                f"max_source_share {spec.max_source_share:g}, because other sources have too few items"
            )
    return pd.concat(parts, ignore_index=True), entry


def _source_table(available: pd.DataFrame, selected: pd.DataFrame) -> dict:
    """{split: {source: {class: {available, selected}}}}."""
    table: dict = {}
    for frame, key in ((available, "available"), (selected, "selected")):
        for (split, source, cls), cnt in frame.groupby(["split", "source", "sentiment"]).size().items():
            cell = table.setdefault(str(split), {}).setdefault(str(source), {})
            cell.setdefault(str(cls), {"available": 0, "selected": 0})[key] = int(cnt)
    return table


def sample_asr_rows(
    items: pd.DataFrame,
    spec: BalanceSpec,
    seed: int,
    balance_splits: tuple[str, ...] | None = None,
    eligibility: EligibilitySpec | dict | None = None,
) -> tuple[pd.DataFrame, dict]:
    """ASR-stage rows (with `variant`) and a report of what was chosen and why.

    `balance_splits` defaults to the spec's `balance.splits`; `eligibility` (the spec's section)
    leaves out rows whose label origins a split may not use, before balancing.
    """
    if balance_splits is None:
        balance_splits = tuple(spec.splits)
    warnings: list[str] = []
    report: dict = {
        "method": spec.method,
        "max_source_share": spec.max_source_share,
        "balanced_splits": list(balance_splits),
        "splits": {},
        "excluded": {},
        "by_source": {},
        "warnings": warnings,
    }
    labelled_mask = items["sentiment"].isin(SENTIMENTS) if "sentiment" in items.columns else None
    if labelled_mask is None:
        labelled_mask = pd.Series(False, index=items.index)
    split_ok = items["split"].isin(SPLITS) if "split" in items.columns else pd.Series(False, index=items.index)
    allowed, eligibility_report = eligible(items, "asr", eligibility)
    excluded = {
        "null_sentiment": int((~labelled_mask).sum()),
        "no_split": int((labelled_mask & ~split_ok).sum()),
        "ineligible": int((labelled_mask & split_ok & ~allowed).sum()),
        "not_selected": 0,
    }
    report["eligibility"] = eligibility_report
    labelled = items[labelled_mask & split_ok & allowed]
    eligibility_on = bool(eligibility_report["by_split"]) or bool(getattr(eligibility, "asr", None))
    parts: list[pd.DataFrame] = []
    for split in SPLITS:
        rows = labelled[labelled["split"] == split]
        if split in balance_splits:
            picked, entry = _balance_split(rows, split, spec, seed, warnings, eligibility_on)
            chosen = set(picked["utterance_id"])
            excluded["not_selected"] += int((~rows["utterance_id"].isin(chosen)).sum())
        else:
            picked = rows.reset_index(drop=True).assign(variant=0)
            entry = {"balanced": False, "target_per_class": None, "classes": {}}
            for cls in SENTIMENTS:
                m = int((rows["sentiment"] == cls).sum())
                entry["classes"][cls] = {"available": m, "selected": m, "distinct": m}
        report["splits"][split] = entry
        parts.append(picked)
    non_empty = [p for p in parts if not p.empty]
    out = pd.concat(non_empty, ignore_index=True) if non_empty else items.iloc[0:0].assign(variant=0)
    out["variant"] = out["variant"].astype("int64")
    out = out.sort_values(["split", "sentiment", "utterance_id", "variant"], kind="stable")
    out = out.reset_index(drop=True)
    report["excluded"] = excluded
    report["by_source"] = _source_table(labelled, out)
    return out, report
