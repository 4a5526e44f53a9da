"""RIR and noise pools for augmentation: find the files, probe them, split each ~80/20 into train and eval.

RIR and noise files are found below the spec's folders (any layout: RIRS_NOISES, MUSAN, a flat
folder); a file's id is its path relative to its folder, so ids are stable across machines. Each pool
is split ~80/20 into a train and an eval pool by a hash of the id, so no RIR or noise file is heard in
both training and evaluation. Without RIR folders, ``simulate_rirs`` rooms (`tasks.augment.rooms`) are
used. Layout rules (``rir_exclusion``, ``noise_exclusion``) keep RIRS_NOISES noises out of the RIR
pool, its RIRs out of the noise pool, and MUSAN ``speech/`` out of the noise pool unless it is named
itself. The plan builds the pools once and saves them (`AugmentPools.to_json`); augment and publish
load that file (`tasks.augment.noise_pool.load_pools`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from manifests import uri as fs
from manifests.augmentation import load_noise, load_rir
from tasks.augment.rooms import simulate_rirs
from tasks.core import storage
from tasks.spec import AugmentSpec

SR = 16000
EVAL_SHARE = 0.2  # share of RIR/noise files held out for dev/test augmentation
MAX_RIR_S = 4.0  # longer "RIR" files are noise recordings or mistakes
RIR_SUFFIXES: tuple[str, ...] = (".wav", ".flac")
NOISE_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".mp3")
CACHE_BYTES = 256 << 20  # in-memory LRU of loaded RIR/noise arrays


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
    noise_speakers: dict[str, list[str]] = field(default_factory=dict)  # babble id -> its talkers (tasks/augment/noise_pool.py)
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
        root_name = fs.basename(root.rstrip("/"))
        for uri in fs.list_files(root, suffixes=suffixes):
            name = fs.basename(uri)
            if name.startswith("._") or name.startswith("."):
                continue  # macOS resource forks and hidden files
            rel = fs.relative_to(uri, root) if uri != root else name
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
    stats = {u: list(_stat(u)) for u in sorted(uris.values()) if not fs.is_s3(u)}
    key = hashlib.sha256(json.dumps([kind, sorted(uris.items()), stats]).encode()).hexdigest()[:20]
    cache_uri = fs.join(work_dir, "pools", f"{kind}-{key}.json")
    if fs.exists(cache_uri):
        cached = json.loads(fs.read_text(cache_uri))
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
    fs.write_text(cache_uri, json.dumps({"durations": durations, "skipped": skipped}, sort_keys=True))
    return durations, skipped


def build_pools(spec: AugmentSpec, seed: int, work_dir: str) -> AugmentPools:
    """Find (or simulate) RIRs and find noises, probe them, and split each ~80/20 into train/eval."""
    rir_uris, excluded = _find_files(spec.rir_paths, RIR_SUFFIXES, rir_exclusion)
    if not spec.rir_paths and spec.simulate_rirs > 0:
        rir_uris = simulate_rirs(spec.simulate_rirs, seed, fs.join(work_dir, "simulated_rirs"))
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

        noises, noise_durations = synthetic_noises(seed, fs.join(work_dir, "default_noise"))
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
