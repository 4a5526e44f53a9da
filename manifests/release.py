"""`open_release`: the one call a training job makes to read a published release (local or S3).

It resolves `LATEST`, refuses a release of another schema version before any table is used, and
reads each manifest once, on first use. `augment_pools.json` (written at publish time by
`write_pool_index`) tells a reader where the RIR and noise files behind the recipe ids live, so a
release built with `augment.materialize: false` can be augmented lazily without the pipeline.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from manifests import io as mio
from manifests import uri as fs
from manifests.locations import release_relative, resolve
from manifests.schema import (
    ASR_STAGE,
    CLASSIFIER_STAGE,
    MANIFEST_NAMES,
    READABLE_VERSIONS,
    REJECTS,
    SCHEMA_VERSION,
    SPLITS,
    UTTERANCES,
    required_columns,
)

POOL_INDEX = "augment_pools.json"
AUDIO_ROOTS_ENV = "VOICETONE_AUDIO_ROOTS"
STAGES: dict[str, str] = {"asr": ASR_STAGE, "asr_stage": ASR_STAGE, "classifier": CLASSIFIER_STAGE,
                          "classifier_stage": CLASSIFIER_STAGE, "utterances": UTTERANCES, "rejects": REJECTS}


def stage_name(stage: str) -> str:
    """Canonical manifest name for 'asr', 'classifier' (or the file names themselves)."""
    try:
        return STAGES[stage]
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}; use one of {sorted(STAGES)}") from None


def check_split(split: str | None) -> None:
    """Refuse a split name the contract does not have (e.g. "validation"), instead of reading 0 rows."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; a release has splits {list(SPLITS)} (or None for all rows)")


def pool_index_uri(release_root: str) -> str:
    return fs.join(release_root, "manifests", POOL_INDEX)


def write_pool_index(release_root: str, rirs: dict[str, str], noises: dict[str, str]) -> str:
    """Write manifests/augment_pools.json: recipe id -> audio URI for every RIR and noise file.

    Call it at publish with the run's pools (`AugmentPools.rirs`, `.noises`); URIs should be
    absolute paths or s3:// URIs that training machines can read. Returns the file's URI.
    """
    body = {"schema_version": SCHEMA_VERSION, "rirs": dict(sorted(rirs.items())),
            "noises": dict(sorted(noises.items()))}
    target = pool_index_uri(release_root)
    fs.write_bytes(target, json.dumps(body, indent=1, sort_keys=True).encode())
    return target


def _prefix(uri: str) -> str:
    return uri.rstrip("/") or "/"


def parse_audio_roots(text: str) -> dict[str, str]:
    """`"/data/corpora=/mnt/corpora;s3://b/c=/local/c"` -> {"/data/corpora": "/mnt/corpora", "s3://b/c": "/local/c"}.

    Entries are separated by `;` and split at their first `=` (old prefix = new prefix); blanks
    around entries and empty entries are ignored.
    """
    roots: dict[str, str] = {}
    for entry in text.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        old, sep, new = (part.strip() for part in entry.partition("="))
        if not sep or not old or not new:
            raise ValueError(f"{AUDIO_ROOTS_ENV}: entry {entry!r} is not OLD_PREFIX=NEW_PREFIX "
                             "(entries are separated by ';')")
        roots[old] = new
    return roots


def audio_roots_from_env() -> dict[str, str]:
    """The prefix map in $VOICETONE_AUDIO_ROOTS (empty when unset)."""
    return parse_audio_roots(os.environ.get(AUDIO_ROOTS_ENV, ""))


class AudioRoots:
    """Rewrites audio URI prefixes (`{"/data/corpora": "/mnt/corpora"}`), longest prefix first.

    A prefix matches only on a path-component boundary: "/data/corp" rewrites "/data/corp/a.wav"
    but not "/data/corpora2/a.wav". Local targets are made absolute (exports hand out absolute
    paths). Plain data, so it pickles into DataLoader workers.
    """

    def __init__(self, roots: Mapping[str, str] | None = None) -> None:
        pairs = []
        for old, new in (roots or {}).items():
            if not old or not new:
                raise ValueError(f"audio_roots: empty prefix in {old!r} -> {new!r}")
            target = new if fs.is_s3(new) else os.path.abspath(os.path.expanduser(new))
            pairs.append((_prefix(old), _prefix(target)))
        self.pairs: list[tuple[str, str]] = sorted(pairs, key=lambda p: len(p[0]), reverse=True)

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __repr__(self) -> str:
        return f"AudioRoots({dict(self.pairs)!r})"

    def rewrite(self, uri: str) -> str:
        """`uri` with its longest matching prefix replaced (unchanged when none matches)."""
        for old, new in self.pairs:
            if uri == old:
                return new
            if uri.startswith(old if old.endswith("/") else old + "/"):
                rest = uri[len(old):].lstrip("/")
                return new + ("" if new.endswith("/") else "/") + rest
        return uri


