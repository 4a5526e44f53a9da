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


def test_prefect_yaml_fits_the_worker_image_and_the_operations_guide(monkeypatch):
    """The ECS deployments must find their code in the image, poll the pool the guide creates, and read
    the refresh spec from where the pipeline role may read (specs/ in the stack's bucket)."""
    import os
    import re

    from prefect.utilities.templating import apply_values

    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    dockerfile = (REPO / "infra" / "docker" / "Dockerfile").read_text()
    code_dir = re.search(r"^WORKDIR (\S+)\n(?:.*\n)*?COPY flows \./flows", dockerfile, re.MULTILINE).group(1)
    pull = config["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
    assert pull == code_dir
    for deployment in config["deployments"]:
        assert (REPO / deployment["entrypoint"].split(":")[0]).is_file()

    guide = (REPO / "docs" / "operations.md").read_text()
    created = set(re.findall(r"prefect work-pool create (\S+)", guide))
    started = set(re.findall(r"prefect worker start --pool (\S+)", guide))
    pools = {d["work_pool"]["name"] for d in config["deployments"]}
    assert pools == created == started, (pools, created, started)

    monkeypatch.setenv("VOICETONE_BUCKET", "acme-voicetone-data")
    rendered = apply_values(config, dict(os.environ), remove_notset=False)
    refresh = next(d for d in rendered["deployments"] if d["entrypoint"].startswith("flows/refresh.py"))
    assert refresh["parameters"]["spec_path"] == "s3://acme-voicetone-data/specs/dataset.yaml"
    assert "export VOICETONE_BUCKET" in guide and "prefect deploy --all" in guide
