"""The reader's public face (`from manifests import open_release, ...`) and its install without the pipeline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import manifests
from manifests import dataset, export, hf, io, release, validate

REPO = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_public_names_are_the_submodules_objects() -> None:
    """The README's `manifests.open_release` is the reader's function, not a copy."""
    assert manifests.open_release is release.open_release
    assert manifests.ClassifierDataset is dataset.ClassifierDataset and manifests.AsrDataset is dataset.AsrDataset
    assert manifests.export_nemo is export.export_nemo and manifests.export_lhotse is export.export_lhotse
    assert manifests.to_hf_dataset is hf.to_hf_dataset and manifests.read_release is io.read_release
    assert manifests.validate_release is validate.validate_release
    assert set(manifests.__all__) <= set(dir(manifests))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        manifests.nope  # noqa: B018


def test_import_manifests_loads_neither_torch_nor_the_pipeline() -> None:
    """`import manifests` (and the table reader) stays cheap: torch loads only with the datasets."""
    out = _run("import sys, manifests, manifests.io, manifests.release\n"
               "print(sorted(m for m in ('torch', 'tasks', 'flows', 'prefect', 'boto3', 'faster_whisper')"
               " if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_s3_without_boto3_says_what_to_install() -> None:
    """The reader install has no boto3: an s3:// read fails with the fix, not a bare ModuleNotFoundError."""
    out = _run("import sys\nsys.modules['boto3'] = None\nfrom manifests import uri\n"
               "try:\n    uri.read_bytes('s3://bucket/key')\nexcept ImportError as err:\n    print(err)\n")
    assert out.returncode == 0, out.stderr
    assert "needs boto3" in out.stdout and "voicetone-reader[s3]" in out.stdout
