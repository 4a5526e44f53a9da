"""S3 end to end: corpora, noise, RIRs, label cache, work files and the release all on s3:// (moto over HTTP)."""

from __future__ import annotations

import pytest

from flows.build_dataset import build_dataset
from manifests.io import read_release
from manifests.schema import REJECTS, UTTERANCES
from manifests.validate import validate_release
from tasks.core import storage
from tasks.spec import parse_spec
from tests.demo_corpus import demo_spec_data


@pytest.mark.slow  # ~3 min: a third S3 demo build; the default run checks the same on the stack's bucket
# (tests/infra/test_stack_moto.py::test_demo_builds_on_the_stack_within_the_role)
def test_demo_builds_from_and_to_s3(prefect_harness, moto_server, s3_bucket, demo_release):
    _, local = demo_release
    base = f"s3://{s3_bucket}"
    data = demo_spec_data(base)
    data["output"] = f"{base}/datasets/demo"
    spec = parse_spec(data, origin="s3 test")

    result = build_dataset(spec)

    assert result["release_uri"].startswith(f"{base}/datasets/demo/releases/")
    report = validate_release(spec.output)
    assert report.ok, report.problems
    tables = read_release(spec.output)
    assert result["found"] == local["found"]
    assert len(tables[UTTERANCES]) == local["counts"][UTTERANCES]
    assert sorted(tables[REJECTS]["reason"]) == sorted(read_release(local["release_uri"])[REJECTS]["reason"])
    keys = storage.list_files(f"{base}/datasets/demo")
    assert any("/cache/" in k for k in keys) and any(k.endswith(".flac") and "/releases/" in k for k in keys)
    assert any(k.endswith(".png") for k in keys)
