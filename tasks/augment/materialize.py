"""Augmentation for the pipeline: RIR/noise pools, per-row recipe drawing, materialisation to FLAC.

The DSP lives in `manifests.augmentation` (training jobs apply the same recipes lazily); this module
decides *which* recipe each stage row gets and writes the augmented audio.

- **Pools.** RIR and noise files are found below the spec's folders (any layout: RIRS_NOISES,
  MUSAN, a flat folder); a file's id is its path relative to its folder, so ids are stable across
  machines. Each pool is split ~80/20 into a train and an eval pool by a hash of the id, so no RIR or
  noise file is heard in both training and evaluation. Without RIR folders, ``simulate_rirs`` rooms are
  simulated by the image method and written under ``work_dir/simulated_rirs/``. Layout rules
  (``rir_exclusion``, ``noise_exclusion``) keep RIRS_NOISES noises out of the RIR pool, its RIRs out
  of the noise pool, and MUSAN ``speech/`` out of the noise pool unless it is named itself.
- **Recipes.** ``draw_recipe`` seeds a numpy Generator from sha256(f"{seed}:{row_id}"): a row's recipe
  depends only on the dataset seed and the row id, never on order, shard or process. The variants of
  one utterance rotate through the speeds; ``classifier_variants`` gives the classifier stage
  ``copies_per_utterance`` variants per augmented utterance.
- **Materialisation.** Files are named by a hash of (source segment, recipe, RIR/noise files, DSP
  version), so a resumed run reuses what it already wrote, and rows sharing a variant share one file.
  A simulated RIR enters that hash by its path relative to the work folder, never by its absolute
  path, so the output folder does not change file names or the release's ``content_sha256``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from manifests.augmentation import DSP_VERSION, Recipe, apply_recipe, load_noise, load_rir
from tasks.core import storage
from tasks.core.hashing import seeded_digest
from tasks.spec import AugmentSpec

SR = 16000
EVAL_SHARE = 0.2  # share of RIR/noise files held out for dev/test augmentation
MAX_RIR_S = 4.0  # longer "RIR" files are noise recordings or mistakes
RIR_SUFFIXES: tuple[str, ...] = (".wav", ".flac")
NOISE_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")
CACHE_BYTES = 256 << 20  # in-memory LRU of loaded RIR/noise arrays
SIM_VERSION = "v1"  # bump when the simulator changes, so cached rooms are rebuilt
SPEED_OF_SOUND = 343.0
FAILURE_COLUMNS = ["row_id", "utterance_id", "source", "reason", "detail"]


# ------------------------------------------------------------------------------------------- pools
@dataclass
class AugmentPools:
    """RIR and noise files by id, their train/eval split, and a small cache of decoded arrays."""

    rirs: dict[str, str] = field(default_factory=dict)
    noises: dict[str, str] = field(default_factory=dict)
    train_rirs: list[str] = field(default_factory=list)
    eval_rirs: list[str] = field(default_factory=list)
    train_noises: list[str] = field(default_factory=list)
    eval_noises: list[str] = field(default_factory=list)
    noise_durations: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # file -> why it is not in a pool
    excluded: dict[str, int] = field(default_factory=dict)  # layout rule -> files left out on purpose
    noise_speakers: dict[str, list[str]] = field(default_factory=dict)  # babble id -> its talkers (tasks/noise_pool)
    work_dir: str = ""  # the run's augment work folder: files below it are named relative to it
    _cache: OrderedDict[tuple[str, str, int], np.ndarray] = field(
        default_factory=OrderedDict, repr=False, compare=False
    )

    def rir_pool(self, split: str) -> list[str]:
        return self.train_rirs if split == "train" else self.eval_rirs

    def noise_pool(self, split: str, speaker: str | None = None) -> list[str]:
        """The split's noise ids; without babble files in which `speaker` talks (never their own voice)."""
        pool = self.train_noises if split == "train" else self.eval_noises
        if speaker is None or not self.noise_speakers:
            return pool
        return [i for i in pool if speaker not in self.noise_speakers.get(i, ())]

    def noise_key(self, noise_id: str) -> str | None:
        """What identifies a noise file's audio: its URI, or for a default-pool file its content-derived id."""
        from tasks.augment.noise_pool import is_default

        return noise_id if is_default(noise_id) else self.file_identity("noise", noise_id)

    def to_json(self) -> str:
        """The pools without the cache (a plan output: later stages load the same pools)."""
        state = {k: v for k, v in self.__dict__.items() if k != "_cache"}
        return json.dumps(state, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AugmentPools:
        return cls(**json.loads(text))

    def file_identity(self, kind: str, item_id: str | None) -> str | None:
        """What names a pool file in content identities: never an absolute path into the output folder.

        A file below `work_dir` (simulated rooms) is named by its path relative to it, which holds the
        seed and simulator version that determine its content; any other file (an input named by the
        spec) by its URI. So two builds of one spec into two output folders name the same files.
        """
        if item_id is None:
            return None
        uri = (self.rirs if kind == "rir" else self.noises).get(item_id)
        if uri is None:
            return None
        root = self.work_dir.rstrip("/") + "/"
        return f"work:{uri[len(root):]}" if self.work_dir and uri.startswith(root) else uri

    def load_rir(self, rir_id: str, sr: int = SR) -> np.ndarray:
        """The RIR as mono float32 at `sr` (cached); KeyError for an unknown id."""
        return self._load("rir", rir_id, self.rirs[rir_id], sr)

    def load_noise(self, noise_id: str, sr: int = SR) -> np.ndarray:
        """The noise as mono float32 at `sr` (cached); KeyError for an unknown id."""
        return self._load("noise", noise_id, self.noises[noise_id], sr)

    def _load(self, kind: str, item_id: str, uri: str, sr: int) -> np.ndarray:
        key = (kind, item_id, sr)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        with storage.open_local(uri) as path:
            array = load_rir(path, sr) if kind == "rir" else load_noise(path, sr)
        array.setflags(write=False)
        self._cache[key] = array
        while sum(a.nbytes for a in self._cache.values()) > CACHE_BYTES and len(self._cache) > 1:
            self._cache.popitem(last=False)
        return array

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = OrderedDict()  # never ship decoded audio between processes
        return state


def _hash_unit(*parts: object) -> float:
    """A stable number in [0, 1) from the parts."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_pool(ids: list[str], kind: str) -> tuple[list[str], list[str]]:
    """(train, eval) ids: ~EVAL_SHARE held out by hash; both non-empty when there are >= 2 ids."""
    ranked = sorted(ids, key=lambda i: (_hash_unit(kind, i), i))
    eval_ids = [i for i in ranked if _hash_unit(kind, i) < EVAL_SHARE]
    if len(ids) >= 2 and not eval_ids:
        eval_ids = ranked[:1]
    if len(ids) >= 2 and len(eval_ids) == len(ids):
        eval_ids = eval_ids[:-1]
    held = set(eval_ids)
    return sorted(i for i in ids if i not in held), sorted(held)


def _split_noises(ids: list[str]) -> tuple[list[str], list[str]]:
    """split_pool, per kind for the default pool (tasks/augment/noise_pool.py): each kind is heard in evaluation."""
    from tasks.augment.noise_pool import kind_of

    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(kind_of(i), []).append(i)
    train: list[str] = []
    held: list[str] = []
    for kind in sorted(groups):
        t, e = split_pool(groups[kind], "noise")
        train += t
        held += e
    return sorted(train), sorted(held)


def _find_files(
    roots: list[str], suffixes: tuple[str, ...], exclude: Callable[[tuple[str, ...]], str | None] | None = None
) -> tuple[dict[str, str], Counter[str]]:
    """(id -> uri, excluded counts by reason) for audio files below each root.

    Ids are paths relative to the root (prefixed by the root's folder name when there are several
    roots). `exclude` sees the lower-cased path parts *including the root's own folder name* and
    returns a reason to leave the file out, or None.
    """
    found: dict[str, str] = {}
    excluded: Counter[str] = Counter()
    for i, root in enumerate(roots):
        root_name = storage.basename(root.rstrip("/"))
        for uri in storage.list_files(root, suffixes=suffixes):
            name = storage.basename(uri)
            if name.startswith("._") or name.startswith("."):
                continue  # macOS resource forks and hidden files
            rel = storage.relative_to(uri, root) if uri != root else name
            reason = exclude(tuple(p.lower() for p in (root_name, *rel.split("/")))) if exclude else None
            if reason:
                excluded[reason] += 1
                continue
            item_id = rel if len(roots) == 1 else f"{root_name}/{rel}"
            if item_id in found:
                item_id = f"{i}:{item_id}"
            found[item_id] = uri
    return found, excluded


def _tokens(name: str) -> set[str]:
    return set(re.split(r"[^a-z0-9]+", name.lower()))


def rir_exclusion(parts: tuple[str, ...]) -> str | None:
    """Why a file below an RIR folder is not a room response (RIRS_NOISES keeps noises beside RIRs)."""
    if "pointsource_noises" in parts or _tokens(parts[-1]) & {"noise", "noises"}:
        return "noise_in_rir_folder"
    return None


def noise_exclusion(parts: tuple[str, ...]) -> str | None:
    """Why a file below a noise folder is not used as noise.

    MUSAN ``speech/`` is left out (babble would put words under the transcript and make
    "non-speech" windows contain speech); point ``noise_paths`` at ``musan/speech`` itself to opt in.
    MUSAN ``music/`` and ``noise/`` are used. Room responses of RIRS_NOISES are not noise.
    """
    for a, b in zip(parts, parts[1:], strict=False):
        if a == "musan" and b == "speech":
            return "musan_speech"
    tokens = _tokens(parts[-1])
    if "simulated_rirs" in parts or ("real_rirs_isotropic_noises" in parts and "noise" not in tokens):
        return "rir_in_noise_folder"
    if "rir" in tokens and "noise" not in tokens:
        return "rir_in_noise_folder"
    return None


def _stat(path: str) -> tuple[int, int]:
    """(size, mtime in ns) of a local file; (-1, -1) when it is gone (the probe then says why)."""
    try:
        st = os.stat(path)
    except OSError:
        return -1, -1
    return st.st_size, st.st_mtime_ns


def _durations(uris: dict[str, str], work_dir: str, kind: str) -> tuple[dict[str, float], dict[str, str]]:
    """Probe every file once per file list (cached in work_dir: S3 probes download the file)."""
    from tasks.core.audio import AudioError, probe

    # Local files also by size and mtime: a file replaced under the same name is probed again.
    stats = {u: list(_stat(u)) for u in sorted(uris.values()) if not storage.is_s3(u)}
    key = hashlib.sha256(json.dumps([kind, sorted(uris.items()), stats]).encode()).hexdigest()[:20]
    cache_uri = storage.join(work_dir, "pools", f"{kind}-{key}.json")
    if storage.exists(cache_uri):
        cached = json.loads(storage.read_text(cache_uri))
        return cached["durations"], cached["skipped"]
    durations: dict[str, float] = {}
    skipped: dict[str, str] = {}
    for item_id, uri in sorted(uris.items()):
        try:
            info = probe(uri)
        except AudioError as err:
            skipped[uri] = err.detail
            continue
        if info.num_frames <= 0:
            skipped[uri] = f"{kind} file {uri} holds no samples."
            continue
        durations[item_id] = float(info.duration_s)
    storage.write_text(cache_uri, json.dumps({"durations": durations, "skipped": skipped}, sort_keys=True))
    return durations, skipped


def build_pools(spec: AugmentSpec, seed: int, work_dir: str) -> AugmentPools:
    """Find (or simulate) RIRs and find noises, probe them, and split each ~80/20 into train/eval."""
    rir_uris, excluded = _find_files(spec.rir_paths, RIR_SUFFIXES, rir_exclusion)
    if not spec.rir_paths and spec.simulate_rirs > 0:
        rir_uris = simulate_rirs(spec.simulate_rirs, seed, storage.join(work_dir, "simulated_rirs"))
    noise_uris, noise_excluded = _find_files(spec.noise_paths, NOISE_SUFFIXES, noise_exclusion)
    excluded.update(noise_excluded)
    rir_durations, skipped = _durations(rir_uris, work_dir, "rir")
    noise_durations, noise_skipped = _durations(noise_uris, work_dir, "noise")
    skipped.update(noise_skipped)
    for item_id, duration in sorted(rir_durations.items()):
        if duration > MAX_RIR_S:
            skipped[rir_uris[item_id]] = (
                f"RIR file {rir_uris[item_id]} is {duration:.1f} s long (over {MAX_RIR_S:g} s); "
                "it is probably a noise recording, so it is not used as a room response."
            )
    rirs = {i: rir_uris[i] for i, d in rir_durations.items() if d <= MAX_RIR_S}
    noises = {i: noise_uris[i] for i in noise_durations}
    if not spec.noise_paths and spec.default_noise == "auto":  # the default pool (tasks/augment/noise_pool.py)
        from tasks.augment.noise_pool import synthetic_noises

        noises, noise_durations = synthetic_noises(seed, storage.join(work_dir, "default_noise"))
    train_rirs, eval_rirs = split_pool(sorted(rirs), "rir")
    train_noises, eval_noises = _split_noises(sorted(noises))
    return AugmentPools(
        rirs=rirs,
        noises=noises,
        train_rirs=train_rirs,
        eval_rirs=eval_rirs,
        train_noises=train_noises,
        eval_noises=eval_noises,
        noise_durations=noise_durations,
        skipped=skipped,
        excluded=dict(sorted(excluded.items())),
        work_dir=work_dir,
    )


# ------------------------------------------------------------------------------ simulated rooms
def simulate_rir(rng: np.random.Generator, sr: int = SR) -> tuple[np.ndarray, dict[str, float]]:
    """One shoebox-room RIR by the image method (Allen & Berkley 1979), and the room's parameters.

    Room 3-10 x 3-8 x 2.5-4 m, RT60 0.2-0.7 s (Sabine's formula gives one wall reflection coefficient),
    source and microphone >= 0.5 m from walls and >= 1 m apart. Images up to RT60 of delay are summed
    with linearly interpolated fractional delays; an 80 Hz high-pass removes the method's DC offset.
    """
    import scipy.signal

    dims = rng.uniform([3.0, 3.0, 2.5], [10.0, 8.0, 4.0])
    rt60 = float(rng.uniform(0.2, 0.7))
    volume = float(np.prod(dims))
    surface = 2.0 * (dims[0] * dims[1] + dims[0] * dims[2] + dims[1] * dims[2])
    alpha = min(0.95, 0.161 * volume / (surface * rt60))
    beta = math.sqrt(1.0 - alpha)
    src = rng.uniform(0.5, dims - 0.5)
    mic = rng.uniform(0.5, dims - 0.5)
    for _ in range(100):
        if np.linalg.norm(src - mic) >= 1.0:
            break
        mic = rng.uniform(0.5, dims - 0.5)
    length = int(rt60 * sr)
    max_dist = SPEED_OF_SOUND * length / sr

    def axis(d: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-axis image offsets from the mic and their reflection counts."""
        n = np.arange(-(int(max_dist / (2 * dims[d])) + 1), int(max_dist / (2 * dims[d])) + 2)
        offsets, refl = [], []
        for q in (0, 1):
            offsets.append((1 - 2 * q) * src[d] + 2 * n * dims[d] - mic[d])
            refl.append(np.abs(n - q) + np.abs(n))
        return np.concatenate(offsets), np.concatenate(refl)

    (dx, rx), (dy, ry), (dz, rz) = axis(0), axis(1), axis(2)
    h = np.zeros(length + 2)
    yz_dist2 = dy[:, None] ** 2 + dz[None, :] ** 2
    yz_refl = ry[:, None] + rz[None, :]
    for x_off, x_refl in zip(dx, rx, strict=True):
        dist = np.sqrt(x_off**2 + yz_dist2)
        delay = dist / SPEED_OF_SOUND * sr
        keep = delay < length
        if not keep.any():
            continue
        amp = beta ** (x_refl + yz_refl[keep]) / (4.0 * math.pi * dist[keep])
        pos = delay[keep]
        base = np.floor(pos).astype(np.int64)
        frac = pos - base
        h += np.bincount(base, amp * (1.0 - frac), minlength=length + 2)[: length + 2]
        h += np.bincount(base + 1, amp * frac, minlength=length + 2)[: length + 2]
    sos = scipy.signal.butter(2, 80.0, btype="highpass", fs=sr, output="sos")
    h = scipy.signal.sosfilt(sos, h[:length])
    h /= np.max(np.abs(h))
    params = {"room_x": float(dims[0]), "room_y": float(dims[1]), "room_z": float(dims[2]), "rt60_s": rt60,
              "distance_m": float(np.linalg.norm(src - mic))}
    return h.astype(np.float32), params


def simulate_rirs(count: int, seed: int, folder: str, sr: int = SR) -> dict[str, str]:
    """`count` simulated rooms as WAV files (reused when already written); ids ``sim/room_XX``."""
    import soundfile

    target = storage.join(folder, f"seed{seed}-{SIM_VERSION}")
    out: dict[str, str] = {}
    for i in range(count):
        uri = storage.join(target, f"room_{i:02d}.wav")
        if not storage.exists(uri):
            rng = np.random.default_rng(derive_seed(seed, f"simulated_rir:{i}"))
            rir, _ = simulate_rir(rng, sr)
            buf = io.BytesIO()
            soundfile.write(buf, rir, sr, format="WAV", subtype="FLOAT")
            storage.write_bytes(uri, buf.getvalue())
        out[f"sim/room_{i:02d}"] = uri
    return out


# ------------------------------------------------------------------------------------------ recipes
def derive_seed(seed: int, row_id: str) -> int:
    """A 63-bit integer from sha256(f"{seed}:{row_id}") (fits the int64 aug_seed column)."""
    digest = seeded_digest(seed, row_id)
    return int.from_bytes(digest[:8], "big") >> 1


IDENTITY = Recipe(speed=1.0, gain=1.0)


def _speed_slot(seed: int, row_id: str, u_speed: float, count: int) -> int:
    """Index into the sorted speeds: rotated over an utterance's variants (see draw_recipe)."""
    utterance, sep, variant = row_id.rpartition("#")
    if not sep or not variant.isdigit():
        return min(int(u_speed * count), count - 1)
    start = np.random.default_rng(derive_seed(seed, f"speed:{utterance}")).integers(count)
    return int((int(start) + int(variant)) % count)


def classifier_variants(items: pd.DataFrame, spec: AugmentSpec) -> pd.DataFrame:
    """(utterance_id, variant) of the classifier stage: `copies_per_utterance` per augmented utterance.

    Utterances of splits that ``spec`` augments get variants 0..copies-1 (each its own recipe, so
    its own speed, RIR and noise); every other utterance, or all of them when augmentation is off,
    gets variant 0 only (extra clean copies would just repeat the same audio).
    """
    copies = spec.copies_per_utterance if spec.enabled else 1
    counts = np.where(items["split"].isin(list(spec.splits)), copies, 1) if copies > 1 else np.ones(len(items), int)
    return pd.DataFrame({
        "utterance_id": np.repeat(items["utterance_id"].to_numpy(), counts),
        "variant": np.concatenate([np.arange(c) for c in counts]) if len(items) else np.zeros(0, int),
    }).astype({"variant": int})


def draw_recipe(
    seed: int, row_id: str, split: str, spec: AugmentSpec, pools: AugmentPools, duration_s: float,
    speaker: str | None = None,
) -> Recipe:
    """The recipe of one stage row, from (seed, row_id) alone.

    Splits not in ``spec.splits`` (and everything when augmentation is off) get the identity recipe.
    Seven uniform numbers are always drawn in the same order (speed, reverb?, which RIR, noise?,
    which noise, offset, SNR), so changing one probability does not reshuffle the others. Train rows
    use the train pools, dev/test rows the eval pools. A noise longer than the utterance starts at a
    uniform offset that fits the utterance; a shorter one starts anywhere and loops. `speaker` (the
    row's split group) keeps babble in which that speaker talks out of the noise draw.
    The gain is left to ``apply_recipe`` (None) unless the recipe changes nothing (gain 1.0).

    Speed: a row id ``<utterance>#<variant>`` (``tasks.plan.stage_rows.recipe_key``) takes the speed at
    ``(start + variant) % len(speeds)``, with ``start`` drawn from (seed, utterance) alone, so variant 0
    is still uniform over the speeds while the copies of one utterance (``copies_per_utterance``,
    oversampled ASR repeats) rotate through them: 3 copies get 0.95, 1.0 and 1.05 once each, as in
    Kaldi's 3-way speed perturbation. Other row ids use the row's own uniform draw.
    """
    if not spec.enabled or split not in spec.splits:
        return IDENTITY
    aug_seed = derive_seed(seed, row_id)
    u_speed, u_rev, u_rir, u_noise, u_noise_id, u_offset, u_snr = np.random.default_rng(aug_seed).random(7)
    speeds = sorted(float(s) for s in spec.speeds)
    speed = speeds[_speed_slot(seed, row_id, float(u_speed), len(speeds))]
    rir_pool, noise_pool = pools.rir_pool(split), pools.noise_pool(split, speaker)
    rir_id = None
    if rir_pool and u_rev < spec.p_reverb:
        rir_id = rir_pool[min(int(u_rir * len(rir_pool)), len(rir_pool) - 1)]
    noise_id = noise_offset_s = snr_db = None
    if noise_pool and u_noise < spec.p_noise:
        noise_id = noise_pool[min(int(u_noise_id * len(noise_pool)), len(noise_pool) - 1)]
        noise_len = pools.noise_durations.get(noise_id, 0.0)
        span = noise_len - duration_s if noise_len > duration_s else noise_len
        noise_offset_s = float(u_offset * max(span, 0.0))
        low, high = spec.snr_db
        snr_db = float(low + u_snr * (high - low))
    if speed == 1.0 and rir_id is None and noise_id is None:
        return Recipe(speed=1.0, gain=1.0, aug_seed=aug_seed)
    return Recipe(speed=speed, rir_id=rir_id, noise_id=noise_id, noise_offset_s=noise_offset_s,
                  snr_db=snr_db, gain=None, aug_seed=aug_seed)


# ---------------------------------------------------------------------------------- materialise
class _RowError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def content_name(row: Any, recipe: Recipe, pools: AugmentPools, sr: int) -> str:
    """File name: the utterance id made safe, plus a hash of what determines the audio."""
    spec = recipe.to_row()
    spec.pop("aug_seed")  # does not change the audio; rows with equal recipes share one file
    key = json.dumps(
        {
            "version": DSP_VERSION,
            "source": row["source_audio_uri"],
            # the source's bytes (segment_key holds their sha256): a file replaced under its name is new audio
            "segment_key": row["segment_key"] if "segment_key" in row else None,
            "offset_s": _num(row["offset_s"]),
            "duration_s": _num(row["duration_s"]),
            "sr": sr,
            "recipe": spec,
            "rir": pools.file_identity("rir", recipe.rir_id),
            "noise": pools.noise_key(recipe.noise_id) if recipe.noise_id else None,
        },
        sort_keys=True,
    )
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(row["utterance_id"])).strip("_")[:80] or "utt"
    return f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _render(row: Any, recipe: Recipe, pools: AugmentPools, sr: int) -> tuple[np.ndarray, float]:
    """Read the clean utterance and apply the recipe; problems become _RowError."""
    from tasks.core.audio import AudioError, read_audio

    try:
        audio = read_audio(row["source_audio_uri"], _num(row["offset_s"]) or 0.0, _num(row["duration_s"]),
                           target_sr=sr, mono=True)
    except AudioError as err:
        raise _RowError(err.reason, err.detail) from None
    rir = noise = None
    for kind, item_id in (("RIR", recipe.rir_id), ("noise", recipe.noise_id)):
        if item_id is None:
            continue
        try:
            array = pools.load_rir(item_id, sr) if kind == "RIR" else pools.load_noise(item_id, sr)
        except KeyError:
            raise _RowError("missing_audio", f"{kind} {item_id!r} named by the recipe is not in the pools; "
                                             "check augment.rir_paths / noise_paths.") from None
        except Exception as err:  # any decoder failure names the file
            raise _RowError("unreadable_audio", f"{kind} file {item_id!r} cannot be read: {err}") from None
        rir, noise = (array, noise) if kind == "RIR" else (rir, array)
    try:
        return apply_recipe(audio, sr, recipe, rir, noise)
    except ValueError as err:
        reason = "empty_audio" if "silent" in str(err) else "unreadable_audio"
        raise _RowError(reason, f"{err}") from None


def materialize(
    rows: pd.DataFrame, pools: AugmentPools, out_dir: str, sr: int = SR, log: Callable[..., None] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write each row's augmented utterance as FLAC; return (rows pointing at it, failures).

    Rows are stage rows (utterance_id, row_id, source_audio_uri, offset_s, duration_s and the recipe
    columns). A finished file has a JSON sidecar with the gain used, its length and the sha256 of its
    bytes; a resumed run reuses it only when it verifies (`tasks.core.work_audio.check_reusable`) and
    redoes it otherwise, logging why through `log`. The returned rows carry `audio_sha256`.
    Failures (row_id, utterance_id, source, reason, detail) never raise.
    """
    from tasks.core.audio import write_flac
    from tasks.core.work_audio import check_reusable

    done: dict[str, tuple[str, float, float, str]] = {}  # name -> (uri, gain, duration_s, sha256)
    kept: list[tuple[Any, str, float, float, str]] = []  # (position, uri, gain, duration_s, sha256)
    failures: list[dict[str, Any]] = []
    for pos, (_, row) in enumerate(rows.iterrows()):
        recipe = Recipe.from_row(row)
        name = content_name(row, recipe, pools, sr)
        try:
            if name not in done:
                flac_uri, meta_uri = storage.join(out_dir, f"{name}.flac"), storage.join(out_dir, f"{name}.json")
                meta, problem = check_reusable(flac_uri, meta_uri)
                if meta is not None:
                    done[name] = (flac_uri, float(meta["gain"]), int(meta["num_samples"]) / sr, str(meta["sha256"]))
                else:
                    if problem and log is not None:
                        log("augment: %s; redoing it", problem)
                    audio, gain = _render(row, recipe, pools, sr)
                    if len(audio) == 0:
                        raise _RowError("empty_audio", "the augmented utterance has no samples")
                    sha = write_flac(flac_uri, audio, sr)
                    meta = {"gain": gain, "num_samples": len(audio), "sample_rate": sr, "sha256": sha,
                            "source_audio_uri": row["source_audio_uri"], "recipe": recipe.to_row()}
                    storage.write_text(meta_uri, json.dumps(meta, sort_keys=True))
                    done[name] = (flac_uri, gain, len(audio) / sr, sha)
        except _RowError as err:
            failures.append({"row_id": row.get("row_id"), "utterance_id": row.get("utterance_id"),
                             "source": row.get("source"), "reason": err.reason,
                             "detail": f"Augmenting row {row.get('row_id')} ({row['source_audio_uri']}) failed: "
                                       f"{err.detail}"})
            continue
        except Exception as err:  # one bad row must not stop the shard
            failures.append({"row_id": row.get("row_id"), "utterance_id": row.get("utterance_id"),
                             "source": row.get("source"), "reason": "unreadable_audio",
                             "detail": f"Augmenting row {row.get('row_id')} ({row['source_audio_uri']}) failed: "
                                       f"{type(err).__name__}: {err}"})
            continue
        kept.append((pos, *done[name]))
    result = rows.iloc[[k[0] for k in kept]].copy()
    result["audio_uri"] = np.array([k[1] for k in kept], dtype=object)
    result["offset_s"] = 0.0
    result["duration_s"] = np.array([k[3] for k in kept], dtype=float)
    result["recipe_applied"] = True
    result["gain"] = np.array([k[2] for k in kept], dtype=float)
    result["audio_sha256"] = np.array([k[4] for k in kept], dtype=object)
    return result, pd.DataFrame(failures, columns=FAILURE_COLUMNS)
