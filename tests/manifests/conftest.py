"""The demo release twice: materialised (the session's in-process demo build) and lazy.

The lazy one is built once per session, in-process, from a copy of flows/demo/demo.yaml with
`augment.materialize: false`, starting from a copy of the materialised build's label cache: the
two releases have the same labels and differ only in whether the recipes were applied at build
time (and the lazy build labels nothing again, which keeps the default test run fast).
"""

from __future__ import annotations

import shutil
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


def build_lazy_release(base: Path, label_cache: Path | None = None) -> Path:
    """The demo with `augment.materialize: false`, built once per process through the flow.

    `label_cache`: a demo build's `cache/` folder, copied in first so nothing is labelled again.
    """
    if "lazy" in _BUILT:
        return _BUILT["lazy"]
    from flows.build_dataset import build_dataset
    from tasks.spec import load_spec

    lazy_spec = _lazy_spec(base / "lazy.yaml")
    output = base / "lazy"
    if label_cache is not None and label_cache.is_dir():
        shutil.copytree(label_cache, output / "cache")
    build_dataset(load_spec(lazy_spec, output=str(output)))
    _ensure_pool_index(output, lazy_spec)
    _BUILT["lazy"] = output
    return _BUILT["lazy"]


@pytest.fixture(scope="session")
def demo_releases(materialized_release: Path, lazy_release: Path) -> dict[str, Path]:
    """The materialised demo (the session's in-process demo build, tests/conftest.py) and its lazy twin."""
    return {"materialized": materialized_release, "lazy": lazy_release}


@pytest.fixture(scope="session")
def materialized_release(demo_release) -> Path:
    spec, _ = demo_release
    return Path(spec.output)


@pytest.fixture(scope="session")
def lazy_release(tmp_path_factory: pytest.TempPathFactory, materialized_release: Path) -> Path:
    return build_lazy_release(tmp_path_factory.mktemp("demo-lazy"), materialized_release / "cache")


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
