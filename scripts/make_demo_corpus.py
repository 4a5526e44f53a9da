"""Generate the bundled demo corpus under flows/demo/ (run once; the output is committed).

Why synthetic: `voicetone demo` must run offline from a few MB in the repo, yet exercise what real
corpora throw at the pipeline: four layouts (folder+CSV, folder+TSV, RAVDESS, bare folder), human,
mapped and missing labels, 16/48 kHz, one stereo file, long utterances, planted faults, and noise/RIR
pools for augmentation. Speech comes from espeak-ng; everything else from numpy/scipy with fixed
seeds, so a re-run with the same espeak-ng build writes byte-identical files.

Usage: python scripts/make_demo_corpus.py [--out flows/demo]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import shlex
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

ESPEAK_RATE = 22050
SEED = 13
RAVDESS_STATEMENTS = {"01": "Kids are talking by the door.", "02": "Dogs are sitting by the door."}
EMOTION_CODES = {
    "neutral": "01", "calm": "02", "happy": "03", "sad": "04",
    "angry": "05", "fearful": "06", "disgust": "07", "surprised": "08",
}
EMOTION_SENTIMENT = {
    "neutral": "neutral", "calm": "neutral", "happy": "positive", "sad": "negative",
    "angry": "negative", "fearful": "negative", "disgust": "negative", "surprised": None,
}
# espeak-ng prosody offsets per emotion: (pitch delta, speed wpm, amplitude); intensity 02 doubles deltas.
EMOTION_PROSODY = {
    "neutral": (0, 170, 100), "calm": (-6, 150, 80), "happy": (14, 185, 125), "sad": (-12, 135, 70),
    "angry": (8, 190, 170), "fearful": (22, 200, 105), "disgust": (-8, 145, 110), "surprised": (25, 175, 135),
}


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak-ng voice+variant and a base pitch."""

    speaker_id: str
    voice: str
    pitch: int
    gender: str
    age: str = ""
    accent: str = ""


@dataclass
class Item:
    """One generated file and the label we meant it to carry (written to intended_labels.csv)."""

    source: str
    file_name: str
    intended_sentiment: str
    expected: str
    text: str


def seed_for(name: str) -> int:
    """A stable per-item seed (Python's hash() is salted per process)."""
    return zlib.crc32(f"{SEED}:{name}".encode())


# ---------------------------------------------------------------- audio building blocks


