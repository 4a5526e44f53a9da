"""Warnings the card derives from its own sections (guards no stage can raise on its own).

Low labeler agreement is only known once the release exists: `tasks.label.sentiment.agreement` scores
the offline labelers on held-out human labels at publish time. A labeler that agrees with people
little better than chance on a source (VADER scores 0.17 macro-F1 on acted TESS speech) makes
that source's pseudo-labels noise; the card must say so at the top, not in a JSON blob.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.core import guards
from tasks.publish.card_common import LOW_AGREEMENT_MACRO_F1, LOW_AGREEMENT_MIN_N


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{float(value):.2f}"


def agreement_guards(section: Mapping[str, Any] | None, threshold: float = LOW_AGREEMENT_MACRO_F1,
                     min_n: int = LOW_AGREEMENT_MIN_N) -> list[dict[str, Any]]:
    """`low_labeler_agreement` warnings from the card's `sentiment_agreement` section.

    One record per (labeler, source) whose macro-F1 is below `threshold` on at least `min_n`
    scored rows. The labeler the build used is checked; when it was not scored (e.g. Comprehend)
    every scored labeler is, since the section then only says how the alternatives would do.
    """
    if not isinstance(section, Mapping) or not isinstance(section.get("labelers"), Mapping):
        return []
    labelers: Mapping[str, Any] = section["labelers"]
    in_use = section.get("labeler_in_use")
    names = [in_use] if in_use in labelers else sorted(labelers)
    out = []
    for name in names:
        per_source = (labelers.get(name) or {}).get("per_source") or {}
        for source, sc in sorted(per_source.items()):
            if not isinstance(sc, Mapping):
                continue
            n, f1 = int(sc.get("n") or 0), sc.get("macro_f1")
            if n < min_n or f1 is None or float(f1) >= threshold:
                continue
            used = " (the labeler this build used)" if name == in_use else ""
            out.append(guards.guard(
                "low_labeler_agreement",
                f"{name}{used} agrees poorly with human sentiment labels on {source}: macro-F1 "
                f"{_fmt(f1)}, accuracy {_fmt(sc.get('accuracy'))} on {n} held-out rows (below "
                f"{threshold:.2f}); its pseudo-labels for data like {source} are unreliable",
                labeler=name, source=str(source), n=n, macro_f1=f1, accuracy=sc.get("accuracy"),
                threshold=threshold,
            ))
    return out


def derived_guards(card: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every guard the card derives from its sections (today: low labeler agreement)."""
    return agreement_guards(card.get("sentiment_agreement") or card.get("agreement"))
