"""Guards against a failed source: one that accepted nothing, or rejected most of what it found.

A build whose source delivered nothing (every file unreadable, a wrong path inside the right kind of
folder) still produced a release that validated and moved LATEST: the user learnt weeks later. Now
such a build stops, unless the spec says this source may fail (`run.allow_failed_sources`), in which
case the guard is a warning at the top of the card. Checked twice: after ingest (before any labelling
is paid for) and at publish, where rejects of every stage count (docs/guards.md, "Failed sources").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from tasks.core import guards
from tasks.spec import DatasetSpec

ACCEPTED_NOTHING = "source_accepted_nothing"
TOO_MANY_REJECTS = "source_reject_share"
_REASON_EXAMPLES = 3


def _reasons(reasons: Iterable[str]) -> str:
    counts = Counter(reasons).most_common(_REASON_EXAMPLES)
    return ", ".join(f"{n} {reason}" for reason, n in counts)


def source_verdicts(spec: DatasetSpec, found: Mapping[str, int], accepted: Mapping[str, int],
                    reject_reasons: Mapping[str, list[str]], stage: str) -> list[dict[str, Any]]:
    """The guard records for every failed source (level error, or warning when the spec allows it)."""
    records = []
    allowed = set(spec.run.allow_failed_sources)
    limit = spec.run.max_reject_share
    for source in spec.sources:
        name = source.name
        n_found, n_ok = int(found.get(name, 0)), int(accepted.get(name, 0))
        reasons = list(reject_reasons.get(name, []))
        why = f" (rejects: {_reasons(reasons)})" if reasons else ""
        level = "warning" if name in allowed else "error"
        fix = ("allowed by run.allow_failed_sources" if name in allowed else
               "fix the source, or list it in run.allow_failed_sources to publish anyway")
        if n_ok == 0:
            records.append(guards.guard(
                ACCEPTED_NOTHING,
                f"source {name!r} accepted none of its {n_found} found item(s) after {stage}{why}; {fix}",
                level=level, source=name, found=n_found, accepted=0, stage=stage))
        elif n_found and len(reasons) / n_found > limit:
            share = len(reasons) / n_found
            records.append(guards.guard(
                TOO_MANY_REJECTS,
                f"source {name!r} rejected {len(reasons)} of {n_found} found items ({share:.0%}) after {stage}, "
                f"over run.max_reject_share {limit:g}{why}; "
                + (fix if name in allowed else f"{fix}, or raise run.max_reject_share"),
                level=level, source=name, found=n_found, rejected=len(reasons), share=round(share, 4), stage=stage))
    return records


def enforce(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raise GuardError naming every failed source not allowed to fail; return the allowed ones (warnings)."""
    errors = [r for r in records if r["level"] == "error"]
    if errors:
        name = errors[0]["guard"] if len({r["guard"] for r in errors}) == 1 else "failed_sources"
        raise guards.GuardError(name, "the build stopped and LATEST was not moved: "
                                + "; ".join(r["message"] for r in errors))
    return records


def check_ingest(spec: DatasetSpec, ingest_results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """After ingest: stop before labelling when a source failed; returns the allowed-failure warnings."""
    from tasks.core.shards import read_frame

    found, accepted, reasons = {}, {}, {}
    for result in ingest_results:
        name = result["source"]
        found[name] = int(result["found"])
        rejects = read_frame(result["rejects_uri"])
        reasons[name] = [str(r) for r in rejects["reason"]] if len(rejects) else []
        accepted[name] = found[name] - len(reasons[name])
    return enforce(source_verdicts(spec, found, accepted, reasons, "ingest"))


def check_release(spec: DatasetSpec, found: Mapping[str, int], utterances: pd.DataFrame,
                  rejects: pd.DataFrame) -> list[dict[str, Any]]:
    """At publish, before anything is written: rejects of every stage count."""
    accepted = utterances["source"].value_counts().to_dict() if len(utterances) else {}
    reasons: dict[str, list[str]] = {}
    for source, reason in zip(rejects.get("source", []), rejects.get("reason", []), strict=True):
        reasons.setdefault(str(source), []).append(str(reason))
    return enforce(source_verdicts(spec, found, accepted, reasons, "all stages"))
