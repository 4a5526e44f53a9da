"""The release reader for training jobs: `from manifests import open_release, ClassifierDataset, export_nemo`.

Names load on first use (PEP 562), so `import manifests` stays cheap and a job that only reads
tables never imports torch; the pipeline, which imports `manifests.schema` and friends, pays
nothing for this face. docs/training.md lists what each name does.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# public name -> the submodule that defines it
_PUBLIC: dict[str, str] = {
    "open_release": "release",
    "Release": "release",
    "AudioRoots": "release",
    "read_release": "io",
    "ManifestError": "io",
    "AsrDataset": "dataset",
    "ClassifierDataset": "dataset",
    "weighted_sampler": "dataset",
    "collate_pad": "dataset",
    "LogMel": "dataset",
    "export_nemo": "export",
    "export_lhotse": "export",
    "to_hf_dataset": "hf",
    "validate_release": "validate",
    "ValidationReport": "validate",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'manifests' has no attribute {name!r}")
    value = getattr(import_module(f"manifests.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
