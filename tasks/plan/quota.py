"""ASR-stage balancing from counts: quotas, per-source takes and rank thresholds, layout-independent.

Why: `tasks.plan.balance.sample_asr_rows` needs every row of a split in one frame. Its choice is in
fact a function of counts and ranks only: within a (split, class) the round-robin over sources with
the `max_source_share` cap takes `t_s` items from source `s`, where `t_s` depends only on the sources'
counts, and from each source it takes the `t_s` items of smallest rank `seeded_hex(seed, utterance_id)`.
So the plan reduces per-(split, class, source) counts to the takes (`allocation`), then finds each
group's rank threshold (the `t_s`-th smallest rank) from a merged histogram of the ranks' first 16 bits
and an exact pass over the boundary bin only. A row is picked when its rank <= the threshold: the same
set as the whole-frame function, for any shard layout or worker count.

Oversampling (quota n > m items): every item gets q = n // m variants, and the r = n % m items that
the round-robin would visit first get one more (variant q), exactly today's `slot i -> order[i % m]`:
the first r of the visiting order are `allocation(counts, r, cap)` smallest ranks per source.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from manifests.schema import SENTIMENTS, SPLITS
from tasks.core.hashing import seeded_hex
from tasks.plan.balance import _source_cap, _target, present_classes
from tasks.spec import BalanceSpec

BINS = 1 << 16  # histogram of a rank's first 4 hex digits
SEP = "|"


def group_key(split: str, cls: str, source: str) -> str:
    return f"{split}{SEP}{cls}{SEP}{source}"


def rank_bin(rank: str) -> int:
    return int(rank[:4], 16)


def _fill(limits: list[int], n: int) -> list[int]:
    """Round-robin one item per source per round (sources in order) until n: items taken per source."""
    lo, hi = 0, max(limits, default=0)
    while lo < hi:  # largest level k with sum(min(l, k)) <= n
        mid = (lo + hi + 1) // 2
        if sum(min(lim, mid) for lim in limits) <= n:
            lo = mid
        else:
            hi = mid - 1
    takes = [min(lim, lo) for lim in limits]
    rest = n - sum(takes)
    for i, lim in enumerate(limits):  # the partial round, in source order
        if rest <= 0:
            break
        if lim > lo:
            takes[i] += 1
            rest -= 1
    return takes


def allocation(counts: dict[str, int], n: int, cap: int, seed: int) -> dict[str, int]:
    """Items per source of `balance.pick_order(by_source, n, cap, seed)`, from the sources' counts alone."""
    sources = sorted(counts, key=lambda s: seeded_hex(seed, f"source:{s}"))
    n = min(n, sum(counts.values()))
    capped = [min(counts[s], cap) for s in sources]
    takes = _fill(capped, n) if n <= sum(capped) else _fill([counts[s] for s in sources], n)
    return dict(zip(sources, takes, strict=True))


