"""Ingest-like labelled item shards without audio, for planning at scale (and the plan's tests).

Planning and publish never read audio, so a planning benchmark can start from item shards written
directly: three sources of different sizes (one with official splits, one without speakers), speakers
with many utterances, human and model labels, ~2 % without a sentiment, ~1 % without a transcript,
~1 % listed twice under the same `segment_key` (by another source), a few too-short clips and
transcripts with a phone number (PII). `write_item_shards` hashes the items into power-of-two shards
like ingest (`tasks.core.shards.assign_shards`) and returns their URIs; `item_frame` gives the rows.

    .venv/bin/python benchmarks/plan_items.py --items 1000000 --shard-size 5000 [--max-shards N] [--old]

times planning (`tasks.plan.step.plan_stages`, in this process, shards one after another) and
reports wall time, CPU seconds and peak RSS; `--old` runs the whole-corpus plan of commit ad08597
(`git show ad08597:tasks/plan/step.py`) on the same shards instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SOURCES = (("commonvoice", 0.6, 40.0), ("podcast", 0.3, 400.0), ("meld", 0.1, 0.0))  # name, share, utts/speaker
WORDS = ("the quick brown fox jumps over a lazy dog and then we went home to see what was left for "
         "dinner today it was really great or maybe not at all").split()


def item_frame(n_items: int, seed: int = 0, start: int = 0) -> pd.DataFrame:
    """`n_items` labelled items (ids `start`..), the columns of the ingest contract plus `speech_intervals`."""
    from tasks.ingest.corpora.base import utterances_frame

    rng = np.random.default_rng([seed, start])
    idx = np.arange(start, start + n_items)
    which = rng.choice(len(SOURCES), size=n_items, p=[s[1] for s in SOURCES])
    source = np.array([s[0] for s in SOURCES], dtype=object)[which]
    per_speaker = np.array([s[2] for s in SOURCES])[which]
    speaker = np.where(per_speaker > 0, [f"spk{int(i // max(p, 1)) % 997}" for i, p in zip(idx, per_speaker,
                                                                                             strict=True)], None)
    duration = np.round(rng.gamma(2.0, 2.0, n_items) + 0.05, 3)
    duration[rng.random(n_items) < 0.005] = 0.1  # too short for either stage
    n_words = np.clip((duration * 2.5).astype(int), 1, 40)
    transcript = [" ".join(rng.choice(WORDS, size=k)) for k in n_words]
    pii = rng.random(n_items) < 0.003
    transcript = [t + " call me at 415 555 0123" if p else t for t, p in zip(transcript, pii, strict=True)]
    no_text = rng.random(n_items) < 0.01
    sentiment = rng.choice(["negative", "neutral", "positive"], size=n_items, p=[0.2, 0.5, 0.3]).astype(object)
    sentiment[rng.random(n_items) < 0.02] = None
    human = rng.random(n_items) < 0.4
    uids = [f"{s}/utt{i:09d}" for s, i in zip(source, idx, strict=True)]
    dup = rng.random(n_items) < 0.01  # listed twice: shares the segment key of the item 7 ids before it
    seg = [f"seg{i - 7 if d and i - 7 >= start else i:09d}" for i, d in zip(idx, dup, strict=True)]
    official = np.where(source == "meld", rng.choice(["train", "dev", "test"], size=n_items, p=[0.8, 0.1, 0.1]), None)
    rows = {
        "utterance_id": uids, "source": source, "corpus": source,
        "audio_uri": [f"/data/{s}/{i:09d}.flac" for s, i in zip(source, idx, strict=True)],
        "offset_s": 0.0, "duration_s": duration, "sample_rate": 16000, "num_channels": 1,
        "audio_sha256": [f"{i:064x}" for i in idx], "segment_key": seg, "language": "en",
        "language_origin": "source",
        "transcript": [None if x else t for t, x in zip(transcript, no_text, strict=True)],
        "transcript_raw": [None if x else t for t, x in zip(transcript, no_text, strict=True)],
        "transcript_origin": np.where(no_text, None, np.where(human, "human", "whisper")),
        "sentiment": sentiment,
        "sentiment_origin": np.where(pd.isna(sentiment), None, np.where(human, "human", "text_classifier")),
        "speaker_id": speaker, "split": official, "license": "CC-BY-4.0",
    }
    frame = utterances_frame([]).reindex(range(n_items))
    for col, values in rows.items():
        frame[col] = pd.Series(list(values) if not np.isscalar(values) else [values] * n_items, dtype=object)
    frame = utterances_frame(frame.to_dict("records"))
    frame["speech_intervals"] = [[[0.0, float(d)]] for d in duration]
    return frame


def write_frames(root: str, frames: list[pd.DataFrame]) -> list[str]:
    """Each frame as one item shard `<root>/items-NNNNN.parquet` (sorted by utterance_id)."""
    return [_write_shard(root, i, frame) for i, frame in enumerate(frames)]


def write_item_shards(root: str, n_items: int, shard_size: int, seed: int) -> list[str]:
    """Write `n_items` items as ingest-like shards (hash of utterance_id, power-of-two count); their URIs.

    Items are generated in chunks and appended per shard, so memory stays at a chunk plus one shard.
    """
    from tasks.core.shards import shard_count, stable_hash

    n_shards = shard_count(n_items, shard_size)
    chunk = max(shard_size * 8, 50_000)
    spill: dict[int, list[pd.DataFrame]] = {}
    tmp = Path(root) / "_chunks"
    tmp.mkdir(parents=True, exist_ok=True)
    for c, start in enumerate(range(0, n_items, chunk)):
        frame = item_frame(min(chunk, n_items - start), seed, start)
        shard_of = frame["utterance_id"].map(lambda u: int(stable_hash(u)[:12], 16) % n_shards)
        for s, part in frame.groupby(shard_of):
            path = tmp / f"{int(s):05d}-{c:05d}.pkl"
            part.to_pickle(path)
            spill.setdefault(int(s), []).append(path)  # type: ignore[arg-type]
    frames_uris = []
    for s in sorted(spill):
        frame = pd.concat([pd.read_pickle(p) for p in spill[s]], ignore_index=True)
        frames_uris.append(_write_shard(root, s, frame))
        for p in spill[s]:
            os.remove(p)  # type: ignore[arg-type]
    tmp.rmdir()
    return frames_uris


def _write_shard(root: str, index: int, frame: pd.DataFrame) -> str:
    from manifests import uri as fs
    from tasks.core.shards import write_frame

    uri = fs.join(root, f"items-{index:05d}.parquet")
    write_frame(uri, frame.sort_values("utterance_id").reset_index(drop=True))
    return uri


def bench_spec(output: str, shard_size: int) -> object:
    """A planning spec: three sources, augmentation off (no audio), undersampled train split."""
    from tasks.spec import parse_spec

    return parse_spec({"name": "plan-bench", "output": output, "augment": {"enabled": False},
                       "run": {"shard_size": shard_size},
                       "sources": [{"name": s, "kind": "folder", "path": "/nonexistent"} for s, _, _ in SOURCES]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--shard-size", type=int, default=5000)
    parser.add_argument("--root", default="/tmp/plan-bench")
    parser.add_argument("--old", action="store_true", help="the whole-corpus plan of ad08597")
    parser.add_argument("--max-shards", type=int, default=None, help="plan only the first N item shards")
    args = parser.parse_args()
    items_dir = Path(args.root) / f"items-{args.items}-{args.shard_size}"
    if not (items_dir / "DONE").exists():
        t0 = time.perf_counter()
        write_item_shards(str(items_dir), args.items, args.shard_size, seed=0)
        (items_dir / "DONE").write_text("")
        print(f"wrote items in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    uris = sorted(str(p) for p in items_dir.glob("items-*.parquet"))[: args.max_shards]
    n_items = sum(pq.ParquetFile(u).metadata.num_rows for u in uris)
    out = Path(args.root) / ("out-old" if args.old else "out-new")
    spec = bench_spec(str(out), args.shard_size)
    shards = [{"items_uri": u, "rejects_uris": [], "reused": False} for u in uris]
    if args.old:
        import importlib.util
        import subprocess

        code = subprocess.run(["git", "-C", str(REPO), "show", "ad08597:tasks/plan/step.py"], check=True,
                              capture_output=True, text=True).stdout
        mod_spec = importlib.util.spec_from_loader("old_plan_step", loader=None)
        module = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
        exec(compile(code, "old_plan_step.py", "exec"), module.__dict__)
        plan_stages = module.plan_stages
    else:
        from tasks.plan.step import plan_stages
    t0, c0 = time.perf_counter(), os.times()
    plan = plan_stages(spec, shards)
    c1 = os.times()
    wall = time.perf_counter() - t0
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"plan": "old" if args.old else "new", "items": n_items, "shards": len(uris),
                      "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_mb": round(rss_mb),
                      "items_per_cpu_s": round(n_items / cpu) if cpu else None,
                      "asr_target": plan["balance_report"]["splits"]["train"]["target_per_class"]}))


if __name__ == "__main__":
    main()
