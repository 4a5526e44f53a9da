"""Reader throughput: five-second classifier windows per second through a DataLoader.

Materialised (recipe already in the FLAC) vs lazy (speed, reverb, noise applied per item from the
clean source), with 0 and 2 workers, on the demo release's train windows drawn with replacement.
The steady-state rate leaves out the first batch (worker start-up, imports); the CPU column is the
main process plus its workers (user + sys), which is what a training loop on the same 2 cores
would compete with.

    .venv/bin/python benchmarks/reader.py --materialized out/voicetone-demo --lazy out/voicetone-demo-lazy

The lazy release is the demo spec with `augment.materialize: false` (see docs/training.md); both
need a built release (and the lazy one its manifests/augment_pools.json).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS/FFT thread per worker, as a training job would

import torch  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler  # noqa: E402

from manifests.dataset import ClassifierDataset, collate_pad  # noqa: E402


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(release: str, workers: int, samples: int, batch_size: int) -> dict[str, float]:
    """Samples/s after the first batch, the total wall time, and CPU seconds per sample."""
    torch.set_num_threads(1)
    data = ClassifierDataset(release, split="train")
    sampler = RandomSampler(data, replacement=True, num_samples=samples, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_pad,
                        persistent_workers=False)
    start, cpu0 = time.perf_counter(), _cpu_s()
    first = None
    seen = after_first = 0
    for batch in loader:
        n = len(batch["target"])
        assert batch["waveform"].shape[1] == 5 * 16000
        seen += n
        if first is None:
            first = time.perf_counter()
        else:
            after_first += n
    end = time.perf_counter()
    return {"samples": seen, "steady_per_s": after_first / (end - first), "total_s": end - start,
            "cpu_ms_per_sample": 1000 * (_cpu_s() - cpu0) / seen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--materialized", required=True)
    parser.add_argument("--lazy", required=True)
    parser.add_argument("--samples", type=int, default=1600)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="best of N (the machine is shared)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print("| release | workers | samples/s (steady) | total s | CPU ms / sample |")
    print("|---|---|---|---|---|")
    for name, release in (("materialised", args.materialized), ("lazy", args.lazy)):
        for workers in (0, 2):
            runs = [measure(release, workers, args.samples, args.batch_size) for _ in range(args.rounds)]
            best = max(runs, key=lambda r: r["steady_per_s"])
            print(f"| {name} | {workers} | {best['steady_per_s']:.0f} | {best['total_s']:.1f} | "
                  f"{best['cpu_ms_per_sample']:.1f} |", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
