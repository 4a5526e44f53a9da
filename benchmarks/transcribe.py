"""Whisper labeler throughput and WER: one clip per call versus packed + batched.

Generates ~60 short espeak-ng sentences (16 kHz mono, about 2-4 s each, three voices/speeds) and
runs `tasks.label.transcripts.whisper.fill_missing_transcripts` (public API only, no cache):

- ``one-per-call``: the function called once per clip, so each clip is decoded alone (one window
  padded to 30 s) and pays every per-call cost: what a naive caller gets;
- ``packed, batch 1``: all clips in one call, packed into ~29 s windows, windows decoded one at a time;
- ``packed, batched``: the default (windows decoded ``batch_size`` at a time).

Reports seconds of audio per wall second (x real time), per CPU second of the process (less
sensitive to other load on a shared machine), milliseconds per utterance and pooled WER against
the spoken text (normalised). Run from the repository root:

    .venv/bin/python benchmarks/transcribe.py [--clips 60] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.core.audio import segment_key, sha256_uri  # noqa: E402
from tasks.label.transcripts import whisper  # noqa: E402
from tasks.label.transcripts.normalize import word_errors  # noqa: E402
from tasks.spec_labelers import WhisperSettings  # noqa: E402

SENTENCES = [
    "Please call Stella and ask her to bring these things.",
    "We need to finish this report before Friday afternoon.",
    "Thank you very much for your help with the project.",
    "The weather was lovely on our trip to the coast.",
    "I am so happy that you could join us tonight.",
    "This is the worst service I have ever received.",
    "Could you send me the slides after the meeting?",
    "The train to the city leaves in ten minutes.",
    "My phone battery died in the middle of the call.",
    "She bought fresh bread and cheese at the market.",
    "Our team won the game in the final seconds.",
    "I do not think that plan will work at all.",
    "The children played in the garden all morning.",
    "He forgot his keys at the office again today.",
    "Let us meet at the coffee shop near the station.",
    "The package arrived late and the box was damaged.",
    "I really enjoyed the concert last weekend.",
    "Turn left at the next corner and keep going.",
    "The doctor said I should get more sleep.",
    "We are moving to a new apartment next month.",
]
VOICES = [("en-us", 160), ("en", 175), ("en-us", 190)]


def make_clips(folder: Path, n: int) -> pd.DataFrame:
    rows = []
    for i in range(n):
        text = SENTENCES[i % len(SENTENCES)]
        voice, wpm = VOICES[(i // len(SENTENCES)) % len(VOICES)]
        raw, path = folder / f"{i:03d}.raw.wav", folder / f"{i:03d}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", str(path)], check=True, capture_output=True)
        raw.unlink()
        import soundfile as sf

        duration = sf.info(path).duration
        sha = sha256_uri(str(path))
        rows.append({"utterance_id": f"bench/{i:03d}", "source": "bench", "audio_uri": str(path), "offset_s": 0.0,
                     "duration_s": duration, "audio_sha256": sha, "segment_key": segment_key(sha, 0.0, duration),
                     "language": "en", "transcript_raw": None, "reference": text})  # fmt: skip
    return pd.DataFrame(rows)


def pooled_wer(items: pd.DataFrame, result: pd.DataFrame) -> tuple[float, int]:
    hyp = dict(zip(result["utterance_id"], result["transcript_raw"], strict=True))
    errors = words = 0
    for utt, ref in zip(items["utterance_id"], items["reference"], strict=True):
        e, w = word_errors(ref, hyp.get(utt) or "")
        errors, words = errors + e, words + w
    return errors / words, len(items) - len(result)


def run(mode: str, items: pd.DataFrame, settings: WhisperSettings) -> dict[str, float]:
    inputs = items.drop(columns=["reference"])
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "one-per-call":
        kept = [whisper.fill_missing_transcripts(inputs.iloc[[i]], settings, None).items for i in range(len(inputs))]
        result = pd.concat(kept, ignore_index=True)
    else:
        result = whisper.fill_missing_transcripts(inputs, settings, None).items
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    audio = float(items["duration_s"].sum())
    wer, rejected = pooled_wer(items, result)
    return {"wall_s": wall, "cpu_s": cpu, "x_realtime": audio / wall, "x_per_cpu": audio / cpu, "ms_per_utt": 1000 * wall / len(items), "wer": wer,
            "rejected": rejected}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="best of N per mode")
    args = parser.parse_args()
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        sys.exit("needs espeak-ng and sox")
    with tempfile.TemporaryDirectory() as tmp:
        items = make_clips(Path(tmp), args.clips)
        audio = items["duration_s"].sum()
        print(f"{len(items)} clips, {audio:.1f} s of audio (mean {items['duration_s'].mean():.2f} s); "
              f"tiny.en int8, {args.threads} threads, beam 1; {platform.processor() or platform.machine()}, "
              f"{__import__('os').cpu_count()} cores")  # fmt: skip
        base = WhisperSettings(cpu_threads=args.threads)
        whisper.fill_missing_transcripts(items.drop(columns=["reference"]).iloc[:1], base, None)  # load + warm up
        modes = [("one-per-call", base), ("packed, batch 1", base.model_copy(update={"batch_size": 1})),
                 ("packed, batched", base)]  # fmt: skip
        print(f"load average before: {' '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}")
        print("| mode | wall s | x real time (wall) | CPU s | audio s per CPU s | ms / utterance | pooled WER | rejected |")
        print("|---|---|---|---|---|---|---|---|")
        for name, settings in modes:
            best = min((run(name, items, settings) for _ in range(args.repeats)), key=lambda r: r["wall_s"])
            print(f"| {name} | {best['wall_s']:.1f} | {best['x_realtime']:.1f}x | {best['cpu_s']:.1f} | "
                  f"{best['x_per_cpu']:.1f} | {best['ms_per_utt']:.0f} | "
                  f"{best['wer']:.3f} | {best['rejected']} |")  # fmt: skip


if __name__ == "__main__":
    main()
