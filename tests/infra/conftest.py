"""Fixtures for the infrastructure tests: the parsed template, a resolved context, Prefect's harness."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.iam_eval import StackContext, resolve

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "cloudformation" / "voicetone.yaml"
DOCKERFILE = REPO / "infra" / "docker" / "Dockerfile"
BUCKET = "voicetone-data-example"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    """infra/cloudformation/voicetone.yaml as a dict (long-form intrinsics, so plain YAML)."""
    return yaml.safe_load(TEMPLATE.read_text())


def example_context(bucket: str = BUCKET, key_arn: str = KEY_ARN, trusted: str = "") -> StackContext:
    """What the intrinsics resolve to in a stack named `voicetone` in 123456789012/us-east-1."""
    ctx = StackContext(params={"BucketName": bucket, "EcrRepositoryName": "voicetone-worker",
                               "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/voicetone-worker:0.1.0",
                               "TrustedPrincipalArn": trusted})  # fmt: skip
    ctx.refs = {"DataBucket": bucket, "PipelineRole": "voicetone-PipelineRole", "DataKey": key_arn.rsplit("/", 1)[1],
                "WorkerLogGroup": "/voicetone/voicetone/flow-runs"}  # fmt: skip
    ctx.atts = {
        "DataBucket.Arn": f"arn:aws:s3:::{bucket}",
        "DataKey.Arn": key_arn,
        "PipelineRole.Arn": "arn:aws:iam::123456789012:role/voicetone-PipelineRole",
        "ExecutionRole.Arn": "arn:aws:iam::123456789012:role/voicetone-ExecutionRole",
        "WorkerCluster.Arn": "arn:aws:ecs:us-east-1:123456789012:cluster/voicetone-voicetone",
        "WorkerLogGroup.Arn": "arn:aws:logs:us-east-1:123456789012:log-group:/voicetone/voicetone/flow-runs",
    }
    ctx.conditions = {"HasTrustedPrincipal": bool(trusted)}
    return ctx


def policy_statements(template: dict[str, Any], logical_id: str, ctx: StackContext | None = None) -> list[dict]:
    """The resolved statements of a managed policy resource."""
    doc = template["Resources"][logical_id]["Properties"]["PolicyDocument"]
    return resolve(doc, ctx or example_context())["Statement"]


@pytest.fixture(scope="session")
def pipeline_statements(template: dict[str, Any]) -> list[dict]:
    return policy_statements(template, "PipelinePolicy")


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's temporary server for the flow run against the deployed stack (as tests/flows does)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