class Synth:
    """Runs espeak-ng and remembers the exact command lines for the README."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str]] = []
        self._tmp = Path(tempfile.mkdtemp(prefix="demo_espeak_"))

    def __call__(self, key: str, text: str, voice: str, pitch: int, speed: int, amp: int = 100) -> np.ndarray:
        """Speech at 22.05 kHz as float64, leading/trailing silence trimmed."""
        wav = self._tmp / "out.wav"
        cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-a", str(amp), "-z", "-w", str(wav), text]
        subprocess.run(cmd, check=True, capture_output=True)
        shown = cmd[:-3] + ["-w", "OUT.wav", text]
        self.commands.append((key, shlex.join(shown)))
        x, rate = sf.read(wav, dtype="float64")
        assert rate == ESPEAK_RATE, rate
        loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
        return x[loud[0] : loud[-1] + 1]

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (espeak's 22.05 kHz to the corpus rate)."""
    g = gcd(rate_in, rate_out)
    return signal.resample_poly(x, rate_out // g, rate_in // g)


def colored_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    y = np.fft.irfft(spec / f ** (exponent / 2), n)
    y -= y.mean()
    return y / (np.sqrt(np.mean(y**2)) + 1e-12)


def db(level_db: float) -> float:
    return float(10 ** (level_db / 20))


def place(speech: np.ndarray, rate: int, lead_s: float, tail_s: float, noise_db: float, exponent: float,
          rng: np.random.Generator) -> np.ndarray:
    """Pad speech with silence and lay low-level room noise under it, so nothing is digitally silent."""
    out = np.concatenate([np.zeros(int(lead_s * rate)), speech, np.zeros(int(tail_s * rate))])
    return out + db(noise_db) * colored_noise(len(out), exponent, rng)


def telephone(x: np.ndarray, rate: int) -> np.ndarray:
    """Band-limit to 250-3600 Hz: support calls sound like phone audio stored at 16 kHz."""
    sos = signal.butter(4, [250, 3600], btype="bandpass", fs=rate, output="sos")
    return signal.sosfilt(sos, x)


def peak_normalise(x: np.ndarray, peak: float) -> np.ndarray:
    return x * (peak / (np.abs(x).max() + 1e-12))


# ---------------------------------------------------------------- room impulse responses


def simulate_rir(room: tuple[float, float, float], src: tuple[float, float, float], mic: tuple[float, float, float],
                 rt60: float, length_s: float, rate: int = 16000, c: float = 343.0) -> np.ndarray:
    """Shoebox image method (Allen & Berkley 1979) with fractional-delay (windowed sinc) placement.

    Wall reflection coefficient beta = sqrt(1 - alpha), alpha from Sabine's formula for `rt60`; every
    image source within `length_s` of travel is summed with amplitude beta**reflections / (4 pi r).
    """
    size, s, m = np.array(room), np.array(src), np.array(mic)
    surface = 2 * (size[0] * size[1] + size[0] * size[2] + size[1] * size[2])
    alpha = min(0.161 * size.prod() / (surface * rt60), 0.99)
    beta = np.sqrt(1 - alpha)
    n_len, half = int(round(length_s * rate)), 16
    reach = np.ceil(c * length_s / (2 * size)).astype(int) + 1
    n = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in reach], indexing="ij"), -1).reshape(-1, 3)
    out = np.zeros(n_len + 2 * half + 1)
    for p in itertools.product((0, 1), repeat=3):
        p = np.array(p)
        dist = np.linalg.norm((1 - 2 * p) * s + 2 * n * size - m, axis=1)
        delay = dist / c * rate
        keep = delay < n_len
        dist, delay = dist[keep], delay[keep]
        reflections = (np.abs(n[keep] - p) + np.abs(n[keep])).sum(axis=1)
        amp = beta**reflections / (4 * np.pi * dist)
        base = np.floor(delay).astype(int)
        frac = delay - base
        for k in range(-half, half + 1):
            t = k - frac
            taps = np.sinc(t) * (0.5 + 0.5 * np.cos(np.pi * t / (half + 1)))
            out += np.bincount(base + k + half, amp * taps, minlength=len(out))[: len(out)]
    rir = out[half : half + n_len]
    rir = signal.sosfilt(signal.butter(2, 40, btype="highpass", fs=rate, output="sos"), rir)
    fade = int(0.02 * rate)
    rir[-fade:] *= np.linspace(1, 0, fade)
    return rir / np.abs(rir).max() * 0.9


# Room name, dimensions (m), source, mic, RT60 (s), RIR length (s).
ROOMS = [
    ("small_office", (3.5, 3.0, 2.6), (1.0, 1.2, 1.4), (1.9, 1.6, 1.2), 0.30, 0.25),
    ("bedroom", (4.2, 3.6, 2.5), (1.0, 1.0, 1.5), (2.4, 1.8, 1.1), 0.35, 0.35),
    ("living_room", (5.5, 4.5, 2.7), (1.0, 1.5, 1.2), (3.3, 2.4, 1.3), 0.45, 0.45),
    ("meeting_room", (6.0, 4.0, 2.8), (1.2, 2.0, 1.3), (4.0, 2.9, 1.2), 0.50, 0.50),
    ("classroom", (8.0, 6.5, 3.0), (1.5, 3.0, 1.6), (5.3, 4.2, 1.2), 0.60, 0.65),
    ("lecture_hall", (12.0, 9.0, 4.5), (2.0, 4.5, 1.7), (8.0, 6.0, 1.3), 0.90, 0.80),
]


# ---------------------------------------------------------------- source texts and speakers

