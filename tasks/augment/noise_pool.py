"""The default noise pool: what noise augmentation and non-speech windows use when no noise files are given.

Why: with no ``augment.noise_paths`` the noise pool was empty, so ``p_noise`` did nothing and the
classifier stage had no non-speech windows, and nothing said so. With ``augment.default_noise: auto``
(the default) and no ``noise_paths``, the build makes its own pool:

- **stationary noise** (``white``, ``pink``, ``brown``: 1/f^0, 1/f, 1/f^2 spectra) and **hum/tones**
  (``hum``: 50 or 60 Hz mains with decaying harmonics over a faint noise floor; ``tone``: a steady
  tone, a dual tone or a beeping tone), generated from the dataset seed alone (``synthetic_noises``);
- **babble** (``babble``): 2-4 other *training* speakers' utterances summed at equal active level
  (``babble_noises``), built once in ``plan_stages`` after the splits are known, from train items
  only, so no dev/test audio is ever heard in training. Each babble file records its speakers, and
  ``draw_recipe`` never mixes a babble file into an utterance of one of them. Babble is used only in
  the train pool and never for non-speech windows (it is speech).

Files are written under ``work_dir/default_noise/`` and named, like their ids
(``default/<kind>-<sha256[:12]>``), by a hash of what they are made of (seed, kind, generator version;
for babble the talkers' segment keys), never by a path, so the release's recipes and manifests do not
depend on where the output lives. Publish copies the files a release uses into the release
(``audio/noise_pool/``) and points the pool index at them.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from manifests import uri as fs
from tasks.core.hashing import seeded_digest, seeded_hex

log = logging.getLogger(__name__)

SR = 16000
VERSION = "v1"  # bump when the generators change, so cached files are rebuilt under new ids
PREFIX = "default/"
FILE_S = 20.0  # long enough for several non-speech windows and for a noise offset per utterance
STATIONARY = (("white", 0.0), ("pink", 1.0), ("brown", 2.0))
PER_COLOUR = 3
HUMS = (50.0, 50.0, 60.0, 60.0)
TONES = ("steady", "dual", "beeps")
BABBLE_FILES = 6
MAX_TALKERS = 4
TALKER_UTTERANCES = 8  # utterances read per talker, at most, to fill a babble file
SYNTHETIC_KINDS: frozenset[str] = frozenset({"white", "pink", "brown", "hum", "tone"})
NON_SPEECH_KINDS: frozenset[str] = SYNTHETIC_KINDS  # kinds non-speech windows may be cut from
RECORDED = "recorded"


def is_default(noise_id: str) -> bool:
    return noise_id.startswith(PREFIX)


def kind_of(noise_id: str) -> str:
    """The pool kind of a noise id: a default kind (``white`` ... ``babble``) or ``recorded``."""
    if not is_default(noise_id):
        return RECORDED
    return noise_id[len(PREFIX):].split("-", 1)[0]


def _rng(seed: int, name: str) -> np.random.Generator:
    digest = seeded_digest(seed, "default_noise", VERSION, name)
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _level(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale to an RMS drawn from -35..-15 dBFS (non-speech windows are heard at this level)."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    target = 10.0 ** (float(rng.uniform(-35.0, -15.0)) / 20.0)
    y = x * (target / rms) if rms > 0 else x
    return np.clip(y, -0.99, 0.99).astype(np.float32)


def coloured_noise(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    """Gaussian noise with a 1/f^alpha power spectrum (white 0, pink 1, brown 2), 20 Hz and up."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SR)
    freqs[freqs < 20.0] = 20.0
    x = np.fft.irfft(spectrum / freqs ** (alpha / 2.0), n)
    return x / (np.std(x) or 1.0)


