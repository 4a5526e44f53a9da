"""The augment step: materialise one shard of planned stage rows as FLAC."""

from __future__ import annotations

import pandas as pd

from manifests import uri as fs
from tasks.core.results import AugmentResult
from tasks.core.shards import (
    read_frame,
    write_frame,
)
from tasks.core.work import (
    Log,
    noop,
    work_dir,
)
from tasks.spec import DatasetSpec


def augment_shard(spec: DatasetSpec, rows_uri: str, log: Log = noop, position: str = "") -> AugmentResult:
    """Materialise the augmented utterances of one shard of stage rows as FLAC (when configured)."""
    from tasks.augment import materialize as augment
    from tasks.augment import noise_pool
    rows = read_frame(rows_uri)
    if not (spec.augment.enabled and spec.augment.materialize):
        return {"rows_uri": rows_uri, "materialized": 0}
    pools = noise_pool.load_pools(spec, fs.join(rows_uri.rsplit("/", 1)[0], noise_pool.PLAN_POOLS),
                                  fs.join(work_dir(spec), "augment"))  # the plan's, saved beside its row shards
    identity = (rows["speed"].sub(1.0).abs() < 1e-9) & rows["rir_id"].isna() & rows["noise_id"].isna()
    todo = rows[~identity]
    out_uri = rows_uri.replace(".parquet", ".augmented.parquet")
    if len(todo):
        done, failures = augment.materialize(todo, pools, fs.join(work_dir(spec), "audio"), log=log)
        if len(failures):
            details = "; ".join(f"{r.row_id}: {r.detail}" for r in failures.head(5).itertuples())
            raise RuntimeError(f"augmentation failed for {len(failures)} row(s) that decoded earlier: {details}")
        rows = pd.concat([rows[identity], done], ignore_index=True)
    write_frame(out_uri, rows)
    log("augment %s: %d utterance variant(s) materialised", position, len(todo))
    return {"rows_uri": out_uri, "materialized": int(len(todo))}
