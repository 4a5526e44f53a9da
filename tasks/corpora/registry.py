"""Adapter kind -> ingest function. Adding a corpus = one module in tasks/corpora/ + one line here."""

from __future__ import annotations

from tasks.corpora.base import Adapter
from tasks.corpora.folder import ingest_folder
from tasks.corpora.ravdess import ingest_ravdess
from tasks.spec import ADAPTER_KINDS

ADAPTERS: dict[str, Adapter] = {
    "folder": ingest_folder,
    "ravdess": ingest_ravdess,
}


class AdapterNotAvailableError(LookupError):
    """The spec names an adapter kind that has no implementation (yet)."""


def get_adapter(kind: str) -> Adapter:
    """The ingest function for `kind`; a clear error listing the implemented kinds otherwise."""
    try:
        return ADAPTERS[kind]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        planned = "is planned but not implemented yet" if kind in ADAPTER_KINDS else "is not a known adapter kind"
        raise AdapterNotAvailableError(f"adapter kind {kind!r} {planned}; implemented: {known}") from None
