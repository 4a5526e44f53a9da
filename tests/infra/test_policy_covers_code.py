"""Least privilege, both ways: every AWS action the code calls is allowed, and nothing else is.

moto does not enforce IAM, so this is the proof: the calls come from an AST scan of tasks/,
manifests/ and flows/ (tests/infra/aws_calls.py), the requests they make follow the bucket layout of
docs/operations.md, and the verdict comes from evaluating the template's own policy
(tests/infra/iam_eval.py).
"""

from __future__ import annotations

import pytest

from tests.infra.aws_calls import Call, iam_actions, scan_file, scan_sources
from tests.infra.conftest import BUCKET, KEY_ARN
from tests.infra.iam_eval import is_allowed

BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"
READ_PREFIXES = ("corpora/", "augment/", "releases/", "staging/")
SPEC_OBJECT = f"{BUCKET_ARN}/specs/dataset.yaml"  # the ECS refresh deployment's spec_path (prefect.yaml)
WRITE_PREFIXES = ("releases/", "staging/")
S3_VIA = {"kms:ViaService": "s3.us-east-1.amazonaws.com"}
# Granted although no code path calls it, each for a documented reason (see the template's comments).
NOT_CALLED_BY_CODE = {"transcribe:DeleteTranscriptionJob": "runbook clean-up of job records (personal data)"}


def _requests(action: str) -> list[tuple[str, str, dict[str, str]]]:
    """(action, resource, context) requests the pipeline makes for `action` under the bucket layout."""
    from tasks.label.transcripts.aws_transcribe_packs import job_name
    from tasks.spec_labelers import AwsTranscribeSettings

    job = job_name("0123456789abcdef", 1)
    if action == "s3:ListBucket":
        return [(action, BUCKET_ARN, {"s3:prefix": f"{p}demo/"}) for p in READ_PREFIXES] + [
            (action, BUCKET_ARN, {})  # HeadObject's 404-or-403 check carries no s3:prefix
        ]
    if action == "s3:GetObject":
        objects = [f"{BUCKET_ARN}/{p}demo/a.flac" for p in READ_PREFIXES] + [SPEC_OBJECT]
        return [(action, o, {}) for o in objects] + [("kms:Decrypt", KEY_ARN, S3_VIA)]
    if action in ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"):
        out = [(action, f"{BUCKET_ARN}/{p}demo/a.flac", {}) for p in WRITE_PREFIXES]
        if action == "s3:PutObject":
            out += [("kms:GenerateDataKey", KEY_ARN, S3_VIA), ("kms:Decrypt", KEY_ARN, S3_VIA)]
        return out
    if action == "transcribe:StartTranscriptionJob":
        output_key = f"staging/{AwsTranscribeSettings().output_prefix.strip('/')}/{job}.json"
        return [(action, "*", {"transcribe:OutputBucketName": BUCKET, "transcribe:OutputKey": output_key})]
    if action in ("transcribe:GetTranscriptionJob", "transcribe:DeleteTranscriptionJob"):
        return [(action, f"arn:aws:transcribe:us-east-1:123456789012:transcription-job/{job}", {})]
    if action in ("transcribe:ListTranscriptionJobs", "comprehend:BatchDetectSentiment",
                  "comprehend:DetectPiiEntities"):
        return [(action, "*", {})]
    raise AssertionError(f"no request model for {action}: add one (and a grant to the template if needed)")


def _code_actions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for call in scan_sources():
        for action in iam_actions(call.service, call.operation):
            out.setdefault(action, []).append(call.where)
    return out


def test_scan_finds_the_known_calls():
    found = {(c.service, c.operation) for c in scan_sources()}
    assert {("s3", "GetObject"), ("s3", "PutObject"), ("s3", "HeadObject"), ("s3", "ListObjectsV2"),
            ("s3", "DeleteObject"), ("transcribe", "StartTranscriptionJob"),
            ("transcribe", "GetTranscriptionJob"), ("comprehend", "BatchDetectSentiment")} <= found  # fmt: skip


def test_scan_maps_names_that_differ(tmp_path):
    src = tmp_path / "probe.py"
    src.write_text(
        "def f(s3_client, df):\n"
        "    s3_client.copy_object(Bucket='b', Key='k', CopySource='b/j')\n"
        "    s3_client.get_paginator('list_objects_v2')\n"
        "    s3_client.head_object(Bucket='b', Key='k')\n"
        "    df.copy()\n"  # not a client: ignored
    )
    calls = scan_file(src)
    actions = sorted({a for c in calls for a in iam_actions(c.service, c.operation)})
    assert actions == ["s3:GetObject", "s3:ListBucket", "s3:PutObject"]
    assert all(isinstance(c, Call) and c.where.startswith(f"{src}:") for c in calls)


@pytest.mark.parametrize("action", sorted(_code_actions()))
def test_every_action_the_code_calls_is_allowed(action, pipeline_statements):
    for request in _requests(action):
        assert is_allowed(pipeline_statements, *request), f"{request} (called at {_code_actions()[action][:3]})"


def test_the_policy_grants_nothing_the_code_does_not_call(pipeline_statements):
    granted = set()
    for statement in pipeline_statements:
        granted.update(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    implied_kms = {"kms:Decrypt", "kms:GenerateDataKey"}  # SSE-KMS on the bucket: S3 calls KMS as the caller
    assert granted - set(_code_actions()) - implied_kms == set(NOT_CALLED_BY_CODE)


@pytest.mark.parametrize(
    "request_",
    [
        ("s3:PutObject", f"{BUCKET_ARN}/corpora/calls/a.wav", {}),  # inputs are read-only
        ("s3:DeleteObject", f"{BUCKET_ARN}/augment/noise/n.wav", {}),
        ("s3:PutObject", SPEC_OBJECT, {}),  # specs are read-only for the pipeline
        ("s3:GetObject", f"{BUCKET_ARN}/elsewhere/a.wav", {}),
        ("s3:GetObject", "arn:aws:s3:::another-bucket/corpora/a.wav", {}),
        ("s3:ListBucket", BUCKET_ARN, {"s3:prefix": "elsewhere/"}),
        ("s3:ListBucket", BUCKET_ARN, {"s3:prefix": ""}),
        ("transcribe:StartTranscriptionJob", "*", {"transcribe:OutputBucketName": "attacker-bucket",
                                                    "transcribe:OutputKey": "staging/x.json"}),  # fmt: skip
        ("transcribe:StartTranscriptionJob", "*", {}),  # no OutputBucketName: a presigned service URL
        ("transcribe:StartTranscriptionJob", "*", {"transcribe:OutputBucketName": BUCKET, "transcribe:OutputKey": "releases/x.json"}),
        ("transcribe:GetTranscriptionJob", "arn:aws:transcribe:us-east-1:123456789012:transcription-job/other", {}),
        ("kms:Decrypt", KEY_ARN, {}),  # only through S3
        ("kms:Decrypt", "arn:aws:kms:us-east-1:123456789012:key/other", S3_VIA),
        ("s3:PutBucketPolicy", BUCKET_ARN, {}),
    ],
)
def test_what_the_pipeline_may_not_do(request_, pipeline_statements):
    assert not is_allowed(pipeline_statements, *request_)
