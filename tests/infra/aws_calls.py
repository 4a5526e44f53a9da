"""Every AWS API call the pipeline's source makes, found statically, and the IAM actions they need.

An AST walk of tasks/, manifests/ and flows/ finds method calls on a boto3 client (a receiver whose
source text names a client: ``s3_client().get_object``, ``self.client.start_transcription_job``,
``_client().get_paginator("list_objects_v2")``). A method counts when it is an operation of the S3,
Transcribe or Comprehend service model (botocore's own models, snake_cased) or one of S3's managed
transfer methods; the service is the one whose model has it. `iam_actions` maps operations to IAM
actions, with a table for those whose names differ.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("tasks", "manifests", "flows")
SERVICES = ("s3", "transcribe", "comprehend")

# boto3's managed transfers (s3transfer) and the S3 operations each one makes.
S3_TRANSFER_METHODS = {
    "upload_file": ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"),
    "upload_fileobj": ("PutObject", "CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload"),
    "download_file": ("HeadObject", "GetObject"),
    "download_fileobj": ("HeadObject", "GetObject"),
    "copy": ("HeadObject", "CopyObject", "CreateMultipartUpload", "UploadPartCopy", "CompleteMultipartUpload",
             "AbortMultipartUpload"),
}

# Operations whose IAM action is not service:<OperationName>. Source: the Service Authorization Reference
# (S3: "Amazon S3 API operations and the permissions they need").
_IAM_OF_OPERATION: dict[tuple[str, str], tuple[str, ...]] = {
    ("s3", "HeadObject"): ("s3:GetObject",),
    ("s3", "HeadBucket"): ("s3:ListBucket",),  # "HeadBucket: you must have s3:ListBucket permission"
    ("s3", "ListObjectsV2"): ("s3:ListBucket",),
    ("s3", "ListObjects"): ("s3:ListBucket",),
    ("s3", "CopyObject"): ("s3:GetObject", "s3:PutObject"),  # read the source, write the destination
    ("s3", "UploadPartCopy"): ("s3:GetObject", "s3:PutObject"),
    ("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    ("s3", "UploadPart"): ("s3:PutObject",),
    ("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
}


@dataclass(frozen=True)
class Call:
    """One call site: the service, the API operation (CamelCase) and where it is."""

    service: str
    operation: str
    where: str


@lru_cache(maxsize=1)
def _operations() -> dict[str, dict[str, str]]:
    """snake_case method name -> {service: OperationName} over the three services."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    out: dict[str, dict[str, str]] = {}
    for service in SERVICES:
        for op in session.get_service_model(service).operation_names:
            out.setdefault(xform_name(op), {})[service] = op
    return out


def _is_client_receiver(node: ast.expr) -> bool:
    return "client" in ast.unparse(node).lower()


def scan_file(path: Path) -> list[Call]:
    """The AWS calls in one Python file."""
    calls: list[Call] = []
    ops = _operations()
    where = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        method, receiver = node.func.attr, node.func.value
        if not _is_client_receiver(receiver):
            continue
        line = f"{where}:{node.lineno}"
        if method == "get_paginator" and node.args and isinstance(node.args[0], ast.Constant):
            method = str(node.args[0].value)
        if method in S3_TRANSFER_METHODS:
            calls.extend(Call("s3", op, line) for op in S3_TRANSFER_METHODS[method])
            continue
        services = ops.get(method, {})
        if len(services) > 1:
            raise ValueError(f"{line}: {method} is an operation of {sorted(services)}; tell them apart here")
        for service, op in services.items():
            calls.append(Call(service, op, line))
    return calls


def scan_sources(roots: tuple[str, ...] = SCANNED) -> list[Call]:
    """The AWS calls of every Python file under `roots` (relative to the repository)."""
    calls: list[Call] = []
    for root in roots:
        for path in sorted((REPO / root).rglob("*.py")):
            calls.extend(scan_file(path))
    return calls


def iam_actions(service: str, operation: str) -> tuple[str, ...]:
    """The IAM actions one API operation is authorised by."""
    return _IAM_OF_OPERATION.get((service, operation), (f"{service}:{operation}",))