SUPPORT_SPEAKERS = [
    Voice("C101", "en-us+m3", 45, "male", "34", "United States English"),
    Voice("C102", "en-gb+f2", 60, "female", "27", "England English"),
    Voice("C103", "en-gb-scotland+m5", 40, "male", "52", "Scottish English"),
    Voice("C104", "en-us+f4", 55, "female", "41", "United States English"),
    Voice("C105", "en-029+m2", 50, "male", "", "Caribbean English"),
    Voice("C106", "en-gb-x-rp+f5", 65, "female", "63", "England English"),
    Voice("C107", "en-us-nyc+m6", 48, "male", "23", "United States English"),
]

# (speaker, day folder, call id, sentiment, text); a fault tag in the text slot's place is handled below.
SUPPORT_CALLS = [
    ("C101", "2024-05-02", "c0101", "neutral", "Hi, I am calling about the invoice I received on Monday."),
    ("C101", "2024-05-02", "c0102", "negative", "This is the third time the service has failed this week, and I am really frustrated."),
    ("C101", "2024-05-06", "c0103", "neutral", "The account ends in four seven two nine."),
    ("C102", "2024-05-02", "c0104", "neutral", "I am calling to change the delivery address."),
    ("C102", "2024-05-03", "c0105", "positive", "Thank you so much, that fixed the problem. You were very helpful!"),
    ("C102", "2024-05-06", "c0106", "neutral", "When is the technician scheduled to arrive?"),
    ("C103", "2024-05-02", "c0107", "negative", "Your technician never showed up and nobody called me. This is terrible."),
    ("C103", "2024-05-03", "c0108", "neutral", "I moved to a new flat last month and need to update my details."),
    ("C103", "2024-05-06", "c0109", "neutral", "The router model is written on the bottom of the box."),
    ("C104", "2024-05-02", "c0110", "negative", "I was charged twice, and I am angry that no one has fixed it."),
    ("C104", "2024-05-03", "c0111", "neutral", "I am checking whether my payment has been processed yet."),
    ("C104", "2024-05-06", "c0112", "positive", "Great, the internet is working perfectly now. I really appreciate it."),
    ("C105", "2024-05-03", "c0113", "neutral", "Could you send the receipt to my email address?"),
    ("C105", "2024-05-03", "c0114", "negative", "The new phone arrived broken and the screen is cracked."),
    ("C105", "2024-05-06", "c0115", "neutral", "The reference starts with the letters K and T."),
    ("C106", "2024-05-02", "c0116", "negative", "I have been waiting on hold for an hour. This is awful service."),
    ("C106", "2024-05-03", "c0117", "neutral", "I usually work from home on Tuesdays and Thursdays."),
    ("C106", "2024-05-06", "c0118", "positive", "That is wonderful news, I am happy the refund went through."),
    ("C107", "2024-05-02", "c0119", "neutral", "Transfer me to the billing department."),
    ("C107", "2024-05-03", "c0120", "negative", "I want to cancel. I am disappointed with how this was handled."),
    ("C107", "2024-05-06", "c0121", "neutral", "The meter reading this morning was eight one five."),
]
# Planted faults: (speaker, day, call id, label in metadata, text, fault, expected reject reason).
SUPPORT_FAULTS = [
    ("C102", "2024-05-06", "c0122", "neutral", "I need to reset the password on my account.", "corrupt", "unreadable_audio"),
    ("C104", "2024-05-07", "c0123", "neutral", "I have a question about roaming charges.", "missing", "missing_audio"),
    ("C105", "2024-05-07", "c0124", "ecstatic", "Amazing, this is the best news ever, I am thrilled!", "bad_label", "unmapped_label"),
]

