"""The template deployed into a moto server over HTTP, and the demo built against what it created.

moto's CloudFormation skips AWS::S3::BucketPolicy (a warning, the stack still completes) and applies
only BucketEncryption and Tags of AWS::S3::Bucket, and drops a task definition's role ARNs; versioning,
public-access block, lifecycle, the TLS-only policy and the task's roles are therefore proven
statically (test_template.py), not here. moto does not enforce
IAM either: the build records every S3 call it makes and each is evaluated against the role's policy.
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import pytest

from tests.demo_corpus import demo_spec_data
from tests.infra.conftest import TEMPLATE
from tests.infra.iam_eval import is_allowed

pytestmark = [pytest.mark.aws, pytest.mark.filterwarnings("ignore:Tried to parse AWS")]
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/voicetone-worker:test"


@pytest.fixture(scope="module")
def stack(moto_server: str) -> dict[str, Any]:
    """Create the stack; returns its outputs plus the stack name."""
    import boto3

    name = f"vt{uuid.uuid4().hex[:8]}"
    cfn = boto3.client("cloudformation", endpoint_url=moto_server)
    cfn.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[
            {"ParameterKey": "BucketName", "ParameterValue": f"{name}-data"},
            {"ParameterKey": "ImageUri", "ParameterValue": IMAGE},
            {"ParameterKey": "LogRetentionDays", "ParameterValue": "14"},
        ],
        Capabilities=["CAPABILITY_IAM"],
    )
    (desc,) = cfn.describe_stacks(StackName=name)["Stacks"]
    assert desc["StackStatus"] == "CREATE_COMPLETE", desc.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in desc["Outputs"]}
    return {"name": name, **outputs}


def _pipeline_statements(moto_server: str, stack: dict[str, Any]) -> list[dict[str, Any]]:
    import boto3

    iam = boto3.client("iam", endpoint_url=moto_server)
    version = iam.get_policy(PolicyArn=stack["PipelinePolicyArn"])["Policy"]["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=stack["PipelinePolicyArn"], VersionId=version)["PolicyVersion"]["Document"]
    return (json.loads(doc) if isinstance(doc, str) else doc)["Statement"]


def test_stack_creates_the_resources(moto_server, stack):
    import boto3

    bucket = stack["BucketName"]
    assert bucket == f"{stack['name']}-data"
    assert stack["StagingUri"] == f"s3://{bucket}/staging"
    s3 = boto3.client("s3", endpoint_url=moto_server)
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": stack["KmsKeyArn"]}

    kms = boto3.client("kms", endpoint_url=moto_server)
    key_id = stack["KmsKeyArn"].rsplit("/", 1)[1]
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    assert f"alias/voicetone-{stack['name']}" in {a["AliasName"] for a in kms.list_aliases()["Aliases"]}

    iam = boto3.client("iam", endpoint_url=moto_server)
    role_name = stack["PipelineRoleArn"].rsplit("/", 1)[1]
    attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [stack["PipelinePolicyArn"]]
    trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ecs-tasks.amazonaws.com"}]

    logs = boto3.client("logs", endpoint_url=moto_server)
    (group,) = logs.describe_log_groups(logGroupNamePrefix=stack["LogGroupName"])["logGroups"]
    assert group["retentionInDays"] == 14

    ecs = boto3.client("ecs", endpoint_url=moto_server)
    (cluster,) = ecs.describe_clusters(clusters=[stack["ClusterArn"]])["clusters"]
    assert cluster["status"] == "ACTIVE"
    task = ecs.describe_task_definition(taskDefinition=stack["TaskDefinitionArn"])["taskDefinition"]
    # moto's CloudFormation drops TaskRoleArn/ExecutionRoleArn of a task definition; test_template.py
    # checks that they name PipelineRole and ExecutionRole.
    assert task["family"] == f"voicetone-{stack['name']}"
    (container,) = task["containerDefinitions"]
    assert container["image"] == IMAGE and container["name"] == "prefect"
    assert container["logConfiguration"]["options"]["awslogs-group"] == stack["LogGroupName"]


def test_deployed_policy_is_the_least_privilege_one(moto_server, stack):
    statements = _pipeline_statements(moto_server, stack)
    bucket_arn = f"arn:aws:s3:::{stack['BucketName']}"
    assert is_allowed(statements, "s3:PutObject", f"{bucket_arn}/releases/demo/LATEST")
    assert not is_allowed(statements, "s3:PutObject", f"{bucket_arn}/corpora/x.wav")
    assert is_allowed(statements, "kms:Decrypt", stack["KmsKeyArn"], {"kms:ViaService": "s3.us-east-1.amazonaws.com"})


def _iam_requests(operation: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """The IAM requests one S3 API call is authorised by."""
    obj = f"arn:aws:s3:::{params.get('Bucket')}/{params.get('Key')}"
    if operation == "ListObjectsV2":
        context = {"s3:prefix": params["Prefix"]} if "Prefix" in params else {}
        return [("s3:ListBucket", f"arn:aws:s3:::{params['Bucket']}", context)]
    if operation in ("GetObject", "HeadObject"):
        return [("s3:GetObject", obj, {})]
    if operation in ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        return [("s3:PutObject", obj, {})]
    if operation in ("CopyObject", "UploadPartCopy"):
        src = params["CopySource"]
        src_arn = f"arn:aws:s3:::{src['Bucket']}/{src['Key']}" if isinstance(src, dict) else f"arn:aws:s3:::{src}"
        return [("s3:GetObject", src_arn, {}), ("s3:PutObject", obj, {})]
    if operation in ("DeleteObject", "AbortMultipartUpload"):
        return [(f"s3:{operation}", obj, {})]
    raise AssertionError(f"the build called S3 {operation}, which this test has no IAM mapping for")


@pytest.fixture
def recorded_calls(monkeypatch) -> list[tuple[str, str, dict[str, Any]]]:
    """Every botocore API call made while the fixture is active (any thread): (service, operation, params)."""
    from botocore.client import BaseClient

    calls: list[tuple[str, str, dict[str, Any]]] = []
    lock = threading.Lock()
    original = BaseClient._make_api_call

    def recording(self, operation_name, api_params):
        with lock:
            calls.append((self.meta.service_model.service_name, operation_name, dict(api_params)))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return calls


def test_demo_builds_on_the_stack_within_the_role(prefect_harness, moto_server, stack, request, demo_release):
    """The demo from and to S3 on the stack's bucket, within the pipeline role; it also carries the
    default run's checks of the S3 path against the local demo build (issue 8; the stand-alone S3 build,
    tests/flows/test_s3_build.py, is slow), so the suite builds the demo on S3 once."""
    import boto3

    from flows.build_dataset import build_dataset
    from manifests.io import read_release
    from manifests.schema import REJECTS, UTTERANCES
    from manifests.validate import validate_release
    from tasks.core import storage
    from tasks.spec import parse_spec
    from tests.flows.buildutil import seed_language_cache

    local_spec, local = demo_release

    bucket = stack["BucketName"]
    base = f"s3://{bucket}"
    data = demo_spec_data(base)  # corpora/ and augment/ are the prefixes the role may read
    data["output"] = f"{stack['ReleasesUri']}/voicetone-demo"
    data["aws"] = {"region": "us-east-1", "staging_uri": stack["StagingUri"]}
    spec = parse_spec(data, origin="infra stack test")
    seed_language_cache(local_spec.output, spec.output)  # before recording: the build labels the rest

    calls = request.getfixturevalue("recorded_calls")
    result = build_dataset(spec)
    recorded = list(calls)

    assert result["release_uri"].startswith(f"{base}/releases/voicetone-demo/releases/")
    report = validate_release(spec.output)
    assert report.ok, report.problems
    # The same release content as the local demo build: every item found, accepted and rejected alike;
    # label cache, materialised audio and plots written to S3.
    tables = read_release(spec.output)
    assert result["found"] == local["found"]
    assert len(tables[UTTERANCES]) == local["counts"][UTTERANCES]
    assert sorted(tables[REJECTS]["reason"]) == sorted(read_release(local["release_uri"])[REJECTS]["reason"])
    written = storage.list_files(spec.output)
    assert any("/cache/whisper" in k for k in written) and any(k.endswith(".flac") and "/releases/" in k for k in written)
    assert any(k.endswith(".png") for k in written)

    statements = _pipeline_statements(moto_server, stack)
    s3_calls = [(op, params) for service, op, params in recorded if service == "s3"]
    assert {"PutObject", "GetObject", "ListObjectsV2"} <= {op for op, _ in s3_calls}
    denied = [
        (op, req) for op, params in s3_calls if params.get("Bucket") == bucket
        for req in _iam_requests(op, params) if not is_allowed(statements, *req)
    ]  # fmt: skip
    assert not denied, denied[:10]
    assert all(params.get("Bucket") == bucket for _, params in s3_calls), "the build touched another bucket"

    s3 = boto3.client("s3", endpoint_url=moto_server)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="releases/")
            for o in page.get("Contents", [])]  # fmt: skip
    assert any(k.endswith("/LATEST") for k in keys) and any(k.endswith(".parquet") for k in keys)
    head = s3.head_object(Bucket=bucket, Key=next(k for k in keys if k.endswith(".parquet")))
    assert head.get("ServerSideEncryption") == "aws:kms"
