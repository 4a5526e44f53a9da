"""Duration and speaking-rate limits (issue 14 item 5): the two items from the report, and the defaults."""

from __future__ import annotations

import pandas as pd

from tasks.plan import plausibility
from tasks.spec import DatasetSpec


def _spec(**extra: object) -> DatasetSpec:
    return DatasetSpec.model_validate({"name": "t", "output": "/tmp/o",
                                       "sources": [{"name": "s", "kind": "folder", "path": "/x"}], **extra})


def _items() -> pd.DataFrame:
    rows = [
        ("s/ok", 3.2, "i am calling about the invoice i received on monday"),
        ("s/one_sample", 1 / 16000, "this is a clip"),  # 63 µs with a 4-word transcript
        ("s/long_silence", 6800.0, "thank you for watching see you"),  # 6,800 s with a 6-word transcript
        ("s/too_fast", 1.0, "a forty word sentence crammed into one single second of audio is not speech"),
        ("s/few_words", 20.0, "yes"),
        ("s/no_text", 2.0, None),
        ("s/forty_s", 40.0, " ".join(["word"] * 100)),
    ]
    return pd.DataFrame([{"utterance_id": u, "source": "s", "duration_s": d, "transcript": t} for u, d, t in rows])


def test_the_reported_items_are_left_out_with_reasons() -> None:
    items = _items()
    why = plausibility.reasons(items, _spec()).set_axis(items["utterance_id"])
    assert why.loc["s/ok"].isna().all() and why.loc["s/no_text"].isna().all() and why.loc["s/forty_s"].isna().all()
    assert list(why.loc["s/one_sample"]) == ["too_short", "too_short"]
    assert list(why.loc["s/long_silence"]) == ["too_long", "too_long"]
    assert why.loc["s/too_fast", "asr"] == "implausible_speaking_rate"
    assert why.loc["s/few_words", "asr"] == "implausible_speaking_rate"
    assert why.loc["s/too_fast"].iloc[1] is None  # the rate is the ASR stage's concern only


def test_screen_masks_counts_and_guard() -> None:
    items = _items()
    asr_ok, clf_ok, section, fired = plausibility.screen(items, _spec())
    assert list(items["utterance_id"][asr_ok]) == ["s/ok", "s/no_text", "s/forty_s"]
    assert list(items["utterance_id"][~clf_ok]) == ["s/one_sample", "s/long_silence"]
    assert section["excluded"]["asr"]["by_reason"] == {"implausible_speaking_rate": 2, "too_long": 1, "too_short": 1}
    assert section["excluded"]["classifier"]["by_source"] == {"s": {"too_long": 1, "too_short": 1}}
    assert any("6800 s" in e for e in section["excluded"]["asr"]["examples"])
    assert [(g["guard"], g["level"]) for g in fired] == [("plausibility_limits", "info"),
                                                        ("plausibility_limits", "warning")]
    assert "4 utterance(s) left out of the ASR stage" in fired[0]["message"]
    assert "4 of its 7 utterance(s)" in fired[1]["message"]


def test_limits_are_settings() -> None:
    loose = _spec(plausibility={"asr": {"min_duration_s": 0, "max_duration_s": None},
                                "min_chars_per_s": None, "max_chars_per_s": None})
    why = plausibility.reasons(_items(), loose)
    assert why["asr"].isna().all()
    assert why["classifier"].notna().sum() == 2
