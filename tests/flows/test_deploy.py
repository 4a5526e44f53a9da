"""Deployments: the on-demand build takes the spec as its (validated) parameter; the refresh runs on a cron."""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml

from flows.cli import DEMO_SPEC, main
from flows.deploy import make_deployments

REPO = Path(__file__).resolve().parents[2]


def test_make_deployments_for_the_demo_spec():
    build, refresh = make_deployments(DEMO_SPEC, cron="0 4 * * 1")
    assert build.name == "voicetone-demo-build"
    assert build.parameters["spec"]["name"] == "voicetone-demo"
    # The build's parameter schema is the DatasetSpec model, so the UI form validates a spec.
    from prefect.utilities.callables import parameter_schema

    from flows.build_dataset import build_dataset

    schema = parameter_schema(build_dataset.fn).model_dump()
    assert "spec" in schema["properties"] and "DatasetSpec" in str(schema["definitions"])
    assert build.enforce_parameter_schema is not False
    assert refresh.name == "voicetone-demo-refresh"
    assert refresh.parameters == {"spec_path": str(DEMO_SPEC.resolve())}
    assert refresh.schedules and refresh.schedules[0].schedule.cron == "0 4 * * 1"


def test_prefect_yaml_entrypoints_exist():
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    for deployment in config["deployments"]:
        module_path, func = deployment["entrypoint"].split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        assert callable(getattr(module, func))


def test_serve_needs_a_server(monkeypatch, capsys):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert main(["serve", str(DEMO_SPEC)]) == 2
    assert "prefect server start" in capsys.readouterr().err
