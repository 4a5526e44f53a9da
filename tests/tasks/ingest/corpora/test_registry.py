"""The adapter registry: every implemented kind resolves; others fail with the list of known kinds."""

from __future__ import annotations

import inspect

import pytest

from tasks.ingest.corpora.folder import ingest_folder
from tasks.ingest.corpora.ravdess import ingest_ravdess
from tasks.ingest.corpora.registry import ADAPTERS, AdapterNotAvailableError, get_adapter
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


def test_every_adapter_declares_its_options_for_the_pre_flight_check() -> None:
    from tasks.ingest.corpora.registry import ADAPTERS, adapter_options, option_problem
    from tasks.spec import SourceSpec

    for kind in ADAPTERS:
        assert isinstance(adapter_options(kind), dict), kind
    ok = SourceSpec(name="a", kind="iemocap", path="/d", options={"test_sessions": [5]})
    assert option_problem(ok) is None
    typo = SourceSpec(name="a", kind="folder", path="/d", options={"recursive": True})
    assert option_problem(typo) == "source 'a' (folder): unknown option(s) recursive; allowed: audio_roots"
