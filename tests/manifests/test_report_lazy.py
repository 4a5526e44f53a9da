"""The report's "augmented" player for a release whose recipes were not materialised.

With `augment.materialize: false` a stage row holds only a recipe; the report renders it through
`manifests.audio_io.RowReader` (as a training job would) into a short WAV next to the page.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from manifests.io import resolve_release
from manifests.release import open_release
from tasks.publish.html import write_report
from tasks.publish.samples import pick_samples


def test_lazy_recipes_are_rendered_for_the_augmented_player(lazy_release: Path, tmp_path: Path) -> None:
    root = Path(resolve_release(str(lazy_release)).root)
    copy = tmp_path / root.name
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("report_audio", "report.html"))
    rows = [s.row for s in pick_samples(open_release(str(copy)), per_group=1)]
    noisy = [r for r in rows if r.get("noise_id") and not r.get("recipe_applied")]
    assert noisy, "the lazy demo should sample rows with a noise recipe"
    page = Path(write_report(str(copy), samples_per_group=1)).read_text()
    row_id = noisy[0]["row_id"]
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in row_id)[:60]
    (clean,) = (copy / "report_audio").glob(f"{safe}-*-clean.wav")
    (augmented,) = (copy / "report_audio").glob(f"{safe}-*-augmented.wav")
    assert f"report_audio/{augmented.name}" in page and f"report_audio/{clean.name}" in page
    a, sr_a = sf.read(augmented, dtype="float32")
    c, sr_c = sf.read(clean, dtype="float32")
    assert sr_a == sr_c == 16000 and len(a) > 0.5 * sr_a
    n = min(len(a), len(c))
    # Noise at the recipe's SNR was added: the two versions differ audibly, not by rounding.
    assert float(np.sqrt(np.mean((a[:n] - c[:n]) ** 2))) > 1e-3
