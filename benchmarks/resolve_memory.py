"""Peak memory of the plan's duplicate-segment step on a planning-scale corpus, as a threads build runs it.

Why: in a threads build the plan's partition tasks run in the flow process, two at a time. At 10 M
items the duplicate-segment partitions hold ~1.25 M rows each, and reading them whole took the flow
process to ~2 GB (RESULTS.md, tenth session). This runs the real `plan_inputs` and `dedup_keys` on a
corpus written by benchmarks/plan_scale.py, then `resolve_part` for every partition in two threads, and
prints the process's peak RSS; `--compare` also resolves each partition from the whole partition
(`read_part`, the old way, one at a time, after the timed run) and checks that the rejects are equal.

    python benchmarks/resolve_memory.py --corpus /tmp/voicetone-plan-scale/corpus/n10000000-s500 \
        --spec /tmp/voicetone-plan-scale/threads-10000000.yaml --work /tmp/resolve-10m --compare
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _maxrss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="a plan_scale.py corpus folder (manifest.json)")
    ap.add_argument("--spec", type=Path, required=True, help="the plan_scale.py spec of that size")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for the shuffle files (emptied)")
    ap.add_argument("--compare", action="store_true", help="also resolve from whole partitions and compare")
    args = ap.parse_args()

    from tasks.plan import shard_step, shuffle
    from tasks.spec import load_spec

    spec = load_spec(args.spec)
    labelled = json.loads((args.corpus / "manifest.json").read_text())["labelled"]
    shutil.rmtree(args.work, ignore_errors=True)
    plan_dir = str(args.work)
    inputs = shard_step.plan_inputs(spec, labelled)
    n_parts = shuffle.part_count(len(inputs))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda a: shard_step.dedup_keys(plan_dir, a[0], a[1]["items_uris"], n_parts), enumerate(inputs)))
    t1 = time.perf_counter()
    before = _maxrss_mb()
    with ThreadPoolExecutor(2) as pool:
        losers = sum(pool.map(lambda part: shard_step.resolve_part(plan_dir, part, n_parts), range(n_parts)))
    t2 = time.perf_counter()
    print(f"{len(inputs)} plan shards, {n_parts} partitions; dedup_keys {t1 - t0:.1f} s (maxrss {before} MB); "
          f"resolve_part {t2 - t1:.1f} s, {losers} duplicate rejects, maxrss {_maxrss_mb()} MB", flush=True)
    if args.compare:
        import pandas as pd

        from tasks.plan.splits import resolve_duplicate_segments

        root = shard_step.paths(plan_dir, n_parts)["dedup"]
        for part in range(n_parts):
            new = resolve_duplicate_segments(shuffle.read_repeated(root, part, "segment_key")).rejects
            old = resolve_duplicate_segments(shuffle.read_part(root, part)).rejects
            pd.testing.assert_frame_equal(new.reset_index(drop=True), old.reset_index(drop=True))
        print(f"whole partitions give the same rejects; maxrss with them {_maxrss_mb()} MB")


if __name__ == "__main__":
    main()
