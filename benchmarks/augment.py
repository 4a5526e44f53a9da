"""Augmentation throughput: one chain, four engines, the same audio, one core each, in one run.

The chain is speed 1.05 (pitch moves, as sox ``speed``), convolution with a 0.5 s room impulse
response, and noise (a 10 s clip, looped) at a drawn SNR. Engines:

- ``ours``: ``manifests.augmentation.apply_recipe`` (RIR and noise arrays cached, as the pools do).
- ``lhotse``: ``Recording -> Cut.perturb_speed -> reverb_rir -> mix`` (one ``mix`` per noise-clip
  length, as ``CutSet.mix`` fills a cut), then ``load_audio``.
- ``lhotse-1mix``: lhotse's best case: the noise clip pre-looped into one file longer than the
  speech, so a single ``mix`` (its decode is lhotse's cost; the others loop the clip themselves).
- ``audiomentations``: ``Compose([Resample(15238 Hz), ApplyImpulseResponse, AddBackgroundNoise])``.
  It has no speed effect; resampling 16 kHz audio to 16000/1.05 Hz and keeping the 16 kHz label is
  the same operation (``TimeStretch`` would keep the pitch, a different effect). Its IR is not
  aligned on the direct path and its SNR is over the whole signal.
- ``torchaudio``: ``functional.speed`` + ``fftconvolve`` + ``add_noise`` (noise tiled), the naive chain.

Every engine starts from the speech WAV path and ends with a float array. Each (engine, duration)
runs in its own subprocess with one thread (OMP/MKL/OPENBLAS_NUM_THREADS=1 set before imports,
``torch.set_num_threads(1)``); engines are interleaved over several rounds and the best time is
kept, because the machine is shared. ``--scaling`` adds 1 vs 2 worker processes for ours and lhotse;
``--hour`` measures ours on a 1-hour recording (time and peak RSS).

    .venv/bin/python benchmarks/augment.py --rounds 3 --scaling --hour
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SR = 16000
SPEED = 1.05
NOISE_OFFSET_S = 2.0
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
ENGINES = ("ours", "lhotse", "lhotse-1mix", "audiomentations", "torchaudio")
SENTENCES = (
    "The weather is lovely and I am very happy today.",
    "This is terrible news, I am upset and nothing works.",
    "Please send the quarterly report to the finance team before noon.",
    "We walked along the river and talked about the summer holidays.",
    "I cannot believe how long the queue at the station was this morning.",
)


def _snr() -> float:
    """The drawn SNR, the same for every engine."""
    import numpy as np

    return float(np.random.default_rng(7).uniform(0.0, 15.0))


# --------------------------------------------------------------------------------------- inputs
def make_inputs(folder: Path, durations: list[int]) -> dict[str, Path]:
    """espeak-ng speech at 16 kHz (PCM16 WAV) of each duration, a 0.5 s RIR and a 10 s noise clip."""
    import numpy as np
    import soundfile as sf

    sys.path.insert(0, str(REPO))
    from manifests.augmentation import resample
    from tasks.augment.rooms import simulate_rir

    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed to make the benchmark speech")
    pieces = []
    for i, text in enumerate(SENTENCES):
        wav = folder / f"sentence{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), text], check=True,
                       capture_output=True, timeout=60)
        data, rate = sf.read(wav, dtype="float32")
        pieces += [resample(data, rate, SR), np.zeros(SR // 4, np.float32)]
    base = np.concatenate(pieces)
    paths: dict[str, Path] = {}
    for d in durations:
        n = d * SR
        paths[f"speech{d}"] = folder / f"speech{d}.wav"
        sf.write(paths[f"speech{d}"], np.tile(base, n // len(base) + 1)[:n], SR, subtype="PCM_16")
    rir, _ = simulate_rir(np.random.default_rng(3))
    rir = np.concatenate([np.zeros(int(0.01 * SR), np.float32), rir])  # 10 ms pre-delay
    rir = np.pad(rir, (0, max(0, SR // 2 - len(rir))))[: SR // 2]
    paths["rir"] = folder / "rir.wav"
    sf.write(paths["rir"], rir, SR, subtype="FLOAT")
    white = np.random.default_rng(4).standard_normal(10 * SR)
    pink = np.cumsum(white) * 0.002
    pink -= np.convolve(pink, np.ones(400) / 400, mode="same")  # brown noise, high-passed
    paths["noise"] = folder / "noise.wav"
    clip = (0.3 * pink / np.max(np.abs(pink))).astype(np.float32)
    sf.write(paths["noise"], clip, SR, subtype="PCM_16")
    long_n = (max(durations) + 10) * SR  # for lhotse-1mix: the clip looped past the longest speech
    sf.write(folder / "noise_long.wav", np.tile(clip, long_n // len(clip) + 1)[:long_n], SR, subtype="PCM_16")
    return paths


# -------------------------------------------------------------------------------------- engines
def build_engine(name: str, rir_path: str, noise_path: str) -> Any:
    """A function path -> augmented float array, with the engine's own caching of RIR and noise."""
    snr = _snr()
    if name == "ours":
        import soundfile as sf

        from manifests.augmentation import Recipe, apply_recipe, load_noise, load_rir

        rir, noise = load_rir(rir_path), load_noise(noise_path)
        recipe = Recipe(speed=SPEED, rir_id="rir", noise_id="noise", noise_offset_s=NOISE_OFFSET_S, snr_db=snr)

        def ours(path: str) -> Any:
            audio, rate = sf.read(path, dtype="float32")
            return apply_recipe(audio, rate, recipe, rir, noise)[0]

        return ours
    if name == "lhotse-1mix":  # lhotse's best case: one noise file longer than the speech, one mix
        from lhotse import Recording

        rir_rec = Recording.from_file(rir_path)
        long_cut = Recording.from_file(str(Path(noise_path).with_name("noise_long.wav"))).to_cut()

        def lhotse_1mix(path: str) -> Any:
            cut = Recording.from_file(path).to_cut().perturb_speed(SPEED).reverb_rir(rir_rec)
            noise = long_cut.truncate(offset=NOISE_OFFSET_S, duration=cut.duration)
            return cut.mix(noise, snr=snr).load_audio()[0]

        return lhotse_1mix
    if name == "lhotse":
        from lhotse import Recording

        rir_rec, noise_rec = Recording.from_file(rir_path), Recording.from_file(noise_path)
        noise_cut = noise_rec.to_cut()

        def lhotse(path: str) -> Any:
            cut = Recording.from_file(path).to_cut().perturb_speed(SPEED).reverb_rir(rir_rec)
            mixed, pos, offset = cut, 0.0, NOISE_OFFSET_S
            while pos < cut.duration - 1e-6:  # loop the clip, as CutSet.mix fills a cut
                take = min(noise_cut.duration - offset, cut.duration - pos)
                mixed = mixed.mix(noise_cut.truncate(offset=offset, duration=take), offset_other_by=pos, snr=snr)
                pos, offset = pos + take, 0.0
            return mixed.load_audio()[0]

        return lhotse
    if name == "audiomentations":
        import soundfile as sf
        from audiomentations import AddBackgroundNoise, ApplyImpulseResponse, Compose, Resample

        rate_out = round(SR / SPEED)
        chain = Compose([
            Resample(min_sample_rate=rate_out, max_sample_rate=rate_out, p=1.0),
            ApplyImpulseResponse(ir_path=rir_path, p=1.0, leave_length_unchanged=True),
            AddBackgroundNoise(sounds_path=noise_path, min_snr_db=snr, max_snr_db=snr, p=1.0),
        ])

        def audiomentations(path: str) -> Any:
            audio, rate = sf.read(path, dtype="float32")
            return chain(samples=audio, sample_rate=rate)

        return audiomentations
    if name == "torchaudio":
        import soundfile as sf
        import torch
        import torchaudio.functional as F

        rir = torch.from_numpy(sf.read(rir_path, dtype="float32")[0])[None]
        noise = torch.from_numpy(sf.read(noise_path, dtype="float32")[0])
        snr_t = torch.tensor([snr])

        def torchaudio(path: str) -> Any:
            audio = torch.from_numpy(sf.read(path, dtype="float32")[0])[None]
            fast, _ = F.speed(audio, SR, SPEED)
            wet = F.fftconvolve(fast, rir)[..., : fast.shape[-1]]
            n = wet.shape[-1]
            start = int(NOISE_OFFSET_S * SR)
            tiled = noise.roll(-start).repeat(n // len(noise) + 1)[:n][None]
            return F.add_noise(wet, tiled, snr_t)[0].numpy()

        return torchaudio
    raise ValueError(f"unknown engine {name!r}")


def _single_thread() -> None:
    """One thread everywhere; torch only when an engine imported it (ours never loads torch)."""
    for var in THREAD_VARS:
        os.environ[var] = "1"
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -------------------------------------------------------------------------------------- children
def child_time(engine: str, speech: str, rir: str, noise: str, reps: int) -> dict[str, Any]:
    """Warm up once, then time `reps` runs of the whole chain."""
    _single_thread()
    run = build_engine(engine, rir, noise)
    _single_thread()
    out = run(speech)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        out = run(speech)
        times.append(time.perf_counter() - start)
    return {"times": times, "out_len": int(out.shape[-1]), "rss_mb": _rss_mb()}


_RUN: Any = None


def _pool_init(engine: str, speech: str, rir: str, noise: str, ready: Any) -> None:
    """Build the engine in each worker and run it once, so timed jobs find every worker warm."""
    global _RUN
    _single_thread()
    _RUN = build_engine(engine, rir, noise)
    _single_thread()
    _RUN(speech)
    with ready.get_lock():
        ready.value += 1


def _pool_job(speech: str) -> int:
    return int(_RUN(speech).shape[-1])


def child_scale(engine: str, speech: str, rir: str, noise: str, workers: int, jobs: int) -> dict[str, Any]:
    """Wall time of `jobs` chains on `workers` warm worker processes (fork, one thread each)."""
    import multiprocessing as mp

    _single_thread()
    ctx = mp.get_context("fork")
    ready = ctx.Value("i", 0)
    with ctx.Pool(workers, initializer=_pool_init, initargs=(engine, speech, rir, noise, ready)) as pool:
        while ready.value < workers:  # every worker built and warm
            time.sleep(0.05)
        start = time.perf_counter()
        pool.map(_pool_job, [speech] * jobs, chunksize=1)
        return {"wall": time.perf_counter() - start}


def child_hour(speech600: str, rir: str, noise: str) -> dict[str, Any]:
    """Ours on 1 hour of audio: time and peak RSS before/after (ru_maxrss, MiB)."""
    _single_thread()
    import numpy as np
    import soundfile as sf

    from manifests.augmentation import Recipe, apply_recipe, load_noise, load_rir

    rir_a, noise_a = load_rir(rir), load_noise(noise)
    recipe = Recipe(speed=SPEED, rir_id="rir", noise_id="noise", noise_offset_s=NOISE_OFFSET_S, snr_db=_snr())
    apply_recipe(sf.read(speech600, dtype="float32")[0][: 10 * SR], SR, recipe, rir_a, noise_a)  # warm up
    base = _rss_mb()
    audio = np.tile(sf.read(speech600, dtype="float32")[0], 6)
    loaded = _rss_mb()
    start = time.perf_counter()
    out, _ = apply_recipe(audio, SR, recipe, rir_a, noise_a)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "base_mb": base, "loaded_mb": loaded, "peak_mb": _rss_mb(),
            "input_mb": audio.nbytes / 2**20, "output_mb": out.nbytes / 2**20, "audio_s": len(audio) / SR}


