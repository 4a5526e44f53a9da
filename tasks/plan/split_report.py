"""Each source's split shares against the requested fractions, and the `split_skew` guard.

Why: splits are speaker-disjoint and assigned per speaker, so a corpus with few speakers cannot
follow the fractions (TESS has 2 speakers: one landed in train, the other in test, and test became
33 % of the build). Nothing in the release showed it. The card's `split_shares` section lists, per
source, the utterances per split, their shares, the largest deviation from the requested fraction
and the policy that assigned them; a source whose deviation exceeds `splits.max_skew` (default
0.15, i.e. 15 percentage points) fires a `split_skew` warning naming the fix (`sources[].split` or
`sources[].split_policy: utterance_stratified`). Sources whose rows all carry the corpus's official
split are reported but never warned about: the corpus chose those shares. Sources under a policy
fire a `split_policy` info guard, so the card says which sources were split how (and that speakers
of an `utterance_stratified` source appear in several splits).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from manifests.schema import SPLITS
from tasks.core import guards
from tasks.spec import DatasetSpec

SKEW_GUARD = "split_skew"
POLICY_GUARD = "split_policy"


def _policy(source: Any, origins: pd.Series) -> str:
    """How the source's rows got their split: `split:<x>`, `utterance_stratified`, `official` or `speaker`."""
    if source is not None and source.split is not None:
        return f"split:{source.split}"
    if source is not None and source.split_policy == "utterance_stratified":
        return "utterance_stratified"
    if len(origins) and (origins == "official").all():
        return "official"
    return "speaker"


def _groups(rows: pd.DataFrame) -> int:
    """Distinct speakers (else recordings) among the rows, i.e. the units a speaker split moves."""
    from tasks.plan.splits import split_groups

    return len(set(split_groups(rows)))


def shares_partial(items: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per source of one shard: utterances per split and how many carry an official split (mergeable)."""
    out: dict[str, dict[str, Any]] = {}
    if items.empty or "split" not in items.columns:
        return out
    origins = items["split_origin"] if "split_origin" in items.columns else pd.Series("hashed", index=items.index)
    for name, rows in items.groupby("source", sort=True):
        out[str(name)] = {"counts": {s: int((rows["split"] == s).sum()) for s in SPLITS},
                          "rows": int(len(rows)), "official": int((origins.loc[rows.index] == "official").sum())}
    return out


def merge_partials(partials: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Sum of `shares_partial` results."""
    merged: dict[str, dict[str, Any]] = {}
    for part in partials:
        for name, entry in part.items():
            cell = merged.setdefault(name, {"counts": dict.fromkeys(SPLITS, 0), "rows": 0, "official": 0})
            for s in SPLITS:
                cell["counts"][s] += int(entry["counts"].get(s, 0))
            cell["rows"] += int(entry["rows"])
            cell["official"] += int(entry["official"])
    return dict(sorted(merged.items()))


def split_shares(items: pd.DataFrame, spec: DatasetSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The card's `split_shares` section and the guards it fires (items must carry `split`)."""
    partial = shares_partial(items)
    groups: dict[str, int] = {}
    if partial:
        for name, rows in items.groupby("source", sort=True):
            groups[str(name)] = _groups(rows)
    return shares_from_counts(partial, groups, spec)


def shares_from_counts(merged: dict[str, dict[str, Any]], groups: dict[str, int],
                       spec: DatasetSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`split_shares` from merged per-source counts and distinct speakers/recordings per source."""
    requested = {s: float(getattr(spec.splits, s)) for s in SPLITS}
    tolerance = float(spec.splits.max_skew)
    sources = {s.name: s for s in spec.sources}
    section: dict[str, Any] = {"requested": requested, "max_skew": tolerance, "by_source": {}}
    fired: list[dict[str, Any]] = []
    if not merged:
        return section, fired
    for name, cell in sorted(merged.items()):
        counts = {s: int(cell["counts"].get(s, 0)) for s in SPLITS}
        total = sum(counts.values())
        shares = {s: round(counts[s] / total, 4) if total else 0.0 for s in SPLITS}
        deviation = round(max(abs(shares[s] - requested[s]) for s in SPLITS), 4) if total else 0.0
        all_official = pd.Series(["official" if cell["official"] == cell["rows"] else "hashed"], dtype=object)
        policy = _policy(sources.get(name), all_official)
        entry: dict[str, Any] = {"policy": policy, "utterances": total, "groups": int(groups.get(name, 0)),
                                 "counts": counts, "shares": shares, "max_deviation": deviation}
        entry["skewed"] = policy == "speaker" and deviation > tolerance
        if policy == "utterance_stratified":
            entry["speakers_in_several_splits"] = True
        section["by_source"][name] = entry
        described = " / ".join(f"{s} {shares[s]:.0%}" for s in SPLITS)
        wanted = "/".join(f"{requested[s]:.0%}".rstrip("%") for s in SPLITS)
        if entry["skewed"]:
            fired.append(guards.guard(
                SKEW_GUARD,
                f"source {name}: its {total} utterance(s) went {described} (requested {wanted} %, tolerance "
                f"splits.max_skew {tolerance:g}) because its {entry['groups']} speaker(s)/recording(s) are "
                "assigned whole; set sources[].split (e.g. train) to place the whole source, or "
                "sources[].split_policy: utterance_stratified for an acted corpus with too few speakers",
                source=name, counts=counts, shares=shares, requested=requested, max_deviation=deviation,
                groups=entry["groups"]))
        elif policy.startswith("split:"):
            fired.append(guards.guard(
                POLICY_GUARD, f"source {name}: all {total} utterance(s) put into {policy[6:]} by sources[].split",
                level="info", source=name, policy=policy, counts=counts))
        elif policy == "utterance_stratified":
            fired.append(guards.guard(
                POLICY_GUARD,
                f"source {name}: split per utterance within each speaker and emotion ({described}); its "
                f"{entry['groups']} speaker(s) appear in several splits by design (split_policy: "
                "utterance_stratified), so dev/test scores on it are not speaker-independent",
                level="info", source=name, policy=policy, counts=counts))
    counts = {s: sum(int(c["counts"].get(s, 0)) for c in merged.values()) for s in SPLITS}
    total = sum(counts.values())
    section["all"] = {"utterances": total, "counts": counts,
                      "shares": {s: round(counts[s] / total, 4) if total else 0.0 for s in SPLITS}}
    return section, fired