AUDIOBOOK_SPEAKERS = [
    Voice("R1034", "en-us+m4", 42, "male"),
    Voice("R1188", "en-gb+f3", 58, "female"),
    Voice("R2277", "en-gb-x-rp+m7", 38, "male"),
    Voice("R3081", "en-us+f5", 62, "female"),
    Voice("R4120", "en-gb-scotland+f2", 56, "female"),
    Voice("R5246", "en-029+m1", 46, "male"),
]
# (reader, book/chapter, sentiment, text): long entries are several sentences (6-12 s).
AUDIOBOOKS = [
    ("R1034", "121", "neutral", "The house stood at the end of a long road."),
    ("R1034", "121", "neutral", "In the morning the farmer walked to the village for flour and salt. He reached the market before the bell rang nine."),
    ("R1034", "121", "neutral", "The captain wrote the date in the log book."),
    ("R1034", "121", "negative", "She wept bitterly, for she had lost her only friend."),
    ("R1188", "307", "neutral", "The letter was folded twice."),
    ("R1188", "307", "neutral", "Chapter four. The train left the city at dawn and followed the river north. By noon it had crossed the border, and the passengers opened their baskets."),
    ("R1188", "307", "neutral", "He counted the coins on the table."),
    ("R1188", "307", "positive", "What a glorious day! The children laughed with joy."),
    ("R2277", "512", "neutral", "The ship sailed along the coast."),
    ("R2277", "512", "neutral", "The old map showed two roads to the harbour. One went over the hills, and the other followed the shore."),
    ("R2277", "512", "neutral", "A clock on the wall showed the hour."),
    ("R2277", "512", "neutral", "The doctor opened his bag."),
    ("R3081", "640", "neutral", "The garden was divided into four beds."),
    ("R3081", "640", "neutral", "Every winter the family moved to the town house on the square. The carriages were loaded the night before, and they left at six in the morning."),
    ("R3081", "640", "negative", "The war had ruined everything, and the soldiers came home sick and afraid."),
    ("R3081", "640", "neutral", "She wrote the address on a card."),
    ("R4120", "733", "neutral", "The mountain path turned to the left."),
    ("R4120", "733", "neutral", "The island is forty miles west of the mainland. A boat brings the mail twice a month."),
    ("R4120", "733", "neutral", "The lamp was lit at seven."),
    ("R4120", "733", "positive", "He was delighted with the gift and thanked them warmly."),
    ("R5246", "859", "neutral", "The boy carried a bucket up the hill."),
    ("R5246", "859", "neutral", "At the end of the street there was a small shop that sold maps and paper."),
    ("R5246", "859", "neutral", "The committee met on the first Tuesday."),
    ("R5246", "859", "neutral", "The bridge was built of stone."),
]

ACTORS = {  # odd actor number = male, as in RAVDESS
    1: Voice("01", "en-us+m3", 44, "male"),
    2: Voice("02", "en-us+f2", 58, "female"),
    3: Voice("03", "en-gb+m5", 40, "male"),
    4: Voice("04", "en-gb+f4", 54, "female"),
    5: Voice("05", "en-us-nyc+m2", 48, "male"),
    6: Voice("06", "en-gb-x-rp+f3", 60, "female"),
}
# (actor, emotion, intensity, statement, repetition)
ACTED = [
    (1, "neutral", "01", "01", "01"), (1, "angry", "01", "02", "01"),
    (2, "happy", "01", "01", "01"), (2, "sad", "02", "01", "02"),
    (3, "calm", "02", "01", "01"), (3, "surprised", "01", "01", "01"),
    (4, "neutral", "01", "02", "01"), (4, "fearful", "02", "02", "01"),
    (5, "disgust", "01", "01", "01"), (5, "happy", "02", "02", "02"),
    (6, "calm", "01", "01", "01"), (6, "surprised", "02", "02", "02"),
]
STEREO_FILE = (5, "disgust", "01", "01", "01")

