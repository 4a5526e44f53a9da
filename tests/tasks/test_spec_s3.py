"""A dataset spec read from S3 (what the ECS refresh deployment does), over a moto server."""

from __future__ import annotations

import boto3
import pytest

from tasks.spec import SpecError, load_spec

SPEC = """\
name: calls
output: s3://{bucket}/releases/calls
sources:
  - {{name: calls, kind: folder, path: s3://{bucket}/corpora/calls}}
augment: {{noise_paths: [s3://{bucket}/augment/noise]}}
"""


def _put(bucket: str, key: str, text: str) -> str:
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode())
    return f"s3://{bucket}/{key}"


@pytest.mark.aws
def test_a_spec_on_s3_loads_with_its_uris_untouched(s3_bucket):
    uri = _put(s3_bucket, "specs/dataset.yaml", SPEC.format(bucket=s3_bucket))
    spec = load_spec(uri)
    assert spec.name == "calls" and spec.output == f"s3://{s3_bucket}/releases/calls"
    assert spec.sources[0].path == f"s3://{s3_bucket}/corpora/calls"
    assert load_spec(uri, output="/tmp/elsewhere").output == "/tmp/elsewhere"


@pytest.mark.aws
def test_relative_paths_in_an_s3_spec_are_refused_by_name(s3_bucket):
    text = SPEC.format(bucket=s3_bucket).replace(f"s3://{s3_bucket}/corpora/calls", "corpora/calls")
    uri = _put(s3_bucket, "specs/relative.yaml", text)
    with pytest.raises(SpecError, match=r"on S3, so its paths cannot be relative to it: corpora/calls"):
        load_spec(uri)


@pytest.mark.aws
def test_a_missing_or_broken_s3_spec_is_a_spec_error(s3_bucket):
    with pytest.raises(SpecError, match=rf"cannot read dataset spec s3://{s3_bucket}/specs/nope.yaml"):
        load_spec(f"s3://{s3_bucket}/specs/nope.yaml")
    uri = _put(s3_bucket, "specs/broken.yaml", "name: [unclosed\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(uri)
