"""Ingest throughput: the folder adapter's probe + hash against naive decode-and-hash baselines.

Generates N short clips (default 10,000 x 3 s, 16 kHz, 16-bit) as WAV and as FLAC in a temp folder
(a few distinct signals reused, so generation is quick while every file is real audio), then times,
each in a fresh Python process so peak RSS is the method's own:

- `adapter`: `tasks.ingest.corpora.folder.ingest_folder` end to end (listing, probe + hash with its probe
  threads, DataFrame); with `--workers 2` two processes each ingest half of the folders.
- `probe_hash`: `tasks.core.audio.probe_and_hash` in a plain loop (one thread per worker): the per-file cost.
- `naive`: `soundfile.read` (decodes everything) + `hashlib.sha256` of the bytes.
- `lhotse`: `lhotse.Recording.from_file` + `hashlib.sha256` (when lhotse is installed).

Reported: items/s (wall), items per CPU-second (= per core; user + sys of the process and its
workers) and peak RSS per process (VmHWM; with 2 workers, each worker's). The page cache is warmed
before timing (every file read once), so the numbers are CPU cost, not disk speed. Each
configuration runs `--repeat` times and the fastest run is kept (the machine is shared).

    .venv/bin/python benchmarks/ingest.py --files 10000 --workers 1 2
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

METHODS: tuple[str, ...] = ("adapter", "probe_hash", "naive", "lhotse")
FORMATS: tuple[str, ...] = ("wav", "flac")
DISTINCT_SIGNALS = 8


# ------------------------------------------------------------------------------------- data
def _signal_bytes(fmt: str, seconds: float, sample_rate: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = 0.3 * np.sin(2 * np.pi * (220 + 55 * seed) * t) + 0.02 * rng.standard_normal(t.size)
    buf = io.BytesIO()
    sf.write(buf, x.astype(np.float32), sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()


def generate(root: Path, files: int, shards: int, seconds: float, sample_rate: int) -> dict[str, int]:
    """root/<fmt>/shard_<k>/clip_<n>.<fmt> for each format; returns bytes written per format."""
    sizes: dict[str, int] = {}
    for fmt in FORMATS:
        blobs = [_signal_bytes(fmt, seconds, sample_rate, s) for s in range(DISTINCT_SIGNALS)]
        total = 0
        for n in range(files):
            folder = root / fmt / f"shard_{n % shards}"
            folder.mkdir(parents=True, exist_ok=True)
            blob = blobs[n % DISTINCT_SIGNALS]
            (folder / f"clip_{n:06d}.{fmt}").write_bytes(blob)
            total += len(blob)
        sizes[fmt] = total
    return sizes


# ---------------------------------------------------------------------------------- methods
def _sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _naive(path: str) -> float:
    data, sr = sf.read(path, dtype="float32")
    _sha256(path)
    return len(data) / sr


def _lhotse(path: str) -> float:
    from lhotse import Recording

    rec = Recording.from_file(path)
    _sha256(path)
    return rec.duration


def _probe_hash(path: str) -> float:
    from tasks.core import audio
    info, _ = audio.probe_and_hash(path)
    return info.duration_s


_PER_FILE: dict[str, Callable[[str], float]] = {"naive": _naive, "lhotse": _lhotse, "probe_hash": _probe_hash}


def _files_of(folders: list[str]) -> list[str]:
    return sorted(os.path.join(d, f) for d in folders for f in os.listdir(d))


def _run_per_file(method: str, folders: list[str]) -> int:
    fn = _PER_FILE[method]
    files = _files_of(folders)
    total = sum(fn(p) for p in files)
    assert math.isfinite(total) and total > 0
    return len(files)


def _run_adapter(folders: list[str]) -> int:
    from tasks.ingest.corpora.folder import ingest_folder
    from tasks.spec import SourceSpec

    done = 0
    for i, folder in enumerate(folders):
        result = ingest_folder(SourceSpec(name=f"bench{i}", kind="folder", path=folder), "en")
        if len(result.rejects):
            raise RuntimeError(f"benchmark files were rejected: {result.rejects.head().to_dict('records')}")
        done += len(result.items)
    return done


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: per address space, so not inherited from the parent like ru_maxrss)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _work(args: tuple[str, list[str]]) -> tuple[int, float]:
    method, folders = args
    count = _run_adapter(folders) if method == "adapter" else _run_per_file(method, folders)
    return count, _peak_rss_mb()


def _preload(method: str) -> None:
    """Import what the method needs before the clock starts (lhotse alone takes seconds to import)."""
    if method == "adapter":
        import tasks.ingest.corpora.folder  # noqa: F401
    elif method == "probe_hash":
        import tasks.core.audio  # noqa: F401
    elif method == "lhotse":
        import lhotse  # noqa: F401


def run_one(method: str, fmt_root: str, workers: int) -> dict[str, float]:
    """Time one method over every shard folder below `fmt_root` with `workers` processes."""
    shards = sorted(os.path.join(fmt_root, d) for d in os.listdir(fmt_root))
    for path in _files_of(shards):  # warm the page cache: measure CPU cost, not the disk
        with open(path, "rb") as fh:
            fh.read()
    _preload(method)
    groups = [shards[w::workers] for w in range(workers)]
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    if workers == 1:
        results = [_work((method, groups[0]))]
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            results = pool.map(_work, [(method, g) for g in groups])
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(a.ru_utime + a.ru_stime - (b.ru_utime + b.ru_stime) for a, b in zip(after, before, strict=True))
    return {
        "files": sum(c for c, _ in results),
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss_mb": max(max(r for _, r in results), _peak_rss_mb()),
    }


# ------------------------------------------------------------------------------------- main
def _have_lhotse() -> bool:
    import importlib.util

    return importlib.util.find_spec("lhotse") is not None  # without importing it (torch: 500 MB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000, help="clips per format")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sample-rate", type=int, default=16_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration; the fastest is kept")
    parser.add_argument("--json", action="store_true", help="print the raw results as JSON too")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "FMT_ROOT", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        method, fmt_root, workers = args.child
        print(json.dumps(run_one(method, fmt_root, int(workers))))
        return

    methods = [m for m in args.methods if m != "lhotse" or _have_lhotse()]
    shards = math.lcm(*args.workers) * 2
    with tempfile.TemporaryDirectory(prefix="voicetone-bench-") as tmp:
        t0 = time.perf_counter()
        sizes = generate(Path(tmp), args.files, shards, args.seconds, args.sample_rate)
        print(
            f"generated {args.files} x {args.seconds:g} s clips per format in {time.perf_counter() - t0:.1f} s "
            f"({', '.join(f'{f}: {s / 1e6:.0f} MB' for f, s in sizes.items())}); "
            f"{os.cpu_count()} cores, Python {platform.python_version()}",
            flush=True,
        )
        rows = []
        for fmt in FORMATS:
            for workers in args.workers:
                for method in methods:
                    cmd = [sys.executable, __file__, "--child", method, str(Path(tmp) / fmt), str(workers)]
                    runs = []
                    for _ in range(args.repeat):
                        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
                        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    res = min(runs, key=lambda r: r["wall_s"])
                    res.update(format=fmt, workers=workers, method=method)
                    rows.append(res)
                    print(
                        f"{fmt:5} workers={workers} {method:10} {res['files'] / res['wall_s']:8.0f} files/s "
                        f"{res['files'] / res['cpu_s']:8.0f} files/CPU-s  peak RSS {res['peak_rss_mb']:.0f} MB",
                        flush=True,
                    )
    print("\n| format | workers | method | files/s (wall) | files per CPU-second | peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['format']} | {r['workers']} | {r['method']} | {r['files'] / r['wall_s']:,.0f} | "
            f"{r['files'] / r['cpu_s']:,.0f} | {r['peak_rss_mb']:.0f} |"
        )
    if args.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
