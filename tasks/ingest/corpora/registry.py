"""Adapter kind -> ingest function. Adding a corpus = one module in tasks/ingest/corpora/ + one line here."""

from __future__ import annotations

import importlib

from tasks.ingest.corpora.base import Adapter, check_options
from tasks.ingest.corpora.commonvoice import ingest_commonvoice
from tasks.ingest.corpora.cremad import ingest_cremad
from tasks.ingest.corpora.folder import ingest_folder
from tasks.ingest.corpora.hf_dataset import ingest_hf_dataset
from tasks.ingest.corpora.iemocap import ingest_iemocap
from tasks.ingest.corpora.librispeech import ingest_librispeech
from tasks.ingest.corpora.meld import ingest_meld
from tasks.ingest.corpora.msp_podcast import ingest_msp_podcast
from tasks.ingest.corpora.ravdess import ingest_ravdess
from tasks.ingest.corpora.slue_voxceleb import ingest_slue_voxceleb
from tasks.spec import ADAPTER_KINDS, SourceSpec

ADAPTERS: dict[str, Adapter] = {
    "folder": ingest_folder,
    "ravdess": ingest_ravdess,
    "librispeech": ingest_librispeech,
    "commonvoice": ingest_commonvoice,
    "cremad": ingest_cremad,
    "meld": ingest_meld,
    "iemocap": ingest_iemocap,
    "slue_voxceleb": ingest_slue_voxceleb,
    "msp_podcast": ingest_msp_podcast,
    "hf_dataset": ingest_hf_dataset,
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


def adapter_options(kind: str) -> dict[str, type]:
    """The options an adapter accepts: the `OPTIONS` table its module declares and checks at run time."""
    return importlib.import_module(get_adapter(kind).__module__).OPTIONS


def option_problem(source: SourceSpec) -> str | None:
    """Why `source.options` cannot work for its adapter (the adapter's own message), or None.

    The same check the adapter makes when it runs, made before any work so a typo stops the build
    with exit code 2 instead of failing mid-run.
    """
    try:
        check_options(source, adapter_options(source.kind))
    except ValueError as err:
        return str(err)
    return None
