"""Planning scale: the real flow's planning, windows, publish and validate on 0.1-10 million labelled items.

Issue #16's benchmark. Planning and publish do not read audio, so the corpus is written directly as
what the speech stage leaves behind: labelled item shards (the exact columns of a demo build's
`work/speech/*.items.parquet`: labels, provenance, speakers, `speech_intervals`), hashed by
`utterance_id` into a power of two of shards as `tasks.ingest.step.make_shards` does, plus per-source
ingest results (found counts, ingest rejects) and labelling-stage rejects. Four sources shaped like
Common Voice (text-classifier sentiment), LibriSpeech (same), MSP-Podcast (segments of long episodes,
emotions mapped to sentiment, a few duplicate segments) and a call-centre `folder` (Whisper
transcripts, human sentiment, speakers partly unknown); ~1 % of items lack a sentiment and ~0.3 % a
transcript (the plan rejects them), ~0.5 % are ingest rejects, ~0.3 % speech-stage rejects.
No audio exists: `augment.enabled: false` and `report.html: false` (the only steps that read audio).

Each (size, runner) runs in a fresh process that calls `flows.build_dataset.publish_labelled` (the
post-labelling half of a build: split-and-balance -> augment -> publish, under the output lock, on
the spec's task runner), then `manifests.validate.validate_release` in a process of its own (as
`voicetone validate` runs; its peak is the table's "validate MB", not part of the flow's). From
`run.finish_in_child_from_rows` utterances (default 200,000) publish's finishing step (card, plots,
the build's own validation, LATEST) runs in a child process of the flow (or of a Dask worker): its
peak is the "finishing step MB" column.
`threads`: the embedded Prefect server; `dask`: a local cluster of 2 worker processes and a
`prefect server start` this script starts. A psutil thread samples every process (flow, Prefect
server, each Dask worker) every 0.5 s: peak RSS per process and CPU seconds. Every run uses one Prefect
home whose database was migrated before the first run (`prepare_prefect_home`), as a user's is.

    nice -n 10 .venv/bin/python benchmarks/plan_scale.py --sizes 100000 1000000 --runners threads dask
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# ------------------------------------------------------------------------------------------ corpus
SOURCES = [  # name, adapter kind (= corpus), share of items, items per speaker, sample rate, licence
    ("commonvoice_en", "commonvoice", 0.45, 40, 48000, "CC0-1.0"),
    ("librispeech", "librispeech", 0.25, 120, 16000, "CC-BY-4.0"),
    ("msp_podcast", "msp_podcast", 0.15, 60, 16000, "MSP-Podcast academic licence"),
    ("support_calls", "folder", 0.15, 25, 8000, "proprietary"),
]
SEGMENTS_PER_EPISODE = 40  # MSP-Podcast items are segments of long episode files
OPENERS = ["well", "so", "okay", "honestly", "look", "you know", "i think", "actually", "right", "um", "yes",
           "no", "listen", "frankly", "basically", "anyway", "oh", "hey", "sure", "and"]
SUBJECTS = ["the delivery", "my account", "the new phone", "your service", "the meeting", "this product",
            "the invoice", "our order", "the weather", "the team", "the update", "her answer", "the manager",
            "that movie", "the train", "the app", "my refund", "the hotel", "the book", "the call"]
VERBS = ["was", "seems", "has been", "felt", "looks", "is", "became", "turned out", "sounded", "stayed"]
ENDINGS = {
    "positive": ["really great", "wonderful thank you", "so much better now", "amazing honestly", "a real help",
                 "excellent work", "just perfect", "a pleasant surprise", "fantastic news", "lovely"],
    "neutral": ["on tuesday at ten", "in the main office", "about the same", "as scheduled", "under review",
                "in the other folder", "number four two", "sent yesterday", "around noon", "on the list"],
    "negative": ["terrible and late", "a complete mess", "broken again", "awful to deal with", "really upsetting",
                 "worse than before", "a total waste", "so frustrating", "rude and slow", "unacceptable"],
}
SENTIMENTS = ["negative", "neutral", "positive"]
EMOTION_OF = {"negative": ["angry", "sad", "disgust", "contempt", "fear"], "neutral": ["neutral"],
              "positive": ["happy", "surprise"]}
AGES = [("teens", "<20"), ("twenties", "20-29"), ("thirties", "30-39"), ("fourties", "40-49"),
        ("fifties", "50-59"), ("sixties", "60+")]
ACCENTS = ["us", "england", "india", "canada", "australia", "scotland", "ireland", "newzealand"]


def _columns() -> list[tuple[str, Any]]:
    """(name, arrow type) of a labelled shard after speech detection, in the pipeline's order."""
    import pyarrow as pa

    s, f, i = pa.large_string(), pa.float64(), pa.int32()
    return [
        ("utterance_id", s), ("source", s), ("corpus", s), ("audio_uri", s), ("offset_s", f), ("duration_s", f),
        ("sample_rate", i), ("num_channels", i), ("audio_sha256", s), ("segment_key", s), ("language", s),
        ("language_origin", s), ("language_probability", f), ("transcript", s), ("transcript_raw", s),
        ("transcript_origin", s), ("transcript_confidence", f), ("avg_logprob", f), ("no_speech_prob", f),
        ("compression_ratio", f), ("sentiment", s), ("sentiment_origin", s), ("p_negative", f), ("p_neutral", f),
        ("p_positive", f), ("sentiment_confidence", f), ("emotion", s), ("emotion_intensity", s),
        ("speaker_id", s), ("gender", s), ("age", s), ("age_bucket", s), ("accent", s), ("license", s),
        ("split", pa.null()), ("speech_detector", s), ("asr_hypothesis", s), ("asr_hypothesis_origin", s),
        ("sentiment_compound", f), ("speech_intervals", pa.list_(pa.list_(f))),
    ]


