"""Fixtures shared by the process-level flow tests (resume, Dask, release identity)."""

from __future__ import annotations

import pytest

from manifests.io import read_card, resolve_release
from tests.flows.buildutil import demo_spec_file, run_build, seed_language_cache

SMALL_SHARDS = 8  # 63 demo utterances -> 8 shards: kills land between shards, Dask gets several tasks
# (used as run.part_rows too: one labelling shard per plan shard, so the release has 8 parts)
# What a Dask worker process runs with; set for the reference build too (tests/flows/test_release_identity.py).
ONE_THREAD = dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"), "1")


@pytest.fixture(scope="session")
def small_shard_reference(tmp_path_factory, demo_release):
    """An uninterrupted `voicetone build` of the demo in one process, with small shards and one native
    thread (ONE_THREAD): the release the resume and Dask builds must equal. One build serves three
    tests: test_release_identity checks that it equals the default in-process demo build
    (default shard size and threads), so it is also the single-thread build issue 14 asks for.

    It starts from the demo build's language-identification cache (`seed_language_cache`), as the
    resume and Dask builds do: language identification was most of this build's time, and its
    independence of the thread environment is checked on its own, every probability to the last digit
    (tests/tasks/label/transcripts/test_whisper.py::test_thread_environment_does_not_change_transcripts_scores_or_languages).
    Transcripts, speech detection, sentiment and augmentation are computed here under ONE_THREAD."""
    folder = tmp_path_factory.mktemp("small-shard-reference")
    spec = demo_spec_file(folder, "spec.yaml", shard_size=SMALL_SHARDS, part_rows=SMALL_SHARDS)
    seed_language_cache(demo_release[0].output, folder / "out")
    run_build(spec, folder / "out", folder / "prefect-home", env=ONE_THREAD)
    paths = resolve_release(str(folder / "out"))
    return {**read_card(paths), "release_root": paths.root}  # the card, and where its release lies