def _spawn(args: list[str]) -> dict[str, Any]:
    env = dict(os.environ, **{v: "1" for v in THREAD_VARS})
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONWARNINGS"] = "ignore"
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env,
                            timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"child {args[:3]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--durations", type=int, nargs="+", default=[60, 600], help="speech lengths (s)")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best time is kept")
    parser.add_argument("--scaling", action="store_true", help="1 vs 2 worker processes (ours, lhotse)")
    parser.add_argument("--scaling-jobs", type=int, default=12, help="60 s chains per scaling run")
    parser.add_argument("--hour", action="store_true", help="ours on a 1-hour recording: time and peak RSS")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "time":
            engine, speech, rir, noise, reps = rest
            print(json.dumps(child_time(engine, speech, rir, noise, int(reps))))
        elif kind == "scale":
            engine, speech, rir, noise, workers, jobs = rest
            print(json.dumps(child_scale(engine, speech, rir, noise, int(workers), int(jobs))))
        else:
            print(json.dumps(child_hour(*rest)))
        return

    folder = Path(tempfile.mkdtemp(prefix="voicetone-augbench-"))
    try:
        durations = sorted(set(args.durations) | ({600} if args.hour else set()))
        paths = {k: str(v) for k, v in make_inputs(folder, durations).items()}
        best: dict[tuple[str, int], float] = {}
        info: dict[tuple[str, int], dict[str, Any]] = {}
        for _ in range(args.rounds):
            for d in args.durations:
                reps = max(1, min(5, 300 // d))
                for engine in args.engines:
                    res = _spawn(["--child", "time", engine, paths[f"speech{d}"], paths["rir"], paths["noise"],
                                  str(reps)])
                    key = (engine, d)
                    best[key] = min(best.get(key, float("inf")), min(res["times"]))
                    info[key] = res
        print(f"## speed {SPEED} + 0.5 s RIR + noise at {_snr():.2f} dB SNR; one thread per engine; "
              f"best of {args.rounds} rounds\n")
        print("| audio | engine | best time (ms) | x real time per core | ours vs engine (throughput ratio) "
              "| output samples | peak RSS (MiB) |")
        print("|---|---|---|---|---|---|---|")
        for d in args.durations:
            for engine in args.engines:
                t = best[(engine, d)]
                ratio = t / best[("ours", d)] if ("ours", d) in best else float("nan")
                print(f"| {d} s | {engine} | {t * 1000:.1f} | {d / t:,.0f} | "
                      f"{'1.00 (ours)' if engine == 'ours' else f'{ratio:.2f}x'} | {info[(engine, d)]['out_len']} "
                      f"| {info[(engine, d)]['rss_mb']:.0f} |")
        if args.scaling:
            print(f"\n## {args.scaling_jobs} chains of 60 s, process pool\n")
            print("| engine | 1 worker (x real time) | 2 workers (x real time) | speed-up |")
            print("|---|---|---|---|")
            for engine in ("ours", "lhotse"):
                walls = {}
                for workers in (1, 2):
                    walls[workers] = min(
                        _spawn(["--child", "scale", engine, paths["speech60"], paths["rir"], paths["noise"],
                                str(workers), str(args.scaling_jobs)])["wall"]
                        for _ in range(max(1, args.rounds - 1))
                    )
                audio = 60.0 * args.scaling_jobs
                print(f"| {engine} | {audio / walls[1]:,.0f} | {audio / walls[2]:,.0f} | {walls[1] / walls[2]:.2f}x |")
        if args.hour:
            res = _spawn(["--child", "hour", paths["speech600"], paths["rir"], paths["noise"]])
            print("\n## 1-hour recording, ours\n")
            print(f"- {res['audio_s']:.0f} s of audio in {res['seconds']:.2f} s "
                  f"({res['audio_s'] / res['seconds']:,.0f}x real time)")
            print(f"- peak RSS {res['base_mb']:.0f} MiB before the audio, {res['loaded_mb']:.0f} MiB with the "
                  f"{res['input_mb']:.0f} MiB float32 input loaded, {res['peak_mb']:.0f} MiB after apply_recipe: "
                  f"+{res['peak_mb'] - res['loaded_mb']:.0f} MiB for a {res['output_mb']:.0f} MiB output")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
