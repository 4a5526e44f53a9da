"""The adapter registry: every implemented kind resolves; others fail with the list of known kinds."""

from __future__ import annotations

import inspect

import pytest

from tasks.corpora.folder import ingest_folder
from tasks.corpora.ravdess import ingest_ravdess
from tasks.corpora.registry import ADAPTERS, AdapterNotAvailableError, get_adapter
from tasks.spec import ADAPTER_KINDS


def test_known_kinds_resolve() -> None:
    assert get_adapter("folder") is ingest_folder
    assert get_adapter("ravdess") is ingest_ravdess


def test_every_adapter_has_the_common_shape() -> None:
    for kind, adapter in ADAPTERS.items():
        assert kind in ADAPTER_KINDS
        assert adapter.__name__ == f"ingest_{kind}"
        assert list(inspect.signature(adapter).parameters) == ["source", "default_language"]


def test_every_spec_kind_is_implemented() -> None:
    assert set(ADAPTERS) == set(ADAPTER_KINDS)


def test_unknown_kinds_say_what_exists() -> None:
    assert issubclass(AdapterNotAvailableError, LookupError)
    with pytest.raises(LookupError, match=r"'wav2vec' is not a known adapter kind"):
        get_adapter("wav2vec")
