"""Whisper tiny.en vs base on the real samples: WER, language identification, Persian CER, speed.

Run (2 cores, from the repository root; needs ../shared/data/real):
    PYTHONPATH=. python benchmarks/languages.py [--real ../shared/data/real] [--limit N]

- WER: LibriSpeech dev-clean sample (75 clips), pooled, both models, packed + batched decoding
  (tasks/label/transcripts/whisper.py, no label cache), English normaliser.
- Language ID: base's `detect_language` on the first 30 s of every LibriSpeech (en) and Common
  Voice Persian (fa) clip: accuracy clip by clip and with the default ``scope: source`` rule.
- Persian CER: base transcripts with language fa against validated.tsv sentences, basic normaliser,
  characters without spaces.
- Speed: decode seconds / audio seconds (x real time; lower is faster), cpu_threads 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import pandas as pd

from tasks.core import audio as audio_mod
from tasks.label.transcripts import language, whisper, whisper_model
from tasks.label.transcripts.normalize import normalize_transcript, word_errors
from tasks.spec_labelers import LanguageIdSettings, WhisperSettings


def _edits(a: list[str] | str, b: list[str] | str) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def librispeech(real: Path, limit: int | None) -> pd.DataFrame:
    rows = []
    for trans in sorted((real / "librispeech/LibriSpeech/dev-clean").rglob("*.trans.txt")):
        for line in trans.read_text().splitlines():
            uid, text = line.split(" ", 1)
            rows.append({"utterance_id": uid, "audio_uri": str(trans.parent / f"{uid}.flac"), "ref": text,
                         "language": "en"})
    return _with_durations(pd.DataFrame(rows[:limit] if limit else rows))


def commonvoice_fa(real: Path, limit: int | None) -> pd.DataFrame:
    folder = real / "commonvoice_fa"
    with (folder / "validated.tsv").open(encoding="utf-8") as handle:
        rows = [{"utterance_id": r["path"], "audio_uri": str(folder / "clips" / r["path"]), "ref": r["sentence"],
                 "language": "fa"} for r in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)]
    return _with_durations(pd.DataFrame(rows[:limit] if limit else rows))


def _with_durations(frame: pd.DataFrame) -> pd.DataFrame:
    frame["duration_s"] = [audio_mod.probe(u).duration_s for u in frame["audio_uri"]]
    frame["offset_s"] = 0.0
    frame["source"] = "bench"
    for col in ("transcript_raw", "segment_key"):
        frame[col] = None
    return frame


def transcribe(frame: pd.DataFrame, model: str) -> tuple[pd.DataFrame, float]:
    settings = WhisperSettings(model=model, cpu_threads=2)
    whisper_model.get_model(settings)  # load outside the timing
    start = time.perf_counter()
    out = whisper.fill_missing_transcripts(frame, settings).items
    return out, time.perf_counter() - start


def wer(frame: pd.DataFrame, out: pd.DataFrame) -> float:
    hyp = dict(zip(out["utterance_id"], out["transcript_raw"], strict=True))
    errors = words = 0
    for uid, ref in zip(frame["utterance_id"], frame["ref"], strict=True):
        e, n = word_errors(ref, hyp.get(uid) or "")
        errors, words = errors + e, words + n
    return errors / words


def cer(frame: pd.DataFrame, out: pd.DataFrame) -> float:
    hyp = dict(zip(out["utterance_id"], out["transcript_raw"], strict=True))
    errors = chars = 0
    for uid, ref in zip(frame["utterance_id"], frame["ref"], strict=True):
        r = normalize_transcript(ref, "fa").replace(" ", "")
        h = normalize_transcript(hyp.get(uid) or "", "fa").replace(" ", "")
        errors, chars = errors + _edits(r, h), chars + len(r)
    return errors / chars


def language_id(frame: pd.DataFrame) -> dict[str, float]:
    lid = LanguageIdSettings()
    settings = language.detector_settings(lid, WhisperSettings(cpu_threads=2))
    start = time.perf_counter()
    tops, probs = [], []
    for uri, dur in zip(frame["audio_uri"], frame["duration_s"], strict=True):
        clip = audio_mod.read_audio(uri, offset_s=0.0, duration_s=min(dur, 30.0), target_sr=16000, mono=True)
        p = language.detect_audio(clip, settings)
        tops.append(max(p, key=lambda k: p[k]))
        probs.append(p)
    seconds = time.perf_counter() - start
    truth = frame["language"].iloc[0]
    mean = pd.DataFrame(probs).fillna(0).mean().idxmax()
    source_rule = [t if p[t] >= lid.mismatch_min_probability else mean for t, p in zip(tops, probs, strict=True)]
    return {"clips": len(frame), "per_clip_accuracy": sum(t == truth for t in tops) / len(tops),
            "source_scope_accuracy": sum(t == truth for t in source_rule) / len(tops),
            "x_real_time": seconds / float(frame["duration_s"].sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[1] / "../shared/data/real")
    parser.add_argument("--limit", type=int, default=None, help="clips per corpus (default all)")
    args = parser.parse_args()
    libri, fa = librispeech(args.real, args.limit), commonvoice_fa(args.real, args.limit)
    results: dict[str, object] = {"librispeech_audio_s": round(float(libri["duration_s"].sum()), 1),
                                  "commonvoice_fa_audio_s": round(float(fa["duration_s"].sum()), 1)}
    for model in ("tiny.en", "base"):
        out, seconds = transcribe(libri, model)
        results[f"{model}_librispeech_wer"] = round(wer(libri, out), 4)
        results[f"{model}_librispeech_x_real_time"] = round(seconds / float(libri["duration_s"].sum()), 4)
        results[f"{model}_librispeech_kept"] = len(out)
    out, seconds = transcribe(fa, "base")
    results["base_fa_cer"] = round(cer(fa, out), 4)
    results["base_fa_x_real_time"] = round(seconds / float(fa["duration_s"].sum()), 4)
    results["base_fa_kept"] = len(out)
    results["langid_en"] = language_id(libri)
    results["langid_fa"] = language_id(fa)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