FIELD_VOICES = [
    Voice("F1", "en-us+m2", 46, "male"), Voice("F2", "en-gb+f5", 60, "female"), Voice("F3", "en-us+f3", 56, "female"),
    Voice("F4", "en-gb-scotland+m4", 42, "male"),
]
# (folder/file, voice index, sentiment, text); each 5-10 s.
FIELD_RECORDINGS = [
    ("station/rec_001.wav", 0, "neutral", "We are near the north entrance of the station. The next train leaves at ten past four."),
    ("station/rec_002.wav", 1, "negative", "The trains are cancelled again and the crowd is furious. Everyone is tired and miserable."),
    ("market/rec_003.wav", 2, "positive", "What a beautiful morning at the market! The fruit is wonderful and everyone is happy."),
    ("market/rec_004.wav", 3, "neutral", "The market opens at seven. Vendors set up their tables along the street before noon."),
    ("river/rec_005.wav", 0, "negative", "The flood destroyed most of the houses here. Families lost everything. It is a terrible sight."),
    ("river/rec_006.wav", 2, "neutral", "This is the east bank of the river. The water level is measured here every hour."),
    ("park/rec_007.wav", 1, "positive", "I love this park in summer. The gardens are gorgeous and it is a great place to relax."),
    ("park/rec_008.wav", 3, "negative", "Someone dumped trash all over the playground again. It is ugly, dangerous and disgusting."),
]
FIELD_ZERO_BYTE = "park/rec_009.wav"


# ---------------------------------------------------------------- source writers


def write_support_calls(root: Path, synth: Synth) -> list[Item]:
    """16 kHz mono FLAC in day folders + metadata.csv with human transcripts and sentiment."""
    rate, rows, items = 16000, [], []
    voices = {v.speaker_id: v for v in SUPPORT_SPEAKERS}
    entries = [(*e, None, None) for e in SUPPORT_CALLS] + list(SUPPORT_FAULTS)
    for spk, day, call, label, text, fault, reason in entries:
        v, rel = voices[spk], f"{day}/{call}.flac"
        rng = np.random.default_rng(seed_for(rel))
        rows.append({"file_name": rel, "transcript": text, "sentiment": label, "speaker_id": spk,
                     "gender": v.gender, "age": v.age, "accent": v.accent})
        items.append(Item("support_calls", rel, "" if fault else label, f"reject:{reason}" if fault else "accept", text))
        if fault == "missing":
            continue
        speech = synth(f"support_calls/{rel}", text, v.voice, v.pitch, 175)
        x = place(telephone(resample(speech, ESPEAK_RATE, rate), rate), rate, 0.25, 0.3, -64, 1.0, rng)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, peak_normalise(x, 0.3), rate, subtype="PCM_16", format="FLAC", compression_level=1.0)
        if fault == "corrupt":
            # Keep the real FLAC header (magic + STREAMINFO), replace the frames with garbage.
            head = path.read_bytes()[:42]
            path.write_bytes(head + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    _write_table(root / "metadata.csv", rows, ",")
    return items


def write_audiobooks(root: Path, synth: Synth) -> list[Item]:
    """LibriSpeech-like FLAC tree + metadata.tsv: upper-case transcripts, no sentiment."""
    rate, rows, items = 16000, [], []
    voices = {v.speaker_id: v for v in AUDIOBOOK_SPEAKERS}
    counters: dict[str, int] = {}
    for spk, chapter, label, text in AUDIOBOOKS:
        counters[spk] = counters.get(spk, 0) + 1
        num = spk[1:]
        rel = f"{num}/{chapter}/{num}-{chapter}-{counters[spk]:04d}.flac"
        v = voices[spk]
        speech = synth(f"audiobooks/{rel}", text, v.voice, v.pitch, 168)
        x = place(resample(speech, ESPEAK_RATE, rate), rate, 0.2, 0.25, -70, 1.0, np.random.default_rng(seed_for(rel)))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, peak_normalise(x, 0.35), rate, subtype="PCM_16", format="FLAC", compression_level=1.0)
        transcript = "".join(ch for ch in text.upper() if ch.isalnum() or ch in " '").split()
        rows.append({"file_name": rel, "transcript": " ".join(transcript), "speaker_id": spk, "gender": v.gender})
        items.append(Item("audiobooks", rel, label, "accept", text))
    _write_table(root / "metadata.tsv", rows, "\t")
    return items