@contextlib.contextmanager
def naming_original(uri: str, origins: Mapping[str, str]) -> Iterator[None]:
    """Re-raise a missing-file error for a rewritten `uri` so it names both paths."""
    try:
        yield
    except FileNotFoundError as err:
        original = origins.get(uri)
        if original is None or original == uri:
            raise
        raise FileNotFoundError(f"audio file not found: {uri} (audio_roots rewrote it from {original}; "
                                "is the prefix map right and the copy complete?)") from err


class Release:
    """A published release: stage tables as pandas (or Arrow), the card, and the augmentation pools.

    `audio_roots` rewrites the prefixes of audio URIs outside the release (see `open_release`);
    `audio_origins` maps every rewritten `audio_uri` back to the URI the manifest names.
    """

    def __init__(self, root: str, card: dict[str, Any], audio_roots: Mapping[str, str] | None = None) -> None:
        self.root = root
        self.card = card
        self.audio_roots = AudioRoots(audio_roots)
        self.audio_origins: dict[str, str] = {}
        self._arrow: dict[str, pa.Table] = {}
        self._frames: dict[str, pd.DataFrame] = {}
        self._pools: dict[str, dict[str, str]] | None = None

    def __repr__(self) -> str:
        return f"Release({self.root!r})"

    @property
    def name(self) -> str:
        return self.root.rstrip("/").rsplit("/", 1)[-1]

    def arrow(self, name: str) -> pa.Table:
        """One manifest as an Arrow table (read once; schema version checked; v2 parts concatenated)."""
        name = stage_name(name)
        if name not in self._arrow:
            paths = mio.ReleasePaths(self.root)
            if paths.layout() == "1":
                table = self._checked(mio.read_table(paths.manifest(name)), paths.manifest(name), name)
            else:
                tables = list(self.iter_arrow(name))
                table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
            self._arrow[name] = table
        return self._arrow[name]

    def iter_arrow(self, name: str) -> Iterator[pa.Table]:
        """A manifest part by part (v2), each checked and with its audio resolved; a v1 file is one part.

        Streams: only one part is in memory at a time (unless `arrow` already read the whole table)."""
        name = stage_name(name)
        paths = mio.ReleasePaths(self.root)
        if paths.layout() == "1":
            yield self.arrow(name)
            return
        from manifests.parts import list_parts, read_part

        uris = list_parts(paths.manifest_dir(name))
        if not uris:
            raise mio.ManifestError(f"{paths.manifest_dir(name)}: no manifest parts (part-NNNNN.parquet)")
        for uri in uris:
            yield self._checked(read_part(uri), uri, name)

    def check_manifests(self) -> None:
        """Refuse a release whose manifests this reader cannot read, before any table is used.

        v1 reads each file (they are read on first use anyway); v2 reads only each part's footer."""
        paths = mio.ReleasePaths(self.root)
        if paths.layout() == "1":
            for name in MANIFEST_NAMES:
                self.arrow(name)
            return
        from manifests.parts import check_version, list_parts

        for name in MANIFEST_NAMES:
            uris = list_parts(paths.manifest_dir(name))
            if not uris:
                raise mio.ManifestError(f"{paths.manifest_dir(name)}: no manifest parts (part-NNNNN.parquet)")
            for uri in uris:
                schema = pq.read_schema(io.BytesIO(fs.read_bytes(uri)))
                check_version(pa.table({}).replace_schema_metadata(schema.metadata), uri, READABLE_VERSIONS)
                missing = [c for c in required_columns(name) if c not in schema.names]
                if missing:
                    raise mio.ManifestError(f"{uri}: lacks contract column(s) {missing} of the manifest contract")

    def _checked(self, table: pa.Table, uri: str, name: str) -> pa.Table:
        from manifests.parts import check_version

        check_version(table, uri, READABLE_VERSIONS)
        missing = [c for c in required_columns(name) if c not in table.column_names]
        if missing:
            raise mio.ManifestError(f"{uri}: lacks contract column(s) {missing} of the manifest contract")
        if name in (ASR_STAGE, CLASSIFIER_STAGE, UTTERANCES):
            table = self._rebase_audio(table)
        return table

    def _rebase_audio(self, table: pa.Table) -> pa.Table:
        """Resolve every `audio_uri` to the file a reader opens (`manifests.locations`).

        A release-relative URI (`audio/x.flac`, materialised audio) is joined to this copy's root, so
        a release copied, synced or moved reads the audio that travelled with its manifests. Older
        releases named those files by the absolute path they were built under; they are rebased the
        same way (the old folder may be gone). Every URI outside the release (clean source audio)
        goes through `audio_roots`.
        """
        name = self.card.get("release") or self.name
        uris = table.column("audio_uri").to_pylist()
        applied = (table.column("recipe_applied").to_pylist() if "recipe_applied" in table.column_names
                   else [False] * len(uris))
        changed = False
        for i, (uri, done) in enumerate(zip(uris, applied, strict=True)):
            if not uri:
                continue
            rel = release_relative(uri, self.root, name, bool(done))
            if rel is not None:
                new = resolve(self.root, rel)
            else:
                new = self.audio_roots.rewrite(uri) if self.audio_roots else uri
                if new != uri:
                    self.audio_origins[new] = uri
            if new != uri:
                uris[i] = new
                changed = True
        if not changed:
            return table
        index = table.schema.get_field_index("audio_uri")
        return table.set_column(index, table.schema.field(index), pa.array(uris, type=pa.string()))

    def table(self, name: str) -> pd.DataFrame:
        name = stage_name(name)
        if name not in self._frames:
            self._frames[name] = self.arrow(name).to_pandas()
        return self._frames[name]

    @property
    def utterances(self) -> pd.DataFrame:
        return self.table(UTTERANCES)

    @property
    def asr(self) -> pd.DataFrame:
        return self.table(ASR_STAGE)

    @property
    def classifier(self) -> pd.DataFrame:
        return self.table(CLASSIFIER_STAGE)

    @property
    def rejects(self) -> pd.DataFrame:
        return self.table(REJECTS)

    @property
    def pools(self) -> dict[str, dict[str, str]]:
        """{"rirs": {id: uri}, "noises": {id: uri}}; empty dicts when the release has no index.

        Relative URIs in the index are resolved against the release folder, so pools copied into
        a release travel with it.
        """
        if self._pools is None:
            uri = pool_index_uri(self.root)
            raw = json.loads(fs.read_bytes(uri)) if fs.exists(uri) else {}
            self._pools = {kind: {k: self._outside(self._absolute(v)) for k, v in raw.get(kind, {}).items()}
                           for kind in ("rirs", "noises")}
        return self._pools

    def _absolute(self, uri: str) -> str:
        if fs.is_s3(uri) or uri.startswith("/"):
            return uri
        return fs.join(self.root, uri)

    def _outside(self, uri: str) -> str:
        """A URI outside the release through `audio_roots` (pool files moved with the corpora)."""
        return uri if uri.startswith(self.root.rstrip("/") + "/") else self.audio_roots.rewrite(uri)

    @property
    def needs_pools(self) -> bool:
        """True when some stage row's recipe (RIR or noise) still has to be applied by the reader."""
        for name in (ASR_STAGE, CLASSIFIER_STAGE):
            df = self.table(name)
            lazy = ~df["recipe_applied"].fillna(False).astype(bool)
            if (lazy & (df["rir_id"].notna() | df["noise_id"].notna())).any():
                return True
        return False


def open_release(uri: str, audio_roots: Mapping[str, str] | None = None) -> Release:
    """Open a release folder, or the release an output folder's LATEST names (local or s3://).

    Reads schema version 1 (a file per manifest) and 2 (a folder of parts per manifest). Checks the
    card's and every manifest's schema version up front, so a job fails at start-up instead of mid-epoch.

    `audio_roots` ({old prefix: new prefix}) rewrites `audio_uri`s outside the release (clean
    source audio, and pool files), longest prefix first, on path-component boundaries, for training
    on a machine where the corpora live elsewhere. None (the default) reads $VOICETONE_AUDIO_ROOTS
    (`OLD=NEW;OLD=NEW`); an explicit mapping, even `{}`, replaces the environment's.
    """
    paths = mio.resolve_release(uri)
    card = mio.read_card(paths)
    version = str(card.get("schema_version", ""))
    if version not in READABLE_VERSIONS:
        raise mio.ManifestError(f"{paths.card_json}: schema version {version or 'missing'}, "
                                f"but this reader understands {', '.join(READABLE_VERSIONS)}")
    roots = audio_roots_from_env() if audio_roots is None else audio_roots
    release = Release(paths.root, card, roots)
    release.check_manifests()
    return release
