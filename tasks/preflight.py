"""Pre-flight checks that need the file system or S3: run before any work, so a spec that cannot work
stops with exit code 2 and one message instead of a flow that retries, fails late, or publishes a
release without the labels it was meant to carry.

`check_spec_paths` calls `preflight_problems` after its own checks; each problem is one
line naming the spec field and the fix. What is checked (docs/spec.md, "Pre-flight"):
- the output is not inside a source folder (the next build would ingest its own output);
- every `s3://` source exists and can be listed (bucket missing, access denied: named);
- a source's `metadata` file exists, is .csv/.tsv/.jsonl and is used by a `folder` source;
- `run.allow_failed_sources` names sources of the spec;
- every adapter's layout check (files listed, metadata parsed; no audio read): a wrong `kind`, a
  metadata header without `file_name`, a stray quote that would drop every label.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from manifests import uri as fs
from tasks.ingest.corpora.registry import ADAPTERS, option_problem
from tasks.spec import DatasetSpec, SourceSpec, SpecError

METADATA_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".jsonl")


def check_spec_paths(spec: DatasetSpec) -> None:
    """Stop before work when a local input path does not exist (S3 paths are checked by adapters)."""
    problems = []
    for i, source in enumerate(spec.sources):
        if "://" not in source.path and not Path(source.path).is_dir():
            problems.append(f"  - sources.{i}.path: folder {source.path!r} does not exist (source {source.name!r})")
    for field, paths in (("augment.noise_paths", spec.augment.noise_paths), ("augment.rir_paths", spec.augment.rir_paths)):
        for j, p in enumerate(paths):
            if "://" not in p and not Path(p).exists():
                problems.append(f"  - {field}.{j}: {p!r} does not exist")
    if spec.labelers.transcripts == "aws_transcribe" and not (spec.aws.staging_uri or "").startswith("s3://"):
        problems.append("  - aws.staging_uri: labelers.transcripts 'aws_transcribe' needs an s3://bucket/prefix "
                        f"where audio is staged for Amazon Transcribe (got {spec.aws.staging_uri!r})")
    model_path = spec.labelers.text_classifier.model_path
    if spec.labelers.text_classifier.kind == "hf_model" and model_path and not Path(model_path).is_dir():
        problems.append(f"  - labelers.text_classifier.model_path: folder {model_path!r} does not exist")
    for i, source in enumerate(spec.sources):
        if source.kind not in ADAPTERS:
            problems.append(
                f"  - sources.{i}.kind: adapter {source.kind!r} is not available in this version "
                f"(available: {', '.join(sorted(ADAPTERS))})"
            )
        elif (bad_options := option_problem(source)) is not None:
            problems.append(f"  - sources.{i}.options: {bad_options}")
    # output, S3 sources, metadata, layouts: docs/spec.md
    problems.extend(preflight_problems(spec, check_layouts=not problems))
    if problems:
        raise SpecError("dataset spec cannot work:\n" + "\n".join(problems))


def preflight_problems(spec: DatasetSpec, check_layouts: bool = True) -> list[str]:
    """Every problem found, one `  - field: message` line each; empty when the spec can run.

    `check_layouts=False` skips the adapters' layout checks (the caller already found problems, e.g.
    a source folder that does not exist, which the layout check would only repeat).
    """
    from tasks.label.transcripts.language import preflight_problems as language_problems

    problems = [*_output_inside_source(spec), *_metadata_files(spec), *_failed_source_policy(spec),
                *language_problems(spec)]
    reachable = _s3_sources(spec, problems)
    if check_layouts and not problems:
        problems.extend(_layouts(spec, reachable))
    return problems


def _inside(child: str, parent: str) -> bool:
    """Whether location `child` is `parent` or below it (local paths compared after resolving links)."""
    if fs.is_s3(child) != fs.is_s3(parent):
        return False
    if fs.is_s3(child):
        c_bucket, c_key = fs.split_s3(child)
        p_bucket, p_key = fs.split_s3(parent)
        c_key, p_key = c_key.strip("/"), p_key.strip("/")
        return c_bucket == p_bucket and (not p_key or c_key == p_key or c_key.startswith(p_key + "/"))
    c, p = os.path.realpath(child), os.path.realpath(parent)
    return os.path.commonpath([c, p]) == p


def _output_inside_source(spec: DatasetSpec) -> list[str]:
    return [
        f"  - output: {spec.output!r} is inside source {s.name!r} ({s.path}); the next build would ingest "
        "this build's releases and work files as corpus audio. Put the output outside every source folder"
        for s in spec.sources
        if _inside(spec.output, s.path)
    ]


def _metadata_files(spec: DatasetSpec) -> list[str]:
    problems = []
    for i, source in enumerate(spec.sources):
        meta = source.metadata
        if meta is None:
            continue
        field = f"sources.{i}.metadata"
        if source.kind != "folder":
            problems.append(f"  - {field}: only `folder` sources read a metadata file named in the spec "
                            f"(source {source.name!r} is {source.kind!r}; its adapter finds its own labels)")
        elif not meta.lower().endswith(METADATA_SUFFIXES):
            problems.append(f"  - {field}: {meta!r} must end in {', '.join(METADATA_SUFFIXES)} (its format)")
        elif not _is_file(meta):
            problems.append(f"  - {field}: metadata file {meta!r} does not exist (source {source.name!r})")
    return problems


def _is_file(uri: str) -> bool:
    if not fs.is_s3(uri):
        return os.path.isfile(uri)
    try:
        fs.size(uri)
    except FileNotFoundError:
        return False
    return True


def _failed_source_policy(spec: DatasetSpec) -> list[str]:
    names = {s.name for s in spec.sources}
    unknown = [n for n in spec.run.allow_failed_sources if n not in names]
    if not unknown:
        return []
    return [f"  - run.allow_failed_sources: {', '.join(map(repr, unknown))} is not a source of this spec "
            f"(sources: {', '.join(sorted(names))})"]


def _s3_error(err: Exception) -> tuple[str, str]:
    """(code, message) of a botocore error."""
    response: dict[str, Any] = getattr(err, "response", None) or {}
    error = response.get("Error") or {}
    return str(error.get("Code") or type(err).__name__), str(err)


def _s3_sources(spec: DatasetSpec, problems: list[str]) -> set[int]:
    """Check every s3:// source can be listed and holds something; returns the indices that can."""
    from botocore.exceptions import BotoCoreError, ClientError

    reachable: set[int] = set()
    for i, source in enumerate(spec.sources):
        if not fs.is_s3(source.path):
            reachable.add(i)
            continue
        where = f"  - sources.{i}.path"
        bucket = fs.split_s3(source.path)[0]
        try:
            found = fs.exists(source.path)
        except (ClientError, BotoCoreError) as err:
            code, message = _s3_error(err)
            if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
                problems.append(f"{where}: access denied listing {source.path} (ListObjectsV2 on bucket "
                                f"{bucket!r}) for source {source.name!r}: the credentials need s3:ListBucket and "
                                f"s3:GetObject there ({message})")
            else:
                problems.append(f"{where}: cannot list {source.path} for source {source.name!r}: {message}")
            continue
        except FileNotFoundError:
            found = False
        if not found:
            problems.append(f"{where}: nothing at {source.path} (source {source.name!r}): "
                            f"{_missing_s3_why(bucket)}")
            continue
        reachable.add(i)
    return reachable


