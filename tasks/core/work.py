"""Shard bookkeeping shared by every stage's step: the run's work and cache folders, logging, reading shards."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from typing import Any

import pandas as pd

from manifests import uri as fs
from tasks.core.rows import rejects_frame
from tasks.core.shards import (
    read_frame,
)
from tasks.spec import DatasetSpec

Log = Callable[..., None]


def noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def read_all(uris: list[str]) -> pd.DataFrame:
    frames = [read_frame(u) for u in uris]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def concat_rejects(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """All reject rows of several stages; the contract's empty table when there are none."""
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else rejects_frame()


def work_dir(spec: DatasetSpec) -> str:
    return fs.join(spec.output, "work")


def cache_dir(spec: DatasetSpec) -> str:
    return fs.join(spec.output, "cache")


def code_version() -> str:
    try:
        return importlib_metadata.version("voicetone-data")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"



def progress_logger(log: Log, what: str, every_s: float = 5.0) -> Callable[[int, int], None]:
    """A progress callback that logs at most every `every_s` seconds, plus the start and the end."""
    import time

    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done in (0, total) or now - last[0] >= every_s:
            last[0] = now
            log("%s: %d/%d item(s) to label", what, done, total)

    return report


def stage_result(result: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    rejects = result.rejects if result.rejects is not None else rejects_frame()
    return result.items.reset_index(drop=True), rejects.reset_index(drop=True)


def jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