def mains_hum(rng: np.random.Generator, n: int, mains: float) -> np.ndarray:
    """Mains hum: the fundamental and harmonics up to 1 kHz with random decaying amplitudes and phases."""
    t = np.arange(n) / SR
    x = np.zeros(n)
    for k in range(1, int(1000.0 // mains) + 1):
        amp = float(rng.uniform(0.3, 1.0)) / k ** float(rng.uniform(0.5, 1.5))
        x += amp * np.sin(2.0 * np.pi * mains * k * t + float(rng.uniform(0, 2 * np.pi)))
    x /= np.std(x)
    return x + 0.03 * coloured_noise(rng, n, 1.0)


def tone(rng: np.random.Generator, n: int, style: str) -> np.ndarray:
    """A steady tone, a dual tone (DTMF-like) or a tone beeping at 1-3 Hz, over a faint noise floor."""
    t = np.arange(n) / SR
    f1 = float(rng.uniform(300.0, 3000.0))
    x = np.sin(2.0 * np.pi * f1 * t)
    if style == "dual":
        x += np.sin(2.0 * np.pi * float(rng.uniform(600.0, 1700.0)) * t)
    elif style == "beeps":
        rate, duty = float(rng.uniform(1.0, 3.0)), float(rng.uniform(0.3, 0.7))
        x *= ((t * rate) % 1.0) < duty
    x /= np.std(x) or 1.0
    return x + 0.03 * coloured_noise(rng, n, 0.0)


def _flac_bytes(audio: np.ndarray) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, audio, SR, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _store(folder: str, noise_id: str, audio: np.ndarray) -> str:
    uri = fs.join(folder, noise_id[len(PREFIX):] + ".flac")
    if not fs.exists(uri):
        fs.write_bytes(uri, _flac_bytes(audio))
    return uri


def _synthetic_specs(seed: int) -> list[tuple[str, str]]:
    """(kind, name) of every synthetic file: the name seeds its generator."""
    specs = [(kind, f"{kind}_{i}") for kind, _ in STATIONARY for i in range(PER_COLOUR)]
    specs += [("hum", f"hum_{int(m)}_{i}") for i, m in enumerate(HUMS)]
    specs += [("tone", f"tone_{style}") for style in TONES]
    return specs


def synthetic_noises(seed: int, folder: str) -> tuple[dict[str, str], dict[str, float]]:
    """({id: uri}, {id: duration_s}) of the stationary noise and hum/tone files (written once per seed)."""
    index_uri = fs.join(folder, f"synthetic-seed{seed}-{VERSION}.json")
    if fs.exists(index_uri):
        index = json.loads(fs.read_text(index_uri))
        uris = {i: fs.join(folder, name) for i, name in index["files"].items()}
        if all(fs.exists(u) for u in uris.values()):
            return uris, {i: float(d) for i, d in index["durations"].items()}
    n = int(FILE_S * SR)
    alphas = dict(STATIONARY)
    uris: dict[str, str] = {}
    durations: dict[str, float] = {}
    for kind, name in _synthetic_specs(seed):
        rng = _rng(seed, name)
        if kind in alphas:
            raw = coloured_noise(rng, n, alphas[kind])
        elif kind == "hum":
            raw = mains_hum(rng, n, float(name.split("_")[1]))
        else:
            raw = tone(rng, n, name.split("_", 1)[1])
        audio = _level(raw, rng)
        key = hashlib.sha256(f"{VERSION}:{seed}:{name}".encode() + audio.tobytes()).hexdigest()[:12]
        noise_id = f"{PREFIX}{kind}-{key}"
        uris[noise_id] = _store(folder, noise_id, audio)
        durations[noise_id] = n / SR
    fs.write_text(index_uri, json.dumps(
        {"files": {i: fs.basename(u) for i, u in uris.items()}, "durations": durations}, sort_keys=True))
    return uris, durations


# ------------------------------------------------------------------------------------------- babble
def speaker_keys(items: pd.DataFrame) -> pd.Series:
    """The speaker (else recording) of each item, as the splits use it (`tasks.plan.splits.split_group`)."""
    from tasks.plan.splits import split_groups

    return pd.Series(split_groups(items), index=items.index, dtype=object)


def _talker_plan(items: pd.DataFrame, seed: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """(speaker, its utterances in a seeded order) for every train speaker, in a seeded order."""
    train = items[items["split"] == "train"]
    if train.empty:
        return []
    train = train.assign(_speaker=speaker_keys(train))
    plan = []
    for speaker, group in train.groupby("_speaker", sort=True):
        rows = sorted(group.to_dict("records"),
                      key=lambda r: seeded_hex(seed, r["utterance_id"]))
        plan.append((str(speaker), rows[:TALKER_UTTERANCES]))
    plan.sort(key=lambda p: seeded_hex(seed, "babble", p[0]))
    return plan


def _talker_audio(rows: list[dict[str, Any]], n: int) -> np.ndarray | None:
    """One talker's utterances end to end (looped) to n samples at equal active level, or None."""
    from manifests.augmentation import active_level
    from tasks.core.audio import read_audio

    parts = []
    for row in rows:
        offset = row.get("offset_s")
        duration = row.get("duration_s")
        try:
            audio = read_audio(row["audio_uri"], 0.0 if pd.isna(offset) else float(offset),
                               None if duration is None or pd.isna(duration) else float(duration),
                               target_sr=SR, mono=True)
        except Exception as err:  # a talker that cannot be read is left out of babble, not fatal
            log.warning("babble: cannot read %s (%s): %s", row.get("utterance_id"), row.get("audio_uri"), err)
            continue
        if len(audio) and np.any(audio):
            parts.append(np.asarray(audio, dtype=np.float32))
    if not parts:
        return None
    joined = np.concatenate(parts)
    looped = np.resize(joined, n)
    level = active_level(looped, SR)
    return looped / np.float32(np.sqrt(level)) if level > 0 else None


def babble_noises(items: pd.DataFrame, seed: int, folder: str) -> tuple[dict[str, str], dict[str, float],
                                                                       dict[str, list[str]]]:
    """({id: uri}, {id: duration_s}, {id: its speakers}) of babble from other TRAINING speakers.

    Needs at least 2 train speakers (a file's talkers must leave someone out). Talkers are taken in
    rotating windows over the seeded speaker order, so every speaker is left out of some file.
    """
    plan = _talker_plan(items, seed)
    if len(plan) < 2:
        return {}, {}, {}
    talkers = min(MAX_TALKERS, len(plan) - 1)
    n = int(FILE_S * SR)
    uris: dict[str, str] = {}
    durations: dict[str, float] = {}
    speakers: dict[str, list[str]] = {}
    for j in range(BABBLE_FILES):
        chosen = [plan[(j * talkers + i) % len(plan)] for i in range(talkers)]
        chosen = list({s: (s, rows) for s, rows in chosen}.values())
        keys = [[str(r.get("segment_key") or r["utterance_id"]) for r in rows] for _, rows in chosen]
        key = hashlib.sha256(json.dumps([VERSION, seed, j, keys]).encode()).hexdigest()[:12]
        noise_id = f"{PREFIX}babble-{key}"
        uri = fs.join(folder, f"babble-{key}.flac")
        if not fs.exists(uri):
            rng = _rng(seed, f"babble_{j}")
            voices = [v for _, rows in chosen if (v := _talker_audio(rows, n)) is not None]
            if not voices:
                continue
            mix = np.zeros(n, dtype=np.float64)
            for voice in voices:
                mix += np.roll(voice, int(rng.integers(n)))
            fs.write_bytes(uri, _flac_bytes(_level(mix, rng)))
        uris[noise_id] = uri
        durations[noise_id] = n / SR
        speakers[noise_id] = sorted(s for s, _ in chosen)
    return uris, durations, speakers


def add_babble(pools: Any, spec: Any, seed: int, work_dir: str, items: pd.DataFrame) -> Any:
    """`AugmentPools` plus babble from the planned TRAINING items (train pool only), for the default pool.

    Called once by ``plan_stages`` after the splits are known; a no-op when the noise pool is not the
    default one or when noise augmentation cannot happen in train.
    """
    from tasks.augment.pools import AugmentPools

    if spec.noise_paths or spec.default_noise != "auto" or not spec.enabled or spec.p_noise <= 0 \
            or "train" not in spec.splits:
        return pools
    uris, durations, speakers = babble_noises(items, seed, fs.join(work_dir, "default_noise"))
    if not uris:
        return pools
    state = {k: v for k, v in pools.__dict__.items() if k != "_cache"}
    state.update(noises={**pools.noises, **uris}, noise_durations={**pools.noise_durations, **durations},
                 train_noises=sorted([*pools.train_noises, *uris]),
                 noise_speakers={**pools.noise_speakers, **speakers})
    return AugmentPools(**state)


# ------------------------------------------------------------------------------------ card and guards
def pool_report(pools: Any, spec: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The card's noise-pool facts (kinds per train/eval pool) and the guards the pool fires.

    `pools` is an `AugmentPools`, `spec` the `DatasetSpec`. Guards: `noise_pool_synthetic` when no
    recorded noise was given and the generated default pool stands in; `noise_pool_empty` when there
    is no noise at all although noise augmentation or non-speech windows were asked for.
    """
    from tasks.core import guards
    aug = spec.augment
    kinds = {name: dict(sorted(pd.Series([kind_of(i) for i in ids], dtype=object).value_counts().items()))
             for name, ids in (("train", pools.train_noises), ("eval", pools.eval_noises))}
    source = "recorded" if aug.noise_paths else ("default" if pools.noises else "none")
    talkers = sorted({s for ss in pools.noise_speakers.values() for s in ss})
    report = {"noise_source": source, "default_noise": aug.default_noise, "noise_kinds": kinds,
              "babble_files": sum(1 for i in pools.noises if kind_of(i) == "babble"),
              "babble_speakers": len(talkers)}
    wants_noise = aug.enabled and aug.p_noise > 0
    wants_windows = spec.segments.non_speech_windows_per_noise_file > 0
    fired: list[dict[str, Any]] = []
    if not pools.noises and (wants_noise or wants_windows):
        why = ("no usable file was found below augment.noise_paths" if aug.noise_paths
               else "augment.noise_paths is empty and augment.default_noise is off")
        fired.append(guards.guard(
            "noise_pool_empty",
            f"The noise pool is empty ({why}): p_noise {aug.p_noise:g} adds no noise and the classifier stage "
            "gets no non-speech windows. Give recorded noise in augment.noise_paths, or set "
            "augment.default_noise: auto.", noise_paths=list(aug.noise_paths), default_noise=aug.default_noise))
    elif source == "default":
        used = sorted({k for pool in kinds.values() for k in pool})
        no_babble = ("; no babble: fewer than 2 training speakers could be read"
                     if wants_noise and "train" in aug.splits and "babble" not in used else "")
        fired.append(guards.guard(
            "noise_pool_synthetic",
            f"No recorded noise was given (augment.noise_paths is empty), so "
            f"{'noise augmentation and ' if wants_noise else ''}non-speech windows use only the generated default "
            f"pool ({', '.join(used)}{no_babble}). Give recorded noise "
            "(e.g. MUSAN noise/ and music/) in augment.noise_paths for realistic conditions.",
            kinds=kinds))
    return report, fired


# ------------------------------------------------------------------------------ pipeline glue
PLAN_POOLS = "augment_pools.json"  # the plan's pools (with babble), saved beside its row shards


def planned_pools(spec: Any, items: pd.DataFrame, augment_dir: str, log: Any = None) -> tuple[Any, dict, list, dict]:
    """(pools, card facts, guards, speaker of each utterance) for `plan_stages`, once per plan.

    The speakers are given only when babble exists: `draw_recipe` then keeps each utterance away
    from babble in which its own speaker talks.
    """
    pools, facts, fired = pools_from_sample(spec, items, augment_dir, log)
    speakers = dict(zip(items["utterance_id"], speaker_keys(items), strict=True)) if pools.noise_speakers else {}
    return pools, facts, fired, speakers


def pools_from_sample(spec: Any, talkers: pd.DataFrame, augment_dir: str, log: Any = None) -> tuple[Any, dict, list]:
    """(pools, card facts, guards) with babble from `talkers`: the planned items, or only the train rows
    babble can use (`tasks.plan.shard_step.trim_talkers`, merged over shards), which give the same files."""
    from tasks.augment.pools import build_pools

    pools = add_babble(build_pools(spec.augment, spec.seed, augment_dir), spec.augment, spec.seed,
                       augment_dir, talkers)
    facts, fired = pool_report(pools, spec)
    for record in fired:
        (log or _warn)("guard %s: %s", record["guard"], record["message"])
    return pools, facts, fired


def _warn(msg: str, *args: Any) -> None:
    log.warning(msg, *args)


def load_pools(spec: Any, pools_uri: str | None, augment_dir: str) -> Any:
    """The pools a plan saved (babble included); rebuilt from the spec for a plan that did not save them."""
    from tasks.augment.pools import AugmentPools, build_pools

    if pools_uri and fs.exists(pools_uri):
        return AugmentPools.from_json(fs.read_text(pools_uri))
    return build_pools(spec.augment, spec.seed, augment_dir)


def release_pools(pools: Any, release_root: str, audio_dir: str, link: Any) -> tuple[Any, dict[str, str]]:
    """(pools with the default files copied into the release, the pool index's noise entries).

    Generated noise lives in the work folder; the release's non-speech windows point at copies under
    `audio/noise_pool/` (via `link(uri, audio_dir, "noise_pool")`, which returns the release-relative URI), and the pool index names them relative to the
    release, so the release is whole without work/ and travels when moved.
    """
    import dataclasses

    linked = {i: link(u, audio_dir, "noise_pool") for i, u in sorted(pools.noises.items()) if is_default(i)}
    out = dataclasses.replace(pools, noises={**pools.noises, **linked}) if linked else pools
    root = release_root.rstrip("/") + "/"
    index = {i: (u[len(root):] if u.startswith(root) else u) for i, u in out.noises.items()}
    return out, index
