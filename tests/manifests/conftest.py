"""The demo release twice: materialised (the session's in-process demo build) and lazy.

The lazy one is built once per session through the CLI from a copy of flows/demo/demo.yaml with
`augment.materialize: false`, so the two releases differ only in whether the recipes were applied
at build time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.demo_corpus import demo_spec_data
from tests.manifests.release_factory import make_tables, write_release

REPO = Path(__file__).resolve().parents[2]
_BUILT: dict[str, Path] = {}


def _lazy_spec(path: Path) -> Path:
    spec = demo_spec_data()
    spec["augment"]["materialize"] = False
    path.write_text(yaml.safe_dump(spec))
    return path


def _ensure_pool_index(output: Path, spec_path: Path) -> None:
    """Write augment_pools.json as publish does, for a pipeline that does not write it yet."""
    from manifests.io import resolve_release
    from manifests.release import pool_index_uri, write_pool_index
    from tasks.augment import pools as augment
    from tasks.spec import load_spec

    root = resolve_release(str(output)).root
    if Path(pool_index_uri(root)).exists():
        return
    spec = load_spec(spec_path, output=str(output))
    pools = augment.build_pools(spec.augment, spec.seed, str(output / "work" / "augment"))
    write_pool_index(root, pools.rirs, pools.noises)


def build_lazy_release(base: Path) -> Path:
    """The demo with `augment.materialize: false`, built once per process through the CLI."""
    if "lazy" in _BUILT:
        return _BUILT["lazy"]
    lazy_spec = _lazy_spec(base / "lazy.yaml")
    env = {**os.environ, "PREFECT_HOME": str(base / "prefect-lazy"),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "build", str(lazy_spec), "--output", str(base / "lazy")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"building the lazy demo release failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    _ensure_pool_index(base / "lazy", lazy_spec)
    _BUILT["lazy"] = base / "lazy"
    return _BUILT["lazy"]


@pytest.fixture(scope="session")
def demo_releases(tmp_path_factory: pytest.TempPathFactory, demo_release) -> dict[str, Path]:
    """The materialised demo (the session's in-process build, tests/conftest.py) and a lazy twin."""
    spec, _ = demo_release
    return {"materialized": Path(spec.output), "lazy": build_lazy_release(tmp_path_factory.mktemp("demo-lazy"))}


@pytest.fixture(scope="session")
def materialized_release(demo_releases: dict[str, Path]) -> Path:
    return demo_releases["materialized"]


@pytest.fixture(scope="session")
def lazy_release(demo_releases: dict[str, Path]) -> Path:
    return demo_releases["lazy"]


def tone_wav(path: Path, seconds: float = 3.0, sr: int = 22050, channels: int = 2, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    mono = 0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.01 * rng.standard_normal(len(t))
    data = np.stack([mono, 0.5 * mono], axis=1) if channels == 2 else mono
    sf.write(path, data.astype(np.float32), sr)
    return path


@pytest.fixture
def small_release(tmp_path: Path) -> Path:
    """The hand-made release (tests/manifests/release_factory.py) with real 3 s audio (22.05 kHz stereo) behind every row."""
    tables = make_tables()
    uris = {u: str(tone_wav(tmp_path / f"u{i}.wav", seed=i)) for i, u in enumerate(tables["utterances"]["utterance_id"])}
    for name in ("utterances", "asr_stage", "classifier_stage"):
        df = tables[name]
        df["audio_uri"] = df["utterance_id"].map(uris)
        if "source_audio_uri" in df:
            df["source_audio_uri"] = df["audio_uri"]
    write_release(str(tmp_path / "out"), tables)
    return tmp_path / "out"
