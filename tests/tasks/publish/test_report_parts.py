"""The person-facing parts of the card: warnings first, h:mm:ss, fixed colours, no empty panels."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tasks.label.sentiment.agreement import disagreements, sentiment_agreement
from tasks.publish.card_common import fmt_hms
from tasks.publish.card_warnings import agreement_guards
from tasks.publish.colors import CLASS_COLOURS, ORIGIN_COLOURS, class_colour, origin_colour
from tasks.publish.plots import _figure, _plot_groups, _stacked


def _scores(n: int, f1: float) -> dict[str, Any]:
    return {"n": n, "accuracy": f1, "macro_f1": f1, "coverage": 1.0, "f1": {}, "confusion": {}}


AGREEMENT = {"labeler_in_use": "vader", "labelers": {"vader": {
    "overall": _scores(60, 0.4), "per_source": {"tess": _scores(40, 0.17), "calls": _scores(20, 0.9),
                                                "tiny": _scores(3, 0.0)}}}}


def test_hours_read_h_mm_ss():
    assert fmt_hms(0.004593) == "0:00:17" and fmt_hms(1.7) == "1:42:00" and fmt_hms(0) == "0:00:00"
    assert fmt_hms(27.25) == "27:15:00" and fmt_hms(None) == "–"


def test_low_labeler_agreement_is_a_warning_per_source():
    (record,) = agreement_guards(AGREEMENT)  # calls agrees, tiny has too few rows to judge
    assert record["guard"] == "low_labeler_agreement" and record["level"] == "warning"
    assert "tess" in record["message"] and "0.17" in record["message"] and "used" in record["message"]
    assert record["detail"]["n"] == 40
    assert agreement_guards({"available": False, "reason": "no human labels"}) == []


def test_class_and_origin_colours_are_fixed_whatever_order_the_data_comes_in():
    assert class_colour("negative") == CLASS_COLOURS["negative"] and origin_colour("human") == ORIGIN_COLOURS["human"]
    assert origin_colour("some_new_labeler") == origin_colour("some_new_labeler")  # hashed, not cycled
    seen = []
    for table in ({"a": {"positive": 1, "negative": 2}}, {"a": {"negative": 5}, "b": {"mapped_emotion": 1}}):
        fig, axes = _figure(1, "t")
        _stacked(axes[0][0], table, "t", ["negative", "neutral", "positive", "mapped_emotion"],
                 lambda c: class_colour(c) if c in CLASS_COLOURS else origin_colour(c))
        handles, labels = axes[0][0].get_legend_handles_labels()
        seen.append({lab: tuple(round(v, 3) for v in h.patches[0].get_facecolor()) for h, lab in zip(handles, labels,
                                                                                                   strict=True)})
    assert seen[0]["negative"] == seen[1]["negative"]
    from matplotlib.colors import to_rgba

    assert seen[0]["negative"] == tuple(round(v, 3) for v in to_rgba(CLASS_COLOURS["negative"]))


def test_single_category_group_panels_are_left_out(tmp_path):
    one = {"unknown": {"count": 5, "small": True, "sentiment": {"negative": 2, "neutral": 3, "positive": 0}}}
    two = {"f": {"count": 5, "small": True, "sentiment": {"negative": 2, "neutral": 3}},
           "m": {"count": 1, "small": True, "sentiment": {"positive": 1}}}
    card = {"cross_sections": {"min_group_size": 20, "gender": one, "age_bucket": one, "accent": one}}
    assert _plot_groups(card, tmp_path / "g.png") is None and not (tmp_path / "g.png").exists()
    card["cross_sections"]["gender"] = two
    assert _plot_groups(card, tmp_path / "g.png") == str(tmp_path / "g.png")


def test_sentiment_disagreements_are_kept_worst_first():
    items = pd.DataFrame({"utterance_id": ["u1", "u2", "u3", "u4"], "source": "s", "text": "x",
                          "sentiment": ["positive", "neutral", "negative", "neutral"]})
    result = sentiment_agreement(items, {"l": ["positive", "negative", "positive", None]})
    worst = result["labelers"]["l"]["disagreements"]
    assert [d["utterance_id"] for d in worst] == ["u3", "u2", "u4"]  # opposite poles first
    assert worst[0] == {"utterance_id": "u3", "source": "s", "human": "negative", "predicted": "positive",
                        "severity": 2}
    assert worst[2]["predicted"] == "none"
    assert disagreements(items, ["neutral"] * 4, ["neutral"] * 4) == []


def test_spec_switches_the_html_report_off():
    import pytest

    from tasks.spec import SpecError, parse_spec

    base = {"name": "x", "output": "/tmp/x", "sources": [{"name": "s", "kind": "folder", "path": "/tmp"}]}
    assert parse_spec(base).report.html is True and parse_spec(base).report.samples_per_group == 2
    assert parse_spec({**base, "report": {"html": False}}).report.html is False
    with pytest.raises(SpecError):
        parse_spec({**base, "report": {"htm": False}})  # a typo is an error, not a silent default