def _attributes(n: int, seed: int) -> dict[str, np.ndarray]:
    """Every item's numeric attributes, vectorised (strings are made per shard from these)."""
    rng = np.random.default_rng(seed)
    shares = np.array([s[2] for s in SOURCES])
    bounds = np.concatenate([[0], np.round(np.cumsum(shares) * n).astype(np.int64)])
    bounds[-1] = n
    src = np.searchsorted(bounds[1:], np.arange(n), side="right").astype(np.int8)
    local = np.arange(n) - bounds[src]
    per_speaker = np.array([s[3] for s in SOURCES])[src]
    n_speakers = np.maximum(8, (bounds[1:] - bounds[:-1]) // np.array([s[3] for s in SOURCES]))[src]
    speaker = np.minimum(n_speakers - 1, (n_speakers * rng.random(n) ** 1.6).astype(np.int64))  # skewed
    duration = np.round(np.clip(0.8 + rng.gamma(2.0, 1.6, n), 0.6, 20.0), 3)
    sentiment = rng.choice(3, n, p=[0.2, 0.55, 0.25]).astype(np.int8)
    is_msp = src == 2
    episode = np.where(is_msp, local // SEGMENTS_PER_EPISODE, local)
    offset = np.where(is_msp, np.round((local % SEGMENTS_PER_EPISODE) * 21.0, 3), 0.0)
    dup = is_msp & (rng.random(n) < 0.001) & (local % SEGMENTS_PER_EPISODE > 0)  # same segment as the previous
    duration[1:][dup[1:]] = duration[:-1][dup[1:]]
    offset[1:][dup[1:]] = offset[:-1][dup[1:]]
    fate = rng.random(n)  # < 0.005 ingest reject; < 0.008 speech-stage reject; then missing labels
    return {"src": src, "local": local, "speaker": speaker, "per_speaker": per_speaker, "duration": duration,
            "offset": offset, "sentiment": sentiment, "episode": episode, "dup": dup, "fate": fate,
            "slots": rng.integers(0, 10_000, size=(n, 4)), "probs": rng.dirichlet([1, 1, 1], n),
            "conf": rng.random(n), "two_intervals": rng.random(n) < 0.3, "missing": rng.random(n)}


def _uid(a: dict[str, np.ndarray], i: int) -> str:
    return f"{SOURCES[a['src'][i]][0]}/u{i:09d}"


def _file_of(a: dict[str, np.ndarray], i: int) -> tuple[str, str]:
    """(audio_uri, audio_sha256) of item i's file (an MSP episode holds many items)."""
    name, kind = SOURCES[a["src"][i]][0], SOURCES[a["src"][i]][1]
    if kind == "msp_podcast":
        key = f"/corpora/msp_podcast/Audios/MSP-PODCAST_{a['episode'][i]:06d}.wav"
        if a["dup"][i]:  # a duplicate of the previous segment: the same episode file
            key = f"/corpora/msp_podcast/Audios/MSP-PODCAST_{a['episode'][i - 1]:06d}.wav"
    else:
        key = f"/corpora/{name}/clips/{i // 1000:06d}/u{i:09d}.{'mp3' if kind == 'commonvoice' else 'flac'}"
    return key, hashlib.sha256(key.encode()).hexdigest()


def _row(a: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    """One labelled item (all 40 columns)."""
    src = int(a["src"][i])
    name, kind, _, _, sr, licence = SOURCES[src]
    sentiment = SENTIMENTS[a["sentiment"][i]]
    s0, s1, s2, s3 = (int(v) for v in a["slots"][i])
    words = [OPENERS[s0 % 20], SUBJECTS[s1 % 20], VERBS[s2 % 10], ENDINGS[sentiment][s3 % 10]]
    transcript = " ".join(words)
    uri, sha = _file_of(a, i)
    offset, dur = float(a["offset"][i]), float(a["duration"][i])
    spk = int(a["speaker"][i])
    age = AGES[spk % 6] if kind == "commonvoice" and spk % 3 else (None, None)
    row: dict[str, Any] = {
        "utterance_id": _uid(a, i), "source": name, "corpus": kind, "audio_uri": uri, "offset_s": offset,
        "duration_s": dur, "sample_rate": sr, "num_channels": 1, "audio_sha256": sha,
        "segment_key": f"{sha}:{offset:.3f}:{offset + dur:.3f}", "language": "en", "language_origin": "declared",
        "language_probability": round(0.9 + 0.1 * float(a["conf"][i]), 5), "transcript": transcript,
        "transcript_raw": transcript.capitalize() + ".", "transcript_origin": "human",
        "transcript_confidence": None, "avg_logprob": None, "no_speech_prob": None, "compression_ratio": None,
        "sentiment": sentiment, "sentiment_origin": "human", "p_negative": None, "p_neutral": None,
        "p_positive": None, "sentiment_confidence": None, "emotion": None, "emotion_intensity": None,
        "speaker_id": f"{name}-spk{spk:06d}", "gender": ("male", "female")[spk % 2], "age": age[0],
        "age_bucket": age[1], "accent": ACCENTS[spk % 8] if kind == "commonvoice" and spk % 4 else None,
        "license": licence, "split": None, "speech_detector": "vad", "asr_hypothesis": None,
        "asr_hypothesis_origin": None, "sentiment_compound": None,
    }
    if kind in ("commonvoice", "librispeech"):  # no human sentiment: the text classifier's
        p = a["probs"][i]
        p = 0.5 * p + 0.5 * np.eye(3)[a["sentiment"][i]]
        row.update(sentiment_origin="text_classifier", p_negative=round(float(p[0]), 4),
                   p_neutral=round(float(p[1]), 4), p_positive=round(float(p[2]), 4),
                   sentiment_confidence=round(float(p.max()), 4))
    elif kind == "msp_podcast":
        choices = EMOTION_OF[sentiment]
        row.update(sentiment_origin="mapped_emotion", emotion=choices[s3 % len(choices)], emotion_intensity="normal")
    else:  # call centre: Whisper transcripts, human sentiment, a third of the speakers unknown
        c = float(a["conf"][i])
        row.update(transcript_origin="whisper", transcript_confidence=round(0.6 + 0.4 * c, 4),
                   avg_logprob=round(-0.6 * (1 - c), 4), no_speech_prob=round(0.05 * (1 - c), 4),
                   compression_ratio=round(1.2 + 0.6 * c, 4), asr_hypothesis=transcript,
                   asr_hypothesis_origin="whisper")
        if spk % 3 == 0:
            row.update(speaker_id=None, gender=None)
    if a["missing"][i] < 0.01:  # no sentiment after labelling: the plan rejects it (missing_label)
        row.update(sentiment=None, sentiment_origin=None, p_negative=None, p_neutral=None, p_positive=None,
                   sentiment_confidence=None, emotion=None, emotion_intensity=None)
    elif a["missing"][i] < 0.013 and kind != "folder":
        row.update(transcript=None, transcript_raw=None, transcript_origin=None)
    start = round(min(0.12, dur / 10), 3)
    if a["two_intervals"][i] and dur > 2.0:
        row["speech_intervals"] = [[start, round(dur * 0.45, 3)], [round(dur * 0.55, 3), round(dur - 0.05, 3)]]
    else:
        row["speech_intervals"] = [[start, round(dur - 0.05, 3)]]
    return row


def write_item_shards(root: Path, n_items: int, shard_size: int, seed: int = 13) -> dict[str, Any]:
    """Labelled item shards, ingest results and rejects for `n_items` found items under `root`; idempotent.

    Returns {"labelled": [ShardResult], "ingest": [IngestResult], "facts": {...}} (also in manifest.json).
    """
    done = root / "manifest.json"
    if done.exists():
        out = json.loads(done.read_text())
        if any("rows" not in r for r in out["labelled"]):  # a corpus written before shard results had rows
            from tasks.core.shards import work_rows

            for r in out["labelled"]:
                r["rows"] = work_rows(r["items_uri"])
            done.write_text(json.dumps(out))
        return out
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.core.rows import reject_row, rejects_frame
    from tasks.core.shards import shard_count, stable_hash, write_frame

    t0 = time.perf_counter()
    a = _attributes(n_items, seed)
    ingest_rej, speech_rej = a["fate"] < 0.005, (a["fate"] >= 0.005) & (a["fate"] < 0.008)
    kept = np.flatnonzero(~(ingest_rej | speech_rej))
    n_shards = shard_count(len(kept), shard_size)
    shard_of = np.array([int(stable_hash(_uid(a, i))[:12], 16) % n_shards for i in kept], dtype=np.int64)
    order = kept[np.argsort(shard_of, kind="stable")]
    cuts = np.searchsorted(np.sort(shard_of), np.arange(n_shards + 1))
    schema = pa.schema(_columns())
    (root / "shards").mkdir(parents=True, exist_ok=True)
    speech_of_shard: dict[int, list[int]] = {}
    for i in np.flatnonzero(speech_rej):  # a speech-stage reject belongs to the shard its id hashes to
        speech_of_shard.setdefault(int(stable_hash(_uid(a, i))[:12], 16) % n_shards, []).append(int(i))
    labelled = []
    for k in range(n_shards):
        idx = sorted(order[cuts[k]:cuts[k + 1]].tolist())  # ids are zero-padded: index order = id order
        if not idx:
            continue
        rows = sorted((_row(a, i) for i in idx), key=lambda r: r["utterance_id"])
        table = pa.Table.from_pylist(rows, schema=schema)
        items_uri = str(root / "shards" / f"shard-{k:05d}.items.parquet")
        pq.write_table(table, items_uri, compression="zstd")
        rejects_uri = str(root / "shards" / f"shard-{k:05d}.speech.rejects.parquet")
        write_frame(rejects_uri, rejects_frame([
            reject_row(SOURCES[a["src"][i]][0], _uid(a, i), "speech_detection", "empty_audio",
                       f"{_uid(a, i)}: no speech found (Silero VAD)") for i in speech_of_shard.get(k, [])]))
        labelled.append({"items_uri": items_uri, "rejects_uris": [rejects_uri], "reused": False, "rows": len(rows)})
    ingest = []
    (root / "ingest").mkdir(parents=True, exist_ok=True)
    for s, (name, *_rest) in enumerate(SOURCES):
        mine = a["src"] == s
        bad = np.flatnonzero(mine & ingest_rej)
        rejects_uri = str(root / "ingest" / f"{name}.rejects.parquet")
        write_frame(rejects_uri, rejects_frame([
            reject_row(name, _file_of(a, int(i))[0], "ingest", ("unreadable_audio", "missing_audio")[int(i) % 2],
                       f"{_file_of(a, int(i))[0]}: cannot be decoded") for i in bad]))
        items_uri = str(root / "ingest" / f"{name}.items.parquet")  # not read after sharding: left empty
        pq.write_table(pa.Table.from_pylist([], schema=schema), items_uri)
        ingest.append({"source": name, "items_uri": items_uri, "rejects_uri": rejects_uri,
                       "found": int(mine.sum()), "notes": []})
    facts = {"found": n_items, "in_shards": len(kept), "shards": len(labelled), "shard_size": shard_size,
             "ingest_rejects": int(ingest_rej.sum()), "speech_rejects": int(speech_rej.sum()),
             "duplicates": int(a["dup"][kept].sum()), "bytes": sum(Path(r["items_uri"]).stat().st_size
                                                               for r in labelled),
             "generate_s": round(time.perf_counter() - t0, 1)}
    out = {"labelled": labelled, "ingest": ingest, "facts": facts}
    done.write_text(json.dumps(out))
    return out


def write_spec(path: Path, name: str, shards: Path, output: Path, runner: str, shard_size: int,
               part_rows: int | None = None) -> None:
    import yaml

    (shards / "src").mkdir(parents=True, exist_ok=True)
    spec = {
        "name": name, "seed": 13, "output": str(output), "language": "en",
        "sources": [{"name": s[0], "kind": s[1], "path": str(shards / "src")} for s in SOURCES],
        "labelers": {"transcripts": "whisper", "sentiment": "text_classifier", "quality_sample_per_source": 0},
        "augment": {"enabled": False},
        "report": {"html": False},
        "run": {"shard_size": shard_size, "max_workers": 2, "task_runner": runner},
    }
    if part_rows:
        spec["run"]["part_rows"] = part_rows
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


# ------------------------------------------------------------------------------------- measuring
class Sampler(threading.Thread):
    """Peak RSS and last CPU seconds of every process in the given trees, sampled every `every_s`."""

    def __init__(self, roots: list[int], every_s: float = 0.5, limit_mb: float | None = None) -> None:
        super().__init__(daemon=True)
        self.roots, self.every_s, self.limit_mb = roots, every_s, limit_mb
        self.peak: dict[int, int] = {}
        self.cpu: dict[int, float] = {}
        self.role: dict[int, str] = {}
        self.peak_total = 0
        self.timeline: list[tuple[str, dict[str, int]]] = []  # (UTC time, peak MB per role in the last ~10 s)
        self._window: dict[str, int] = {}
        self._next_mark = 0.0
        self.over_limit = False
        self._halt = threading.Event()

    def _procs(self) -> list[Any]:
        import psutil

        procs = []
        for pid in self.roots:
            try:
                root = psutil.Process(pid)
                procs += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        return procs

    def sample(self) -> None:
        import psutil

        total = 0
        now: dict[str, int] = {}
        for p in self._procs():
            try:
                with p.oneshot():
                    rss, cpu = p.memory_info().rss, sum(p.cpu_times()[:2])
                    if self.role.get(p.pid, "other") == "other":  # a child seen before its exec: ask again
                        self.role[p.pid] = _role(p.pid, self.roots, " ".join(p.cmdline()))
            except psutil.Error:
                continue
            total += rss
            role = self.role[p.pid]
            now[role] = max(now.get(role, 0), round(rss / 2**20))
            self._window[role] = max(self._window.get(role, 0), now[role])
            self.peak[p.pid] = max(self.peak.get(p.pid, 0), rss)
            self.cpu[p.pid] = max(self.cpu.get(p.pid, 0.0), cpu)
        self.peak_total = max(self.peak_total, total)
        if time.monotonic() >= self._next_mark:  # when a peak happened, to set beside the flow's log
            self.timeline.append((datetime.now(UTC).strftime("%H:%M:%S"), self._window))
            self._window = {}
            self._next_mark = time.monotonic() + 10
        if self.limit_mb and total > self.limit_mb * 2**20:
            self.over_limit = True

    def run(self) -> None:
        while not self._halt.wait(self.every_s):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)

    def by_role(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for pid, peak in sorted(self.peak.items()):
            out.setdefault(self.role.get(pid, "other"), []).append(round(peak / 2**20))
        return out

    def cpu_by_role(self) -> dict[str, float]:
        """CPU seconds (user + system) per role, as last sampled: a process that ends between samples
        loses its last half second, so these are a lower bound that shows where the CPU went."""
        out: dict[str, float] = {}
        for pid, cpu in self.cpu.items():
            role = self.role.get(pid, "other")
            out[role] = round(out.get(role, 0.0) + cpu, 1)
        return out


def _role(pid: int, roots: list[int], cmdline: str) -> str:
    if pid == roots[0]:
        return "flow"
    if "tasks.publish.finish_process" in cmdline:  # publish's finishing step, a child of the flow or a worker
        return "finish"
    if "_validate" in cmdline:
        return "validate"
    if "prefect" in cmdline and ("server" in cmdline or "uvicorn" in cmdline):
        return "prefect server"
    if "multiprocessing" in cmdline or "spawn_main" in cmdline or "forkserver" in cmdline:
        return "dask worker"
    return "other"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path) -> tuple[subprocess.Popen, str]:
    """`prefect server start` on a free loopback port (Dask runs need a real server)."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_LOGGING_LEVEL": "WARNING"}
    env.pop("PREFECT_API_URL", None)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "server.log", "w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "prefect"), "server", "start", "--host",
                                 "127.0.0.1", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 600  # a loaded 2-core machine can take minutes
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"prefect server did not start (log: {home / 'server.log'})")


def prepare_prefect_home(home: Path) -> Path:
    """A Prefect home whose database is created and migrated, outside every timed run.

    A user's `~/.prefect` is migrated once, on first use; an empty home costs the embedded server
    ~10 CPU s of database migrations at every start (measured: 14.6 CPU s to healthy with an empty
    home, 4.5 s with a migrated one), which is not the build's work. Every run of this invocation
    shares the home, as a user's builds share theirs."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    subprocess.run([str(Path(sys.executable).parent / "prefect"), "server", "database", "upgrade", "-y"], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return home


def run_child(spec: Path, corpus: Path, report: Path, api_url: str | None, server_pid: int | None,
              limit_mb: float | None, home: Path) -> dict[str, Any]:
    """One run in a fresh process, sampled; returns the child's report plus the process measurements."""
    import psutil

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env["PREFECT_HOME"] = str(home)
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    server_cpu0 = 0.0
    if server_pid:
        server = psutil.Process(server_pid)
        server_cpu0 = sum(sum(p.cpu_times()[:2]) for p in [server, *server.children(recursive=True)])
    load_before = os.getloadavg()
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(report.with_suffix(".log"), "w") as log:  # the flow's log, kept beside the report
        proc = subprocess.Popen([sys.executable, __file__, "_child", str(spec), str(corpus), str(report)], cwd=REPO,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    sampler = Sampler([proc.pid, *([server_pid] if server_pid else [])], limit_mb=limit_mb)
    sampler.start()
    while proc.poll() is None:
        if sampler.over_limit:
            for kid in psutil.Process(proc.pid).children(recursive=True):  # the run's own processes, by pid
                kid.terminate()
            proc.terminate()
            proc.wait()
            break
        time.sleep(0.25)
    sampler.stop()
    wall = time.perf_counter() - t0
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = 0.0
    if server_pid:
        server = psutil.Process(server_pid)
        server_cpu = sum(sum(p.cpu_times()[:2]) for p in [server, *server.children(recursive=True)]) - server_cpu0
    measured = {"process_wall_s": wall, "peak_rss_mb": sampler.by_role(),
                "cpu_s_by_role": sampler.cpu_by_role(), "peak_tree_mb": sampler.peak_total / 2**20,
                "cpu_s": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime) + server_cpu,
                "server_cpu_s": server_cpu, "load_before": load_before, "load_after": os.getloadavg(),
                "rss_timeline": sampler.timeline}
    if sampler.over_limit:
        return {"failed": f"stopped: process tree over {limit_mb:.0f} MB", **measured}
    if proc.returncode != 0 or not report.exists():
        return {"failed": f"exit {proc.returncode}", **measured}
    return {**json.loads(report.read_text()), **measured}


def child(spec_path: str, corpus: str, report_path: str) -> None:
    """In the fresh process: the post-labelling flow on the written shards, then validate."""
    t_start = time.perf_counter()
    from flows.cli import _prefect_env

    _prefect_env()
    from flows.build_dataset import publish_labelled
    from tasks.spec import load_spec

    data = json.loads((Path(corpus) / "manifest.json").read_text())
    spec = load_spec(Path(spec_path))
    began = datetime.now(UTC)
    t0 = time.perf_counter()
    result = publish_labelled(spec, data["labelled"], data["ingest"])
    t1 = time.perf_counter()
    # `voicetone validate` runs in a process of its own; here too, so the flow's peak is the build's
    # (memory a process once held is not given back, so validating in it would add to its peak).
    checked_path = Path(report_path).with_suffix(".validate.json")
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, __file__, "_validate", spec.output, str(checked_path)], cwd=REPO, check=True)
    usage1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    checked = json.loads(checked_path.read_text())
    t2 = time.perf_counter()
    Path(report_path).write_text(json.dumps({
        "counts": result["counts"], "timings": result["timings"], "flow_s": t1 - t0, "validate_s": t2 - t1,
        "valid": checked["valid"], "problems": checked["problems"], "import_s": t0 - t_start,
        "validate_cpu_s": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
        "task_runs": _task_runs(began), "content_sha256": result["content_sha256"],
    }, indent=1))