def _missing_s3_why(bucket: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        fs.s3_client().head_bucket(Bucket=bucket)
    except (ClientError, BotoCoreError) as err:
        code, _ = _s3_error(err)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return f"bucket {bucket!r} does not exist (check the bucket name and the region/endpoint)"
        return f"bucket {bucket!r} cannot be checked ({code})"
    return f"bucket {bucket!r} exists but has no objects under that prefix (check the prefix)"


def _layouts(spec: DatasetSpec, reachable: set[int]) -> list[str]:
    """Each adapter's layout checks, run without reading audio (tasks.ingest.corpora.base.check_layout)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from tasks.ingest.corpora.base import CorpusLayoutError, check_layout
    from tasks.ingest.corpora.registry import get_adapter

    problems = []
    for i, source in enumerate(spec.sources):
        if i not in reachable:
            continue
        try:
            check_layout(get_adapter(source.kind), source, source.language or spec.language)
        except CorpusLayoutError as err:
            problems.append(f"  - sources.{i} ({source.name!r}): {err}{_kind_hint(source, err)}")
        except (ValueError, OSError, ClientError, BotoCoreError) as err:
            problems.append(f"  - sources.{i} ({source.name!r}): {err}")
    return problems


def _kind_hint(source: SourceSpec, err: Exception) -> str:
    from tasks.ingest.corpora.folder_metadata import MetadataError

    if isinstance(err, MetadataError):
        return ""
    return f" (check `kind: {source.kind}` and `path` of this source)"
