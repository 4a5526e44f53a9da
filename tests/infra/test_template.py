"""The CloudFormation template: cfn-lint clean, and the security properties checked statically.

checkov is not a dev dependency (installing it downgrades boto3/botocore, packaging and networkx in
the project's environment); these tests check the same properties it checks for these resource types
(docs: infra/README.md records a checkov run from an isolated venv: 39 passed, 0 failed, 2 skipped).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import TEMPLATE, example_context, policy_statements
from tests.infra.iam_eval import resolve

# Actions with no resource type in the Service Authorization Reference: Resource "*" is the only form.
NO_RESOURCE_TYPE = {
    "transcribe:StartTranscriptionJob",
    "transcribe:ListTranscriptionJobs",
    "comprehend:BatchDetectSentiment",
    "comprehend:DetectPiiEntities",
    "ecr:GetAuthorizationToken",
    "ecs:DescribeTaskDefinition",
}


def _cfn_lint() -> str:
    found = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    assert found, "cfn-lint is a dev dependency: pip install -e '.[dev]'"
    return found


def test_cfn_lint_is_clean():
    proc = subprocess.run([_cfn_lint(), str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cfn_lint_reports_a_broken_template(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(TEMPLATE.read_text().replace("Type: AWS::S3::Bucket", "Type: AWS::S3::Bukket", 1))
    proc = subprocess.run([_cfn_lint(), str(broken)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Bukket" in proc.stdout


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_bucket_is_private_versioned_and_kms_encrypted(template):
    (bucket,) = _resources(template, "AWS::S3::Bucket").values()
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert bucket["DeletionPolicy"] == "Retain"
    key = template["Resources"]["DataKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    for statement in key["Properties"]["KeyPolicy"]["Statement"]:
        assert statement["Principal"] != "*" and statement["Principal"].get("AWS") != "*"


def test_lifecycle_expires_staging_and_old_versions(template):
    rules = {r["Id"]: r for r in template["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-staging"]["Prefix"] == "staging/"
    assert rules["expire-staging"]["ExpirationInDays"] == {"Ref": "StagingRetentionDays"}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == {
        "Ref": "NoncurrentVersionRetentionDays"
    }
    assert all(r["Status"] == "Enabled" for r in rules.values())


def test_bucket_policy_denies_plain_http(template):
    statements = policy_statements(template, "DataBucketPolicy")
    from tests.infra.iam_eval import is_allowed

    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert deny and deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    everything = [{"Effect": "Allow", "Action": "*", "Resource": "*"}, *statements]
    obj = "arn:aws:s3:::voicetone-data-example/releases/x"
    assert not is_allowed(everything, "s3:GetObject", obj, {"aws:SecureTransport": "false"})
    assert is_allowed(everything, "s3:GetObject", obj, {"aws:SecureTransport": "true"})


def _all_policy_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    ctx = example_context(trusted="arn:aws:iam::123456789012:role/operator")
    out = []
    for logical, res in template["Resources"].items():
        props = res.get("Properties", {})
        docs = []
        if res["Type"] == "AWS::IAM::ManagedPolicy":
            docs.append(props["PolicyDocument"])
        if res["Type"] == "AWS::IAM::Role":
            docs.extend(p["PolicyDocument"] for p in props.get("Policies", []))
        for doc in docs:
            out.extend((logical, s) for s in resolve(doc, ctx)["Statement"])
    return out


def test_no_wildcard_except_where_the_service_requires_it(template):
    statements = _all_policy_statements(template)
    assert len(statements) > 10
    for logical, statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert statement["Effect"] == "Allow"
        assert not any("*" in a for a in actions), f"{logical}: wildcard action in {actions}"
        if "*" in resources:
            assert set(actions) <= NO_RESOURCE_TYPE, f"{logical}: {actions} on Resource '*'"
        for resource in resources:
            # A wildcard may only end an ARN inside a named bucket/prefix, job-name prefix or log group.
            assert resource == "*" or resource.count("*") <= 1 and not resource.endswith(":*:*"), resource


def test_no_privilege_escalation_or_credential_actions(template):
    risky = ("iam:Create", "iam:Put", "iam:Attach", "iam:Update", "sts:", "kms:Create", "kms:PutKeyPolicy",
             "s3:PutBucketPolicy", "s3:PutBucketAcl", "s3:PutObjectAcl", "ecs:RegisterTaskDefinition")  # fmt: skip
    for logical, statement in _all_policy_statements(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert not action.startswith(risky), f"{logical} grants {action}"
            if action == "iam:PassRole":
                assert statement["Condition"]["StringEquals"]["iam:PassedToService"] == "ecs-tasks.amazonaws.com"
                assert "*" not in str(statement["Resource"])


def test_roles_trust_only_ecs_tasks_of_this_account_or_the_named_principal(template):
    for trusted in ("", "arn:aws:iam::123456789012:role/operator"):
        ctx = example_context(trusted=trusted)
        for logical, role in _resources(template, "AWS::IAM::Role").items():
            statements = resolve(role["Properties"]["AssumeRolePolicyDocument"], ctx)["Statement"]
            for statement in statements:
                principal = statement["Principal"]
                assert principal != "*" and principal.get("AWS") != "*", logical
                if "Service" in principal:
                    assert principal["Service"] == "ecs-tasks.amazonaws.com"
                    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "123456789012"}}
                else:
                    assert principal == {"AWS": trusted} and logical == "PipelineRole"
            assert len(statements) == (2 if trusted and logical == "PipelineRole" else 1)


def test_worker_task_uses_pipeline_role_and_logs_with_retention(template):
    resources = template["Resources"]
    props = resources["WorkerTaskDefinition"]["Properties"]
    assert props["TaskRoleArn"] == {"Fn::GetAtt": ["PipelineRole", "Arn"]}
    assert props["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    assert props["RequiresCompatibilities"] == ["FARGATE"]
    (container,) = props["ContainerDefinitions"]
    assert container["Image"] == {"Ref": "ImageUri"}
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "WorkerLogGroup"}
    assert not any("SECRET" in e["Name"] or "KEY" in e["Name"] for e in container["Environment"])
    assert resources["WorkerLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("name", ["BucketName", "ImageUri", "StagingRetentionDays", "LogRetentionDays"])
def test_parameters_and_outputs(template, name):
    assert name in template["Parameters"]
    for output in ("BucketName", "StagingUri", "PipelineRoleArn", "ExecutionRoleArn", "ClusterArn",
                   "TaskDefinitionArn", "KmsKeyArn", "PrefectWorkerPolicyArn"):  # fmt: skip
        assert output in template["Outputs"]