def write_acted(root: Path, synth: Synth) -> list[Item]:
    """RAVDESS layout, 48 kHz 16-bit WAV, emotion in the file name only; one file stereo."""
    rate, items = 48000, []
    for actor, emotion, intensity, statement, rep in ACTED:
        v = ACTORS[actor]
        name = f"03-01-{EMOTION_CODES[emotion]}-{intensity}-{statement}-{rep}-{actor:02d}.wav"
        rel = f"Actor_{actor:02d}/{name}"
        d_pitch, speed, amp = EMOTION_PROSODY[emotion]
        k = 2 if intensity == "02" else 1
        pitch = int(np.clip(v.pitch + k * d_pitch, 0, 99))
        speed = 180 + k * (speed - 170) + (int(rep) - 1) * 6
        amp = int(np.clip(100 + k * (amp - 100), 20, 200))
        speech = synth(f"acted/{rel}", RAVDESS_STATEMENTS[statement], v.voice, pitch, speed, amp)
        rng = np.random.default_rng(seed_for(rel))
        x = place(resample(speech, ESPEAK_RATE, rate), rate, 0.08, 0.1, -74, 1.0, rng)
        x = peak_normalise(x, 0.15 + 0.8 * amp / 200)  # louder emotions stay louder on disk
        if (actor, emotion, intensity, statement, rep) == STEREO_FILE:
            x = np.stack([x, 0.8 * x + db(-74) * colored_noise(len(x), 1.0, rng)], axis=1)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, x, rate, subtype="PCM_16")
        sentiment = EMOTION_SENTIMENT[emotion]
        expected = "accept" if sentiment else "reject:unmapped_label"
        items.append(Item("acted", rel, sentiment or "", expected, RAVDESS_STATEMENTS[statement]))
    return items


def write_field_recordings(root: Path, synth: Synth) -> list[Item]:
    """Bare 16 kHz WAV files, no metadata: transcript and sentiment must come from the labelers."""
    rate, items = 16000, []
    for rel, vi, label, text in FIELD_RECORDINGS:
        v = FIELD_VOICES[vi]
        speech = resample(synth(f"field_recordings/{rel}", text, v.voice, v.pitch, 180), ESPEAK_RATE, rate)
        tail = max(0.4, 5.2 - 0.4 - len(speech) / rate)  # every recording at least 5.2 s
        x = place(speech, rate, 0.4, tail, -42, 2.0, np.random.default_rng(seed_for(rel)))
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, peak_normalise(x, 0.5), rate, subtype="PCM_16")
        items.append(Item("field_recordings", rel, label, "accept", text))
    (root / FIELD_ZERO_BYTE).parent.mkdir(parents=True, exist_ok=True)
    (root / FIELD_ZERO_BYTE).write_bytes(b"")
    items.append(Item("field_recordings", FIELD_ZERO_BYTE, "", "reject:empty_audio", ""))
    return items


# ---------------------------------------------------------------- noise and RIR pools


def band(x: np.ndarray, rate: int, lo: float | None, hi: float | None) -> np.ndarray:
    if lo and hi:
        sos = signal.butter(4, [lo, hi], btype="bandpass", fs=rate, output="sos")
    else:
        sos = signal.butter(4, lo or hi, btype="highpass" if lo else "lowpass", fs=rate, output="sos")
    return signal.sosfilt(sos, x)


def hum(n: int, rate: int, f0: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / rate
    tone = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h**1.2 for h in range(1, 9))
    return tone + 0.05 * colored_noise(n, 1.0, rng)


def babble(n: int, rate: int, synth: Synth, rng: np.random.Generator) -> np.ndarray:
    """Six quiet, overlapping espeak talkers, low-passed: speech-like but unintelligible."""
    texts = [t for _, _, _, t in AUDIOBOOKS[1::4]]
    out = np.zeros(n)
    for i, (text, v) in enumerate(zip(texts, AUDIOBOOK_SPEAKERS, strict=True)):
        talker = resample(synth(f"noise/babble_talker_{i}", text, v.voice, v.pitch, 175), ESPEAK_RATE, rate)
        talker = np.tile(talker, 2)[:n] if len(talker) < n else talker[:n]
        out += np.roll(talker, int(rng.integers(0, n))) / (np.sqrt(np.mean(talker**2)) + 1e-12)
    return band(out, rate, None, 3500) + 0.1 * colored_noise(n, 1.0, rng)


