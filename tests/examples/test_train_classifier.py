"""The example training loop runs 3 real steps on the demo release and reports finite losses."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_train_classifier_runs_three_steps(materialized_release: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_classifier.py"), str(materialized_release),
         "--steps", "3", "--batch-size", "4", "--workers", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == 3
    losses = [float(line.split("loss ")[1].split()[0]) for line in steps]
    assert all(math.isfinite(x) and x > 0 for x in losses)
    assert "done: 3 steps" in proc.stdout