def validate(output: str, report_path: str) -> None:
    """In a process of its own: `validate_release` on the published release, as `voicetone validate` does."""
    from manifests.validate import validate_release

    checked = validate_release(output)
    Path(report_path).write_text(json.dumps({"valid": checked.ok, "problems": checked.problems[:5]}))


def _task_runs(after: datetime) -> dict[str, int]:
    """Task runs started since `after`, by task name (subflow runs are counted by Prefect as tasks too)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    counts: dict[str, int] = {}
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            runs = client.read_task_runs(task_run_filter=TaskRunFilter(start_time=TaskRunFilterStartTime(
                after_=after)), limit=200, offset=offset)
            for run in runs:
                name = run.name.rsplit("-", 1)[0] if run.name else "?"
                counts[name] = counts.get(name, 0) + 1
            if len(runs) < 200:
                return counts
            offset += 200


# ---------------------------------------------------------------------------------------- driver
def _mb(values: list[float] | None) -> str:
    return "/".join(f"{v:,.0f}" for v in values) if values else "-"


def table_row(label: str, n: int, rep: dict[str, Any]) -> str:
    peaks = rep.get("peak_rss_mb", {})
    if "failed" in rep:
        return (f"| {label} | {n:,} | {rep['process_wall_s']:.0f} | {rep['failed']} | | | | | | | {rep['cpu_s']:.0f} | | "
                f"| {_mb(peaks.get('flow'))} | {_mb(peaks.get('prefect server'))} | {_mb(peaks.get('dask worker'))} "
                f"| {_mb(peaks.get('finish'))} | {_mb(peaks.get('validate'))} | {rep['load_before'][0]:.1f}/{rep['load_after'][0]:.1f} |")
    t = rep["timings"]
    work = t.get("split_and_balance", 0) + t.get("augment", 0) + t.get("publish", 0) + rep["validate_s"]
    runs = sum(v for k, v in rep["task_runs"].items() if not k.startswith("publish-labelled"))
    rate = n / max(rep["cpu_s"], 1e-9)
    build_cpu = rep["cpu_s"] - rep.get("validate_cpu_s", 0.0)  # the build validates its release itself too
    return (f"| {label} | {n:,} | {rep['process_wall_s']:.0f} | {t.get('split_and_balance', 0):.1f} | "
            f"{t.get('augment', 0):.1f} | {t.get('publish', 0):.1f} | {rep['validate_s']:.1f} | {work:.0f} | "
            f"{runs} | {n / max(work, 1e-9):,.0f} | {rep['cpu_s']:.0f} ({rate:,.0f} utt per CPU s) | "
            f"{build_cpu:.0f} ({n / max(build_cpu, 1e-9):,.0f}) | "
            f"{rep['peak_tree_mb']:,.0f} | {_mb(peaks.get('flow'))} | {_mb(peaks.get('prefect server'))} | "
            f"{_mb(peaks.get('dask worker'))} | {_mb(peaks.get('finish'))} | {_mb(peaks.get('validate'))} | "
            f"{rep['load_before'][0]:.1f}/{rep['load_after'][0]:.1f} |")


HEADER = ("| run | found items | process wall s | split+balance s | augment s | publish s | validate s | "
          "plan+publish+validate s | task runs | utt/s (wall) | CPU s | CPU s less the 2nd validation (utt per CPU s) | "
          "peak tree MB | flow MB | "
          "Prefect server MB | Dask workers MB | finishing step MB | validate MB | load before/after |\n"
          + "|---" * 19 + "|")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100000])
    ap.add_argument("--runners", nargs="+", choices=["threads", "dask"], default=["threads", "dask"])
    ap.add_argument("--shard-size", type=int, default=500)
    ap.add_argument("--part-rows", type=int, default=None, help="run.part_rows (default: the spec's, 50,000)")
    ap.add_argument("--root", type=Path, default=Path("/tmp/voicetone-plan-scale"))
    ap.add_argument("--limit-mb", type=float, default=None, help="stop a run whose process tree exceeds this")
    ap.add_argument("--keep", action="store_true",
                    help="keep each run's output folder (release and work files), e.g. for finish_costs.py")
    args = ap.parse_args()
    root = args.root.resolve()
    print(f"{os.cpu_count()} cores; load {os.getloadavg()}", flush=True)
    home = prepare_prefect_home(root / "prefect-home")
    server = None
    if "dask" in args.runners:
        server = start_server(root / "prefect-server-home")
        print(f"prefect server {server[1]} (pid {server[0].pid})", flush=True)
    rows: list[tuple[str, int, dict[str, Any]]] = []
    try:
        for n in args.sizes:
            corpus = root / "corpus" / f"n{n}-s{args.shard_size}"
            facts = write_item_shards(corpus, n, args.shard_size)["facts"]
            print(f"corpus n={n}: {facts}", flush=True)
            for runner in args.runners:
                out = root / "out" / f"{runner}-{n}"
                shutil.rmtree(out, ignore_errors=True)
                spec = root / f"{runner}-{n}.yaml"
                write_spec(spec, f"plan-scale-{n}", corpus, out, runner, args.shard_size, args.part_rows)
                rep = run_child(spec, corpus, root / f"{runner}-{n}.json", server[1] if runner == "dask" and server
                                else None, server[0].pid if runner == "dask" and server else None, args.limit_mb,
                                home)
                rep["facts"] = facts
                (root / f"{runner}-{n}.json").write_text(json.dumps(rep, indent=1))
                rows.append((f"{runner} {n:,}", n, rep))
                print(HEADER + "\n" + table_row(*rows[-1]), flush=True)
                print(json.dumps({k: rep.get(k) for k in ("task_runs", "valid", "problems", "peak_rss_mb", "cpu_s_by_role", "counts",
                                                           "content_sha256", "failed")}), flush=True)
                if not args.keep:
                    shutil.rmtree(out, ignore_errors=True)
    finally:
        if server:
            server[0].terminate()
            server[0].wait(timeout=30)
    print("\n" + HEADER)
    for row in rows:
        print(table_row(*row))
    for runner in args.runners:
        done = [(n, rep) for label, n, rep in rows if label.startswith(runner) and "failed" not in rep]
        for (n0, r0), (n1, r1) in zip(done, done[1:], strict=False):
            print(f"growth {runner} {n0:,} -> {n1:,} (x{n1 / n0:g} items): wall x{r1['process_wall_s'] / r0['process_wall_s']:.2f}, "
                  f"CPU x{r1['cpu_s'] / r0['cpu_s']:.2f}, peak tree x{r1['peak_tree_mb'] / r0['peak_tree_mb']:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "_child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 4 and sys.argv[1] == "_validate":
        validate(sys.argv[2], sys.argv[3])
    else:
        main()
