"""CPU cost of two per-row checks, each beside the code it replaced, in one run (issue #16's throughput).

- PII: `tasks.plan.pii.detect_local` (with the `may_hold_pii` shortcut) against `detect_all` (every
  detector, the previous behaviour), per distinct transcript of a planning-scale corpus's item shards
  (benchmarks/plan_scale.py writes them) and of the real labelled text under ../shared/data/real.
- Validation: one release's per-part checks (`manifests.validate_part.check_part`) with the column-wise
  window check against the same with every utterance through the per-utterance rule (the previous
  behaviour: `_clear_passes` answering "not clear" for all).

    PYTHONPATH=. .venv/bin/python benchmarks/check_costs.py --items /tmp/s5ps/corpus/n20000-s500 --release <output-or-release>
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REAL = REPO.parent / "shared" / "data" / "real"


def _cpu(fn, repeat: int = 3) -> float:
    """Best process CPU seconds of `repeat` calls."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def pii_costs(items: Path | None) -> list[tuple[str, int, float, float, float]]:
    from tasks.plan import pii

    sets: list[tuple[str, list[str]]] = []
    if items:
        files = sorted(items.rglob("*.items.parquet"))[:40]
        frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        sets.append((f"{items.name} transcripts ({len(files)} shards)", [t for t in dict.fromkeys(pii._texts(frame)) if t]))
    real: list[str] = []
    for path in sorted((REAL / "text_sentiment").glob("*_labelled.txt")):
        real += [line.rsplit("\t", 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    meld = REAL / "meld" / "test_sent_emo.csv"
    if meld.is_file():
        with meld.open(encoding="utf-8") as f:
            real += [row["Utterance"] for row in csv.DictReader(f)]
    if real:
        sets.append(("real labelled text (shared/data/real)", real))
    out = []
    for name, texts in sets:
        skipped = sum(not pii.may_hold_pii(t) for t in texts)
        new = _cpu(lambda texts=texts: [pii.detect_local(t) for t in texts])
        old = _cpu(lambda texts=texts: [pii.detect_all(t) for t in texts])
        out.append((name, len(texts), skipped / len(texts), old / len(texts) * 1e6, new / len(texts) * 1e6))
    return out


def validate_costs(release: str) -> tuple[int, float, float]:
    from manifests import validate_rows
    from manifests.io import read_card, resolve_release
    from manifests.validate import ValidationReport, _part_indexes, _release_name
    from manifests.validate_part import check_part

    paths = resolve_release(release)
    card = read_card(paths)
    layout = paths.layout()
    indexes = _part_indexes(paths, layout, card, ValidationReport(release=paths.root))
    name = _release_name(card, paths)

    def run() -> None:
        for i in indexes:
            part = check_part(paths.root, i, card, layout, len(indexes), release_name=name)
            assert not part.problems, part.problems[:3]

    new = _cpu(run)
    with mock.patch.object(validate_rows, "_clear_passes", lambda groups, *a: np.zeros(len(groups), dtype=bool)):
        old = _cpu(run)
    return len(indexes), old, new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=Path, help="a plan_scale corpus folder (its *.items.parquet shards)")
    ap.add_argument("--release", help="a release (or output folder) to validate")
    args = ap.parse_args()
    print("| texts | n | skipped by the shortcut | every detector, us per text | with the shortcut | ratio |")
    print("|---|---|---|---|---|---|")
    for name, n, share, old, new in pii_costs(args.items):
        print(f"| {name} | {n:,} | {share:.0%} | {old:.1f} | {new:.1f} | {old / new:.1f}x |")
    if args.release:
        parts, old, new = validate_costs(args.release)
        print("\n| release | parts | check_part CPU s, per-utterance windows | column-wise windows | ratio |")
        print("|---|---|---|---|---|")
        print(f"| {args.release} | {parts} | {old:.2f} | {new:.2f} | {old / new:.2f}x |")


if __name__ == "__main__":
    main()
