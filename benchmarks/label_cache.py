"""Label-cache lookups of one shard against a large cache: the unpartitioned layout vs partitions.

A cache of ``--entries`` Whisper-like labels (realistic segment keys ``<sha256>:<offset>:<duration>``
and JSON values) is written once in layout 1 (``segments/``, one segment per ``--segment-rows``
labels, as one `put_many` per shard wrote it). Each variant then runs in a fresh process, which
looks up two shards of ``--shard`` random keys (95 % present) and reports wall time per lookup,
the process's peak RSS (ru_maxrss) and its RSS before the first lookup, and the files it opened:

- ``old``: the LabelCache of ``--old-ref`` (read from git, unchanged): every segment loaded into one
  in-memory index on the first lookup, kept for the process;
- ``migrate``: today's LabelCache on a copy of the layout-1 cache: the first lookup migrates it;
- ``new``: today's LabelCache on the migrated cache (one segment per partition);
- ``new-puts`` (with ``--puts``): a cache written by today's `put_many`, one call per shard (one
  small segment per partition per call), so the first lookup merges each partition's segments.

    .venv/bin/python benchmarks/label_cache.py --entries 1000000 --shard 5000 --puts
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LABELER = "whisper-tiny.en"
SETTINGS = {"model": "tiny.en", "beam_size": 1, "decoder": "packed-v3"}


def _key(i: int) -> str:
    return f"{hashlib.sha256(str(i).encode()).hexdigest()}:{i % 7:.3f}:{2.5 + i % 11 / 4:.3f}"


def _value(i: int) -> str:
    words = " ".join(("so", "happy", "to", "see", "you", "again", "today")[: 3 + i % 5])
    label = {"text": f"{words} number {i}", "avg_logprob": -0.21 - i % 9 / 100, "no_speech_prob": 0.01,
             "compression_ratio": 1.1, "language": "en", "num_words": 5 + i % 5}  # fmt: skip
    return json.dumps(label, sort_keys=True, separators=(",", ":"))


def build_layout1(root: Path, entries: int, segment_rows: int) -> Path:
    """The cache as the unpartitioned LabelCache wrote it: <uri>/segments/<utc>-<uuid>.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.core.label_cache import settings_hash

    folder = root / LABELER / settings_hash(SETTINGS) / "segments"
    folder.mkdir(parents=True)
    for n, start in enumerate(range(0, entries, segment_rows)):
        ids = range(start, min(start + segment_rows, entries))
        table = pa.table({"key": [_key(i) for i in ids], "value": [_value(i) for i in ids]})
        pq.write_table(table, folder / f"20260101T{n:012d}Z-{n:032x}.parquet", compression="zstd")
    return root


def build_puts(root: Path, entries: int, segment_rows: int) -> None:
    from tasks.core.label_cache import LabelCache

    cache = LabelCache(str(root), LABELER, SETTINGS)
    for start in range(0, entries, segment_rows):
        ids = range(start, min(start + segment_rows, entries))
        cache.put_many({_key(i): json.loads(_value(i)) for i in ids})


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _old_class(ref: str) -> Any:
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:tasks/core/label_cache.py"],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / "old_label_cache.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_label_cache", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.LabelCache


def child(variant: str, root: str, entries: int, shard: int, old_ref: str) -> dict[str, Any]:
    """One variant in this (fresh) process: two shard lookups; times, RSS and files opened."""
    from tasks.core import storage
    from tasks.core.label_cache import LabelCache

    cls = _old_class(old_ref) if variant == "old" else LabelCache
    opened: list[str] = []
    real = storage.open_binary

    @contextlib.contextmanager
    def counting(uri: str) -> Any:
        opened.append(uri)
        with real(uri) as fh:
            yield fh

    storage.open_binary = counting  # type: ignore[assignment]
    rng = random.Random(7)
    base_rss = _rss_mb()
    cache = cls(root, LABELER, SETTINGS)
    out: dict[str, Any] = {"variant": variant, "rss_before_mb": round(base_rss, 1)}
    for n in (1, 2):
        present = rng.sample(range(entries), int(shard * 0.95))
        keys = [_key(i) for i in present] + [f"absent-{n}-{i}" for i in range(shard - len(present))]
        before = len(opened)
        start = time.perf_counter()
        found = cache.get_many(keys)
        out[f"lookup{n}_s"] = round(time.perf_counter() - start, 3)
        out[f"lookup{n}_files"] = len(opened) - before
        assert len(found) == len(present), (variant, len(found), len(present))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["peak_minus_before_mb"] = round(out["peak_rss_mb"] - base_rss, 1)
    return out


def _run_child(variant: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", variant, "--root", str(root), "--entries", str(args.entries),
           "--shard", str(args.shard), "--old-ref", args.old_ref]  # fmt: skip
    result = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--shard", type=int, default=5000)
    parser.add_argument("--segment-rows", type=int, default=5000)
    parser.add_argument("--old-ref", default="ad08597", help="git ref of the unpartitioned LabelCache")
    parser.add_argument("--puts", action="store_true", help="also time a cache written by put_many per shard")
    parser.add_argument("--work", default=None, help="folder for the caches (default: a temp folder)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.root, args.entries, args.shard, args.old_ref)))
        return
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-label-cache-"))
    rows = []
    start = time.perf_counter()
    old = build_layout1(work / "layout1", args.entries, args.segment_rows)
    print(f"built layout-1 cache of {args.entries} labels in {time.perf_counter() - start:.1f} s", flush=True)
    shutil.copytree(old, work / "migrated")
    for variant, root in (("old", old), ("migrate", work / "migrated"), ("new", work / "migrated")):
        rows.append(_run_child(variant, root, args))
        print(json.dumps(rows[-1]), flush=True)
    if args.puts:
        start = time.perf_counter()
        build_puts(work / "puts", args.entries, args.segment_rows)
        print(f"wrote {args.entries // args.segment_rows} put_many calls in {time.perf_counter() - start:.1f} s",
              flush=True)  # fmt: skip
        for variant in ("new-puts", "new-puts-again"):
            rows.append({**_run_child("new", work / "puts", args), "variant": variant})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| variant | lookup 1 (s) | files | lookup 2 (s) | files | RSS before (MB) | peak RSS (MB) | peak - before |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['lookup1_s']} | {r['lookup1_files']} | {r['lookup2_s']} | "
              f"{r['lookup2_files']} | {r['rss_before_mb']} | {r['peak_rss_mb']} | {r['peak_minus_before_mb']} |")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
