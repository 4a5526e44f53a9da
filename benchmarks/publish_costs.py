"""Publish's two measured hot spots on one built release, old way vs new way, in one process.

1. `content_sha256`: the row-by-row reference implementation (kept as the oracle in
   tests/manifests/test_io.py) against `manifests.io.content_sha256`; both digests and the card's are
   printed, so identity is checked on the same tables that are timed.
2. The card's sentiment agreement report: `labelers.agreement_train_max_rows: null` (train on the
   whole train split, the old behaviour) against the spec's cap.

    .venv/bin/python benchmarks/publish_costs.py --release /tmp/vscale/out/human-100000 \
        --spec /tmp/vscale/human-100000.yaml
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, list[float]]:
    """(last result, seconds per call): the best of several is the figure least disturbed by load."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, times


def main() -> None:
    from manifests import io as mio
    from manifests.schema import MANIFEST_NAMES, UTTERANCES
    from tasks.label.sentiment.agreement import agreement_report
    from tasks.spec import load_spec
    from tests.manifests.test_io import _oracle_content_sha256

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--release", required=True, help="a release folder or an output folder with LATEST")
    ap.add_argument("--spec", help="the release's spec (YAML); without it the agreement part is skipped")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    paths = mio.resolve_release(args.release)
    tables = {name: mio.read_manifest(paths.manifest(name)) for name in MANIFEST_NAMES}
    print("tables:", {name: df.shape for name, df in tables.items()})
    card = mio.read_card(paths)["content_sha256"]
    old, t_old = _timed(lambda: _oracle_content_sha256(tables, paths.root), max(1, args.repeat - 1))
    new, t_new = _timed(lambda: mio.content_sha256(tables, paths.root), args.repeat)
    print(f"content_sha256 card {card}")
    print(f"  row loop   {old}  s: {[round(t, 2) for t in t_old]}")
    print(f"  column-wise {new}  s: {[round(t, 2) for t in t_new]}")
    print(f"  identical: {old == new == card}; speed-up best/best x{min(t_old) / min(t_new):.1f}")

    if args.spec:
        spec = load_spec(args.spec)
        cap = spec.labelers.agreement_train_max_rows
        for label, value in (("whole train split", None), (f"cap {cap}", cap)):
            spec.labelers.agreement_train_max_rows = value
            section, times = _timed(lambda: agreement_report(tables[UTTERANCES], spec), 1)
            trained = section.get("trained_model", {})
            f1 = {n: r["overall"]["macro_f1"] for n, r in section.get("labelers", {}).items()}
            print(f"agreement_report, {label}: {times[0]:.1f} s; trained on {trained.get('n_train')}; macro-F1 {f1}")


if __name__ == "__main__":
    main()
