"""Peak memory and CPU of the finishing publish step's pieces, one piece per process, on a release.

Why: the finishing `publish` task runs these one after another in one worker process (which keeps
its high-water mark), so its peak is set by the largest piece. Run each piece on a large release
(e.g. the 10 M planning-scale release, benchmarks/plan_scale.py) to see which one:

    PYTHONPATH=. python benchmarks/finish_costs.py aggregates --aggregates OUT/work/publish/REL/aggregates
    PYTHONPATH=. python benchmarks/finish_costs.py validate --release OUT/releases/REL
    PYTHONPATH=. python benchmarks/finish_costs.py report --release OUT/releases/REL

`aggregates` merges the parts' partial aggregates as publish does and recounts the segment keys for
the card; `validate` is `validate_release`; `report` writes report.html (part by part).
"""

from __future__ import annotations

import argparse
import glob
import json
import resource
import threading
import time
from pathlib import Path

import psutil


def _sampler(peak: list[int]) -> None:
    me = psutil.Process()
    while True:
        peak[0] = max(peak[0], me.memory_info().rss)
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("piece", choices=["aggregates", "validate", "report"])
    ap.add_argument("--release", type=Path, help="a release folder (validate, report)")
    ap.add_argument("--aggregates", type=Path, help="work/publish/<release>/aggregates (aggregates)")
    args = ap.parse_args()
    peak = [0]
    threading.Thread(target=_sampler, args=(peak,), daemon=True).start()
    t0, c0 = time.perf_counter(), time.process_time()
    if args.piece == "aggregates":
        from tasks.publish.card_sections import leakage_section
        from tasks.publish.step import merged_aggregates

        agg = merged_aggregates(sorted(glob.glob(str(args.aggregates / "part-*.json"))))
        print("merged:", round(time.process_time() - c0, 1), "CPU s,", round(peak[0] / 2**20), "MB")
        leak = leakage_section(agg)
        print({k: leak[k] for k in ("segment_keys_in_two_splits", "segment_keys_repeated")})
    elif args.piece == "validate":
        from manifests.validate import validate_release

        report = validate_release(str(args.release))
        print("valid:", report.ok, report.problems[:3])
    else:
        from tasks.publish import html as report_html

        print(report_html.write_report(str(args.release)))
    print(json.dumps({"piece": args.piece, "wall_s": round(time.perf_counter() - t0, 1),
                      "cpu_s": round(time.process_time() - c0, 1), "peak_rss_mb": round(peak[0] / 2**20),
                      "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


if __name__ == "__main__":
    main()
