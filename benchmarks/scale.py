"""Scale: the real build flow on 10,000 and 100,000 synthetic utterances (issue 8's benchmark).

Corpus: a handful of espeak-ng sentences (numpy tones when espeak-ng is missing) at 16 kHz, written
as one WAV FILE per item. Every file carries a unique RIFF ``LIST/INFO`` comment, so its bytes (and
therefore its sha256 and `segment_key`) are unique while its samples equal the base clip's: the
duplicate-segment resolver keeps every item, and nothing is decoded to make the files. Four `folder`
sources, each with a metadata.csv of human transcripts and sentiment and ~25 utterances per speaker,
so speaker-disjoint splits work. Each transcript is the clip's sentence plus a unique pseudo-word
tag, so text-keyed labels (VADER's cache) see N distinct documents rather than a dozen.

Runs (each in a fresh process; RSS of the whole process tree, Prefect's server included, is
sampled from /proc every 0.25 s):

- `human-N` for each size: ingest -> labels (all human: nothing to label) -> VAD -> balance ->
  publish with `augment.enabled: false`. With `--vad seed` (default) the Silero VAD cache is filled
  beforehand with the exact intervals of each base clip (the items' samples are identical to it), so
  the speech stage is a cache lookup, as in every run after the first; the VAD's own cost is
  measured by the labelled runs below.
- `labelled-L cold`: the L-item corpus with NO sentiment column, so VADER labels every transcript;
  VAD runs for real (cold cache). `labelled-L warm`: the same build again after deleting
  `<output>/work` but keeping `<output>/cache`: every label and VAD result comes from the cache.

Prefect overhead: the pipeline functions the tasks wrap (`tasks/<stage>/step.py`) are timed in-process;
per stage, overhead = stage wall time (the flow's own timings) minus the time during which at least
one task function was running, i.e. time in which only orchestration ran.

    .venv/bin/python benchmarks/scale.py --sizes 10000 100000 --labelled 10000 --shard-size 500 --root /tmp/vscale
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import resource
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SR = 16000
N_SOURCES = 4
UTTS_PER_SPEAKER = 25
FILES_PER_DIR = 1000
TAG_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]  # 70 syllables
SENTENCES: list[tuple[str, str]] = [
    ("I am so happy with the new service", "positive"),
    ("Thank you this is wonderful news", "positive"),
    ("That was a great help I really appreciate it", "positive"),
    ("I love how quickly you fixed it", "positive"),
    ("The meeting is on Tuesday at ten", "neutral"),
    ("Please send the invoice to the main office", "neutral"),
    ("My account number ends in four two", "neutral"),
    ("I am calling about the delivery date", "neutral"),
    ("This is terrible and I am very upset", "negative"),
    ("Nobody answered my complaint for weeks", "negative"),
    ("The product broke after one day it is awful", "negative"),
    ("I hate waiting on hold for an hour", "negative"),
]
VOICES = [("en-us", 170), ("en-gb", 150)]
STAGE_OF = {
    "ingest_source": "ingest", "make_shards": "ingest", "transcripts_shard": "transcripts",
    "prepare_sentiment": "sentiment", "sentiment_shard": "sentiment", "speech_shard": "speech_detection",
    "plan_stages": "split_and_balance", "augment_shard": "augment", "publish": "publish",
    # the flow publishes per shard (#16): prepare and finish here; the per-shard passes are
    # tasks.publish.parts.shard_windows / publish_shard (not timed by this wrapper)
    "prepare_publish": "publish", "finish_publish": "publish",
}
VAD_SETTINGS = {"threshold": 0.5, "v": 1}  # what tasks.label.steps.speech_shard keys its cache with


# ------------------------------------------------------------------------------------- corpus
def _base_clips() -> list[tuple[np.ndarray, str, str]]:
    """(int16 samples at 16 kHz, sentence, sentiment) per sentence x voice."""
    from scipy.signal import resample_poly

    clips = []
    have_espeak = shutil.which("espeak-ng") is not None
    for k, (text, sentiment) in enumerate(SENTENCES):
        for v, (voice, speed) in enumerate(VOICES):
            if have_espeak:
                import io

                import soundfile as sf

                wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text],
                                     capture_output=True, check=True).stdout
                x, sr = sf.read(io.BytesIO(wav), dtype="float32")
                x = resample_poly(x, SR, sr) if sr != SR else x
            else:  # a voiced-like tone burst pattern, so VAD still sees something
                t = np.arange(int(2.0 * SR)) / SR
                x = 0.3 * np.sin(2 * np.pi * (140 + 10 * k + 30 * v) * t) * (np.sin(2 * np.pi * 3 * t) > 0)
            clips.append(((np.clip(x, -1, 1) * 32767).astype("<i2"), text, sentiment))
    return clips


def _wav(pcm: bytes, tag: str) -> bytes:
    """A 16-bit mono WAV whose LIST/INFO/ICMT comment is `tag`: unique bytes, same samples."""
    text = tag.encode() + b"\0"
    text += b"\0" * (len(text) % 2)
    icmt = b"ICMT" + struct.pack("<I", len(text)) + text
    info = b"LIST" + struct.pack("<I", 4 + len(icmt)) + b"INFO" + icmt
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, SR, SR * 2, 2, 16)
    body = b"WAVE" + fmt + info + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _tag_word(i: int) -> str:
    """A unique pronounceable pseudo-word per item index (VADER scores it as neutral filler)."""
    parts = []
    while True:
        i, r = divmod(i, len(TAG_SYLLABLES))
        parts.append(TAG_SYLLABLES[r])
        if i == 0:
            break
    return "".join(parts)


def generate(root: Path, n: int) -> dict[str, Any]:
    """root/src<k>/d<j>/u<i>.wav + metadata.csv per source; a VAD seed table; idempotent."""
    done = root / "corpus.json"
    if done.exists():
        return json.loads(done.read_text())
    from tasks.core.audio import segment_key

    t0 = time.perf_counter()
    clips = _base_clips()
    pcms = [c[0].tobytes() for c in clips]
    seed_rows: list[tuple[str, int]] = []
    per_source = n // N_SOURCES
    total_bytes = 0
    for s in range(N_SOURCES):
        src = root / f"src{s}"
        speakers = max(8, per_source // UTTS_PER_SPEAKER)
        rows = []
        for j in range(per_source):
            i = s * per_source + j
            b = (i * 7 + i // len(clips)) % len(clips)  # mixes sentence and voice over speakers
            rel = f"d{j // FILES_PER_DIR:03d}/u{i:07d}.wav"
            path = src / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            data = _wav(pcms[b], f"voicetone-scale item {i:09d}")
            path.write_bytes(data)
            total_bytes += len(data)
            frames = len(pcms[b]) // 2
            seed_rows.append((segment_key(hashlib.sha256(data).hexdigest(), 0.0, frames / SR), b))
            rows.append({"file_name": rel, "transcript": f"{clips[b][1]} {_tag_word(i)}",
                         "sentiment": clips[b][2], "speaker_id": f"s{s}-{j % speakers:05d}"})
        for name, cols in (("metadata.csv", ["file_name", "transcript", "sentiment", "speaker_id"]),
                           ("metadata.nosentiment.csv", ["file_name", "transcript", "speaker_id"])):
            with open(src / name, "w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
                w.writeheader()
                w.writerows(rows)
    import pandas as pd

    pd.DataFrame(seed_rows, columns=["segment_key", "base"]).to_parquet(root / "vad_seed.parquet")
    info = {"items": per_source * N_SOURCES, "bytes": total_bytes, "base_clips": len(clips),
            "mean_s": float(np.mean([len(p) / 2 / SR for p in pcms])), "generate_s": time.perf_counter() - t0}
    done.write_text(json.dumps(info))
    return info


def labelled_corpus(root: Path, human: Path) -> None:
    """The same files (hard links) with a metadata.csv that has no sentiment column."""
    if (root / "ready").exists():
        return
    for s in range(N_SOURCES):
        src, dst = human / f"src{s}", root / f"src{s}"
        for path in src.rglob("*.wav"):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(path, target)
        shutil.copy(src / "metadata.nosentiment.csv", dst / "metadata.csv")
    (root / "ready").write_text("ok")


def seed_vad_cache(corpus: Path, output: Path) -> int:
    """Fill <output>/cache with what Silero VAD returns for each item (= its base clip's intervals)."""
    import pandas as pd

    from tasks.core.audio import read_audio
    from tasks.core.label_cache import LabelCache
    from tasks.label.speech import VAD_SR, speech_intervals

    table = pd.read_parquet(corpus / "vad_seed.parquet")
    clips = _base_clips()
    intervals = {}
    for b, (pcm, _, _) in enumerate(clips):  # decode as the pipeline does, from a real WAV
        tmp = output.parent / f".vad-seed-{b}.wav"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(_wav(pcm.tobytes(), "seed"))
        audio = read_audio(str(tmp), target_sr=VAD_SR, mono=True)
        intervals[b] = json.dumps([[float(a), float(e)] for a, e in speech_intervals(audio, VAD_SR, 0.5)])
        tmp.unlink()
    cache = LabelCache(str(output / "cache"), "silero-vad", VAD_SETTINGS)
    cache.put_many({k: {"intervals": intervals[b]} for k, b in zip(table["segment_key"], table["base"], strict=True)})
    return len(table)


def write_spec(path: Path, name: str, corpus: Path, output: Path, shard_size: int) -> None:
    import yaml

    spec = {
        "name": name, "seed": 13, "output": str(output), "language": "en",
        "sources": [{"name": f"src{s}", "kind": "folder", "path": str(corpus / f"src{s}")} for s in range(N_SOURCES)],
        # check_declared: false keeps the build what this benchmark measured before #17: with the default
        # (true) every declared row goes through Whisper language identification at ingest, hours of CPU
        # at 100k that the seeded VAD cache does not cover (its cost is in RESULTS.md "## languages").
        "labelers": {"transcripts": "whisper", "sentiment": "text_classifier", "quality_sample_per_source": 0,
                     "language_id": {"check_declared": False}},
        "augment": {"enabled": False},
        "run": {"shard_size": shard_size, "max_workers": 2},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


# ------------------------------------------------------------------------------- measurement
def _tree_rss(root_pid: int) -> int:
    """Resident bytes of root_pid and all its descendants, from /proc."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
                parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root_pid}, [root_pid]
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    while frontier:
        for c in children.get(frontier.pop(), []):
            if c not in tree:
                tree.add(c)
                frontier.append(c)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_child(spec_path: Path, report_path: Path) -> dict[str, Any]:
    """Run one build in a fresh process; sample the process tree's RSS; return the child's report."""
    load_before = os.getloadavg()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "_child", str(spec_path), str(report_path)], cwd=REPO)
    peak, samples = 0, []
    while proc.poll() is None:
        rss = _tree_rss(proc.pid)
        peak = max(peak, rss)
        samples.append(rss)
        time.sleep(0.25)
    wall = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"build of {spec_path} failed (exit {proc.returncode})")
    report = json.loads(report_path.read_text())
    report.update(process_wall_s=wall, peak_tree_rss_mb=peak / 2**20,
                  cpu_s=(usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
                  load_before=load_before, load_after=os.getloadavg())
    return report


def _covered(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def child(spec_path: str, report_path: str) -> None:
    """In the child: time every pipeline function the flow's tasks call, run the flow, write a report."""
    t_start = time.perf_counter()
    from flows.cli import _prefect_env

    _prefect_env()
    from flows.build_dataset import build_dataset
    from tasks.augment import step as augment_step
    from tasks.ingest import step as ingest_step
    from tasks.label import steps as label_steps
    from tasks.plan import step as plan_step
    from tasks.publish import step as publish_step
    from tasks.spec import load_spec

    step_module = {"ingest": ingest_step, "transcripts": label_steps, "sentiment": label_steps,
                   "speech_detection": label_steps, "split_and_balance": plan_step, "augment": augment_step,
                   "publish": publish_step}
    calls: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    profile_dir = os.environ.get("VOICETONE_SCALE_PROFILE")  # a folder: one cProfile dump per call

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            prof = None
            if profile_dir:
                import cProfile

                prof = cProfile.Profile()  # per call: cProfile only sees the thread that enables it
                prof.enable()
            a = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                b = time.perf_counter()
                if prof is not None:
                    prof.disable()
                    prof.dump_stats(os.path.join(profile_dir, f"{name}-{a:.6f}.prof"))
                with lock:
                    calls.append((name, a, b))
        return wrapper

    for name in STAGE_OF:
        module = step_module[STAGE_OF[name]]
        setattr(module, name, timed(name, getattr(module, name)))
    spec = load_spec(Path(spec_path))
    t_flow = time.perf_counter()
    result = build_dataset(spec)
    t_end = time.perf_counter()
    from manifests.io import read_card, resolve_release

    card = read_card(resolve_release(result["release_uri"]))
    stages: dict[str, Any] = {}
    for stage, wall in result["timings"].items():
        mine = [(a, b) for n, a, b in calls if STAGE_OF[n] == stage]
        busy = sum(b - a for a, b in mine)
        covered = _covered(mine)
        stages[stage] = {"wall_s": wall, "task_calls": len([n for n, _, _ in calls if STAGE_OF[n] == stage]),
                         "in_functions_s": busy, "covered_s": covered, "overhead_s": max(0.0, wall - covered)}
    vad_segments = len(list((Path(spec.output) / "cache" / "silero-vad").rglob("*.parquet")))
    Path(report_path).write_text(json.dumps({
        "counts": result["counts"], "found": result["found"], "card_timings": card.get("timings")
        or (card.get("extra") or {}).get("timings"), "stages": stages,
        "flow_wall_s": t_end - t_flow, "import_s": t_flow - t_start,
        "self_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "vad_cache_segments": vad_segments, "release": result["release_uri"],
    }, indent=1))


# ------------------------------------------------------------------------------------ driver
def _row(label: str, rep: dict[str, Any]) -> str:
    st = rep["stages"]
    stage_wall = sum(s["wall_s"] for s in st.values())
    overhead = sum(s["overhead_s"] for s in st.values())
    tasks = sum(s["task_calls"] for s in st.values())
    cells = [label, f"{rep['counts']['utterances']:,}", f"{rep['process_wall_s']:.0f}", f"{stage_wall:.0f}",
             *(f"{st[k]['wall_s']:.1f}" for k in ("ingest", "transcripts", "sentiment", "speech_detection",
                                                  "split_and_balance", "publish")),
             f"{overhead:.1f} ({100 * overhead / stage_wall:.1f} %)",
             f"{1000 * overhead / max(1, tasks):.0f}", f"{rep['cpu_s']:.0f}", f"{rep['peak_tree_rss_mb']:.0f}",
             f"{rep['self_maxrss_mb']:.0f}", f"{rep['load_before'][0]:.1f}/{rep['load_after'][0]:.1f}"]
    return "| " + " | ".join(cells) + " |"


HEADER = ("| run | utterances | process wall s | stage wall s | ingest | transcripts | sentiment | speech | "
          "split+balance | publish | orchestration overhead s | overhead ms/task | CPU s | peak tree RSS MB | "
          "flow process max RSS MB | load 1-min before/after |\n" + "|---" * 16 + "|")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    ap.add_argument("--labelled", type=int, default=10000, help="size of the labelled cold/warm pair (0: skip)")
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--vad", choices=["seed", "run"], default="seed", help="human runs: seed the VAD cache or run VAD")
    ap.add_argument("--root", type=Path, default=Path("/tmp/voicetone-scale"))
    ap.add_argument("--keep", action="store_true", help="keep outputs of earlier runs (default: rebuild fresh)")
    args = ap.parse_args()
    root = args.root.resolve()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load {os.getloadavg()}", flush=True)
    reports: list[tuple[str, dict[str, Any]]] = []
    for n in sorted(set(args.sizes) | ({args.labelled} if args.labelled else set())):
        info = generate(root / "corpus" / f"n{n}", n)
        print(f"corpus n{n}: {info}", flush=True)
    for n in args.sizes:
        corpus, out = root / "corpus" / f"n{n}", root / "out" / f"human-{n}"
        if not args.keep and out.exists():
            shutil.rmtree(out)
        spec = root / f"human-{n}.yaml"
        write_spec(spec, f"scale-human-{n}", corpus, out, args.shard_size)
        if args.vad == "seed":
            print(f"seeded {seed_vad_cache(corpus, out)} VAD cache entries for {n}", flush=True)
        rep = run_child(spec, root / f"human-{n}.json")
        reports.append((f"human {n:,} (VAD {'cache seeded' if args.vad == 'seed' else 'cold'})", rep))
        print(HEADER + "\n" + _row(*reports[-1]), flush=True)
    if args.labelled:
        n = args.labelled
        corpus, out = root / "corpus" / f"labelled{n}", root / "out" / f"labelled-{n}"
        labelled_corpus(corpus, root / "corpus" / f"n{n}")
        if out.exists():
            shutil.rmtree(out)
        spec = root / f"labelled-{n}.yaml"
        write_spec(spec, f"scale-labelled-{n}", corpus, out, args.shard_size)
        for phase in ("cold", "warm"):
            if phase == "warm":
                shutil.rmtree(out / "work")  # shards redone; every label and VAD result from the cache
            rep = run_child(spec, root / f"labelled-{n}-{phase}.json")
            reports.append((f"labelled {n:,} {phase} (VADER + VAD {'cold' if phase == 'cold' else 'cached'})", rep))
            print(HEADER + "\n" + _row(*reports[-1]), flush=True)
    print("\n" + HEADER)
    for label, rep in reports:
        print(_row(label, rep))
    (root / "summary.json").write_text(json.dumps(dict(reports), indent=1))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
