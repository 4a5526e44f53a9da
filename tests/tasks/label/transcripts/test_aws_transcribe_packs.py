"""Amazon Transcribe packs: greedy packing by language, stable pack keys and job names, billed cost."""

from __future__ import annotations

import pytest

from tasks.label.transcripts import aws_transcribe_packs as tp
from tasks.spec_labelers import AwsTranscribeSettings


def test_plan_names_and_cost() -> None:
    settings = AwsTranscribeSettings(pack_target_s=10.0, silence_s=0.5)
    packs = tp.plan_packs([("k3", "en-US", 3.0), ("k1", "en-US", 3.0), ("k2", "en-US", 3.0),
                           ("k4", "en-US", 12.0), ("k5", "fr-FR", 2.0)], settings, "s3://b/p")  # fmt: skip
    assert [p.clip_keys for p in packs] == [("k1", "k2", "k3"), ("k4",), ("k5",)]
    assert packs[0].audio_s == pytest.approx(10.0)  # 3 x 3 s + 2 x 0.5 s silence fills the 10 s target
    assert tp.plan_packs([("k1", "en-US", 3.0)], settings, "s3://b/p")[0].key == tp.plan_packs(
        [("k1", "en-US", 3.0)], settings, "s3://b/p/")[0].key
    cost = tp.estimate_cost(packs, settings)
    assert cost.billed_s == pytest.approx(15 + 15 + 15) and cost.usd == pytest.approx(45 / 60 * 0.024)
    name = tp.job_name(packs[0].key, 12)
    assert tp._JOB_NAME.match(name) and len(name) <= 200 and name.endswith("-a12")