def write_noise(root: Path, synth: Synth) -> list[str]:
    """MUSAN-like noise clips, 16 kHz mono, each at -20 dBFS RMS (the augmenter sets the SNR)."""
    rate = 16000
    clips = {
        "pink_noise.wav": (4.5, lambda n, r: colored_noise(n, 1.0, r)),
        "brown_noise_rumble.wav": (4.5, lambda n, r: band(colored_noise(n, 2.0, r), rate, 20, None)),
        "mains_hum_50hz_harmonics.wav": (4.5, lambda n, r: hum(n, rate, 50.0, r)),
        "mains_hum_60hz_harmonics.wav": (4.5, lambda n, r: hum(n, rate, 60.0, r)),
        "babble_6_talkers.wav": (4.5, lambda n, r: babble(n, rate, synth, r)),
        "fan_lowpass_with_blade_tone.wav": (4.5, lambda n, r: band(colored_noise(n, 0.5, r), rate, 80, 1200)
                                            * (1 + 0.15 * np.sin(2 * np.pi * 0.7 * np.arange(n) / rate))
                                            + 0.3 * np.sin(2 * np.pi * 118 * np.arange(n) / rate)),
    }
    for name, (seconds, make) in clips.items():
        x = make(int(seconds * rate), np.random.default_rng(seed_for(name)))
        x = x / np.sqrt(np.mean(x**2)) * db(-20)
        sf.write(root / name, np.clip(x, -0.99, 0.99), rate, subtype="PCM_16")
    return list(clips)


def write_rirs(root: Path) -> list[tuple[str, float]]:
    rows = []
    for name, room, src, mic, rt60, length in ROOMS:
        rir = simulate_rir(room, src, mic, rt60, length)
        sf.write(root / f"{name}.wav", rir, 16000, subtype="PCM_16")
        rows.append((name, float(np.linalg.norm(np.subtract(src, mic)) / 343.0)))
    return rows


# ---------------------------------------------------------------- tables and README


def _write_table(path: Path, rows: list[dict[str, str]], delimiter: str) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def write_intended_labels(path: Path, items: list[Item]) -> None:
    rows = [{"source": i.source, "file_name": i.file_name, "intended_sentiment": i.intended_sentiment,
             "expected": i.expected, "text": i.text} for i in sorted(items, key=lambda i: (i.source, i.file_name))]
    _write_table(path, rows, ",")


def write_commands(path: Path, synth: Synth) -> None:
    """The exact espeak-ng command behind every file, so the corpus can be audited or re-made."""
    lines = ["# espeak-ng command per generated utterance (OUT.wav is a temporary 22.05 kHz file)", ""]
    lines += [f"{key}\t{cmd}" for key, cmd in synth.commands]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "flows" / "demo")
    args = parser.parse_args()
    out: Path = args.out
    for sub in ("sources", "noise", "rirs"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir(parents=True)
    synth = Synth()
    try:
        items = write_support_calls(out / "sources" / "support_calls", synth)
        items += write_audiobooks(out / "sources" / "audiobooks", synth)
        items += write_acted(out / "sources" / "acted", synth)
        items += write_field_recordings(out / "sources" / "field_recordings", synth)
        noise = write_noise(out / "noise", synth)
        rirs = write_rirs(out / "rirs")
        write_intended_labels(out / "intended_labels.csv", items)
        write_commands(out / "espeak_commands.tsv", synth)
    finally:
        synth.close()
    accepted = [i.intended_sentiment for i in items if i.expected == "accept"]
    mix = {s: round(100 * accepted.count(s) / len(accepted), 1) for s in ("neutral", "negative", "positive")}
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{len(items)} items, {len(accepted)} expected accepted, mix {mix}, noise {len(noise)}, rirs {len(rirs)}")
    for name, delay in rirs:
        print(f"  rir {name}: direct path {1000 * delay:.1f} ms")
    print(f"total size {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