def plan_balance(counts: dict[str, int], spec: BalanceSpec, seed: int, eligibility_on: bool
                 ) -> tuple[dict[str, dict[str, Any]], dict[str, Any], list[str]]:
    """(per group: mode/take/copies, the report's `splits` + `by_source` selected counts, warnings).

    `counts` maps `group_key(split, class, source)` to the ASR candidates of that group. Modes: `all`
    (every row, variant 0), `select` (the `take` smallest ranks, variant 0), `extra` (every row gets
    variants 0..copies-1, the `take` smallest ranks also variant `copies`). Errors and warnings are
    those of `balance.sample_asr_rows`, in the same order.
    """
    by_split: dict[str, dict[str, dict[str, int]]] = {}
    for key, n in counts.items():
        split, cls, source = key.split(SEP, 2)
        by_split.setdefault(split, {}).setdefault(cls, {})[source] = int(n)
    groups: dict[str, dict[str, Any]] = {}
    splits_report: dict[str, Any] = {}
    selected: dict[str, int] = {}
    warnings: list[str] = []
    for split in SPLITS:
        classes = by_split.get(split, {})
        if split not in spec.splits:
            entry = {"balanced": False, "target_per_class": None, "classes": {}}
            for cls in SENTIMENTS:
                m = sum(classes.get(cls, {}).values())
                entry["classes"][cls] = {"available": m, "selected": m, "distinct": m}
                for source, c in classes.get(cls, {}).items():
                    groups[group_key(split, cls, source)] = {"mode": "all", "take": c, "copies": 1}
                    selected[group_key(split, cls, source)] = c
            splits_report[split] = entry
            continue
        totals = {c: sum(classes.get(c, {}).values()) for c in SENTIMENTS}
        present = present_classes(totals, split, spec, warnings, eligibility_on)
        entry = {"balanced": True, "target_per_class": None, "classes": {}}
        splits_report[split] = entry
        if not present:
            warnings.append(f"split {split} has no labelled utterances to balance")
            continue
        n = _target(present, spec)
        entry["target_per_class"] = n
        cap = _source_cap(n, spec.max_source_share)
        for cls in SENTIMENTS:
            by_source = classes.get(cls, {})
            m = totals[cls]
            if m == 0:
                entry["classes"][cls] = {"available": 0, "selected": 0, "distinct": 0}
                continue
            if n <= m:
                takes = allocation(by_source, n, cap, seed)
                rows = dict(takes)
                for source, c in by_source.items():
                    groups[group_key(split, cls, source)] = {"mode": "select", "take": takes[source], "copies": 1,
                                                             "available": c}
            else:
                q, r = divmod(n, m)
                takes = allocation(by_source, r, cap, seed)
                rows = {s: c * q + takes[s] for s, c in by_source.items()}
                for source, c in by_source.items():
                    groups[group_key(split, cls, source)] = {"mode": "extra", "take": takes[source], "copies": q,
                                                             "available": c}
            for source, k in rows.items():
                selected[group_key(split, cls, source)] = k
            entry["classes"][cls] = {"available": m, "selected": n, "distinct": min(n, m)}
            top = max(rows.values())
            if spec.max_source_share < 1.0 and top > cap:
                name = min((s for s, k in rows.items() if k == top), key=str)
                warnings.append(
                    f"split {split} class {cls}: source {name} provides {top}/{n} rows, above "
                    f"max_source_share {spec.max_source_share:g}, because other sources have too few items"
                )
    return groups, {"splits": splits_report, "selected": selected}, warnings


def needs_threshold(group: dict[str, Any]) -> bool:
    """A group whose take is some but not all of its rows: its rank threshold must be found."""
    return group["mode"] in ("select", "extra") and 0 < group["take"] < group["available"]


def boundaries(groups: dict[str, dict[str, Any]], hist: dict[str, np.ndarray]) -> dict[str, tuple[int, int]]:
    """Per group needing a threshold: (boundary bin, how many of that bin's smallest ranks are taken)."""
    out: dict[str, tuple[int, int]] = {}
    for key, group in sorted(groups.items()):
        if not needs_threshold(group):
            continue
        counts = hist[key]
        cum = np.cumsum(counts)
        b = int(np.searchsorted(cum, group["take"], side="left"))
        below = int(cum[b - 1]) if b else 0
        out[key] = (b, group["take"] - below)
    return out


def thresholds(bounds: dict[str, tuple[int, int]], ranks: dict[str, list[str]]) -> dict[str, str]:
    """The exact threshold rank per group from the boundary bins' ranks gathered from every shard."""
    out = {}
    for key, (_, k) in bounds.items():
        found = sorted(ranks.get(key, []))
        if len(found) < k:
            raise RuntimeError(f"balance group {key}: boundary bin holds {len(found)} ranks, expected >= {k}")
        out[key] = found[k - 1]
    return out


def picks(group: dict[str, Any] | None, threshold: str | None, rank: str) -> int:
    """How many variants (0..n-1) a candidate row of `group` gets in the ASR stage."""
    if group is None:
        return 0
    mode, take, copies = group["mode"], group["take"], group["copies"]
    if mode == "all":
        return 1
    if take >= group["available"]:
        extra = 1
    elif take == 0:
        extra = 0
    else:
        extra = 1 if threshold is not None and rank <= threshold else 0
    return extra if mode == "select" else copies + extra


def source_table(available: dict[str, int], selected: dict[str, int]) -> dict:
    """{split: {source: {class: {available, selected}}}} of the balance report."""
    table: dict = {}
    for key in sorted(set(available) | {k for k, v in selected.items() if v}):
        split, cls, source = key.split(SEP, 2)
        cell = table.setdefault(split, {}).setdefault(source, {})
        cell[cls] = {"available": int(available.get(key, 0)), "selected": int(selected.get(key, 0))}
    return table
