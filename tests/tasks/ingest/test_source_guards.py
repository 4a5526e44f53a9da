"""Failed-source guards (tasks/ingest/source_guards.py): nothing accepted, or more rejected than allowed."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.core.guards import GuardError
from tasks.ingest import source_guards
from tasks.spec import parse_spec


def _spec(**run: object):
    return parse_spec({"name": "d", "output": "/tmp/o", "run": run, "sources": [
        {"name": "good", "kind": "folder", "path": "/a"}, {"name": "weak", "kind": "folder", "path": "/b"}]})


def _frames(weak_accepted: int, weak_rejected: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    utt = pd.DataFrame({"source": ["good"] * 10 + ["weak"] * weak_accepted})
    rej = pd.DataFrame({"source": ["weak"] * weak_rejected, "reason": ["unreadable_audio"] * weak_rejected})
    return utt, rej


def test_reject_share_over_the_limit_stops_the_build() -> None:
    utt, rej = _frames(4, 6)  # 60 % rejected > default 0.5
    with pytest.raises(GuardError) as err:
        source_guards.check_release(_spec(), {"good": 10, "weak": 10}, utt, rej)
    assert err.value.name == "source_reject_share"
    assert "source 'weak' rejected 6 of 10 found items (60%)" in err.value.message
    assert "over run.max_reject_share 0.5 (rejects: 6 unreadable_audio)" in err.value.message
    assert "raise run.max_reject_share" in err.value.message and "LATEST was not moved" in err.value.message
    assert source_guards.check_release(_spec(max_reject_share=0.6), {"good": 10, "weak": 10}, utt, rej) == []
    utt, rej = _frames(5, 5)  # exactly at the limit is fine
    assert source_guards.check_release(_spec(), {"good": 10, "weak": 10}, utt, rej) == []


def test_allowed_source_gives_a_warning_not_an_error() -> None:
    utt, rej = _frames(0, 3)
    (record,) = source_guards.check_release(_spec(allow_failed_sources=["weak"]), {"good": 10, "weak": 3}, utt, rej)
    assert record["guard"] == "source_accepted_nothing" and record["level"] == "warning"
    assert record["detail"] == {"source": "weak", "found": 3, "accepted": 0, "stage": "all stages"}


def test_several_failed_sources_are_named_in_one_error() -> None:
    spec = _spec()
    utt = pd.DataFrame({"source": pd.Series([], dtype=object)})
    rej = pd.DataFrame({"source": ["good", "weak"], "reason": ["missing_audio", "empty_audio"]})
    with pytest.raises(GuardError) as err:
        source_guards.check_release(spec, {"good": 1, "weak": 1}, utt, rej)
    assert "source 'good' accepted none" in err.value.message and "source 'weak' accepted none" in err.value.message
    assert err.value.name == "source_accepted_nothing"
