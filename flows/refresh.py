"""Scheduled refresh: rebuild a dataset from its spec file, reusing every shard and label that did not change.

The spec is read from its file at run time, so editing the YAML changes the next scheduled refresh.
The build itself does the incremental work (content-keyed shards, the label cache, the VAD cache),
records what changed since the previous release in the card (`changes`), and prunes releases beyond
`run.keep_releases`. A refresh that changes nothing (same `content_sha256` as LATEST's release)
publishes nothing: the result says `published: False` and LATEST stays where it is.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.build_dataset import build_dataset
from tasks.spec import load_spec


@flow(name="refresh-dataset", log_prints=True)
def refresh_dataset(spec_path: str, output: str | None = None) -> dict[str, Any]:
    """Build a new release of the dataset described by the YAML file at `spec_path`."""
    spec = load_spec(spec_path, output=output)
    result = build_dataset(spec)
    changes = result.get("changes") or {}
    get_run_logger().info(
        "refresh of %s: %s added, %s removed, %s changed since %s",
        spec.name, changes.get("added"), changes.get("removed"), changes.get("changed"),
        changes.get("previous_release"),
    )
    if not result.get("published", True):
        get_run_logger().info("refresh of %s: no change, no new release; LATEST stays on %s", spec.name,
                              result["release"])
    return result
