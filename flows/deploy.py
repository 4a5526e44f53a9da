"""Deployments: an on-demand build (the spec is the flow parameter, so the UI form validates it) and a
cron refresh that re-reads the spec file. `voicetone serve` serves both; `prefect.yaml` declares the
same two for work pools (e.g. ECS, see docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.build_dataset import build_dataset
from flows.refresh import refresh_dataset
from tasks.spec import load_spec

DEFAULT_CRON = "0 3 * * *"


def make_deployments(spec_path: str | Path, cron: str | None = DEFAULT_CRON, timezone: str = "UTC") -> list[Any]:
    """RunnerDeployments for `prefect.serve`: `<name>-build` on demand and `<name>-refresh` on a cron."""
    spec_path = Path(spec_path).resolve()
    spec = load_spec(spec_path)
    build = build_dataset.to_deployment(
        name=f"{spec.name}-build",
        parameters={"spec": spec.model_dump(mode="json")},
        description=f"Build a release of {spec.name} on demand (parameters: the dataset spec).",
        tags=["voicetone", spec.name],
    )
    refresh = refresh_dataset.to_deployment(
        name=f"{spec.name}-refresh",
        parameters={"spec_path": str(spec_path)},
        cron=cron,
        description=f"Scheduled refresh of {spec.name} from {spec_path}.",
        tags=["voicetone", spec.name, "scheduled"],
    )
    return [build, refresh]


def serve(spec_path: str | Path, cron: str | None = DEFAULT_CRON) -> None:
    """Serve both deployments from this process until interrupted (needs a Prefect server: PREFECT_API_URL)."""
    from prefect import serve as prefect_serve

    prefect_serve(*make_deployments(spec_path, cron))
