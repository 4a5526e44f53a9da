"""The bundled demo corpus as a spec for tests: with absolute local paths, or uploaded to S3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "flows" / "demo"


def _upload(folder: Path, prefix: str) -> None:
    from tasks.core import storage
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            storage.write_bytes(f"{prefix}/{path.relative_to(folder).as_posix()}", path.read_bytes())


def demo_spec_data(s3_base: str | None = None) -> dict[str, Any]:
    """flows/demo/demo.yaml as a dict whose sources, noise and RIR folders are absolute paths, or,
    with `s3_base` (`s3://bucket[/prefix]`), copies uploaded under `<s3_base>/corpora` and
    `<s3_base>/augment/{noise,rirs}`."""
    data = yaml.safe_load((DEMO / "demo.yaml").read_text())
    augment = data["augment"]
    if s3_base is None:
        for source in data["sources"]:
            source["path"] = str((DEMO / source["path"]).resolve())
        augment["noise_paths"] = [str((DEMO / p).resolve()) for p in augment["noise_paths"]]
        augment["rir_paths"] = [str((DEMO / p).resolve()) for p in augment["rir_paths"]]
        return data
    _upload(DEMO / "sources", f"{s3_base}/corpora")
    _upload(DEMO / "noise", f"{s3_base}/augment/noise")
    _upload(DEMO / "rirs", f"{s3_base}/augment/rirs")
    for source in data["sources"]:
        source["path"] = f"{s3_base}/corpora/{Path(source['path']).name}"
    augment["noise_paths"] = [f"{s3_base}/augment/noise"]
    augment["rir_paths"] = [f"{s3_base}/augment/rirs"]
    return data
