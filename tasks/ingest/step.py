"""The ingest step: enumerate one source into items and rejects, then cut all items into shards."""

from __future__ import annotations

from manifests import uri as fs
from manifests.schema import (
    UTTERANCES_SCHEMA,
)
from tasks.core.results import IngestResult
from tasks.core.shards import (
    frame_digest,
    reusable_frame,
    stable_hash,
    write_frame,
)
from tasks.core.work import (
    Log,
    cache_dir,
    concat_rejects,
    noop,
    work_dir,
)
from tasks.spec import DatasetSpec


def ingest_source(spec: DatasetSpec, index: int, log: Log = noop, warn: Log | None = None) -> IngestResult:
    """Enumerate one source; every found item ends in items or rejects.

    The adapter's notes about the source (e.g. metadata columns it does not read) go to `warn`
    (default `log`), one message per note, and to the card through the returned `notes`.
    """
    from tasks.ingest.corpora.registry import get_adapter

    source = spec.sources[index]
    adapter = get_adapter(source.kind)
    result = adapter(source, source.language or spec.language)
    from tasks.plan.splits import apply_source_policy

    items = apply_source_policy(result.items.copy(), source, spec.splits, spec.seed)  # split: / split_policy:
    from tasks.label.transcripts import (
        language,  # every row leaves ingest with a language (declared or detected)
    )

    items, lang_rejects, lang_guards = language.identify(items, spec.labelers.language_id, spec.labelers.whisper,
                                                         cache_dir(spec))
    result.rejects = concat_rejects([result.rejects, lang_rejects])
    for col in UTTERANCES_SCHEMA.names:
        if col not in items.columns:
            items[col] = None
    base = fs.join(work_dir(spec), "ingest", f"{source.name}-{stable_hash(source.model_dump_json())[:12]}")
    write_frame(base + ".rejects.parquet", result.rejects)
    write_frame(base + ".items.parquet", items)
    log("ingest %s (%s): found %d, accepted %d, rejected %d", source.name, source.kind, result.found,
        len(items), len(result.rejects))
    for note in result.notes:
        (warn or log)("ingest %s (%s): %s", source.name, source.kind, note)
    return {
        "source": source.name,
        "items_uri": base + ".items.parquet",
        "rejects_uri": base + ".rejects.parquet",
        "found": int(result.found),
        "notes": list(result.notes),
        "guards": lang_guards,
    }


def make_shards(spec: DatasetSpec, ingest_results: list[IngestResult], log: Log = noop) -> list[str]:
    """Partition all ingested items into shards by a hash of utterance_id; the shard files in shard order.

    A shard file is named by its whole content (every column of every row: labels, speaker, licence,
    not only the audio), so an edited metadata row or spec field gives a new shard and every later
    stage redoes it; an unchanged shard is found again and reused. Sources are read one at a time
    (`tasks.ingest.sharding`), so no process holds the corpus.
    """
    from tasks.ingest.sharding import shard_frames

    item_uris = [r["items_uri"] for r in ingest_results]
    scratch = fs.join(work_dir(spec), "shards", "buckets", stable_hash(*item_uris, str(spec.run.shard_size))[:16])
    numbered, n_items = [], 0
    for number, shard in shard_frames(item_uris, spec.run.shard_size, scratch, log):
        uri = fs.join(work_dir(spec), "shards", f"{frame_digest(shard)}.parquet")
        if not reusable_frame(uri, log):  # an unreadable (0-byte, truncated) shard file is rewritten
            write_frame(uri, shard)
        numbered.append((number, uri))
        n_items += len(shard)
    uris = [uri for _, uri in sorted(numbered)]
    log("sharded %d utterances into %d shard(s) of at most ~%d", n_items, len(uris), spec.run.shard_size)
    return uris
