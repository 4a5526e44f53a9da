"""Materialisation (tasks.augment.materialize): FLAC per recipe, resumable, shared, identical across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from manifests.augmentation import Recipe, apply_recipe
from tasks.augment import materialize as augment
from tasks.augment.materialize import materialize
from tasks.augment.pools import build_pools
from tasks.augment.recipes import draw_recipe
from tasks.core.audio import read_audio, write_flac
from tests.tasks.augment.conftest import SR, augment_spec

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def stage_rows(speech_wav, tmp_path, pools, rir_root, noise_root) -> pd.DataFrame:
    """Stage rows for espeak-ng utterances (one cut from a longer file), with train recipes."""
    spec = augment_spec(rir_root, noise_root, p_reverb=0.8, p_noise=0.9)
    a = speech_wav("I am so happy to see you today.", name="src/a.wav")
    b = speech_wav("This is terrible news. I am upset. Nothing works and I want to go home.", name="src/b.wav")
    rows = []
    for utt, path, offset, duration in (("demo/a", a, 0.0, sf.info(a).duration), ("demo/b", b, 1.0, 2.5)):
        for variant in range(4):
            row_id = f"{utt}#{variant}"
            recipe = draw_recipe(13, row_id, "train", spec, pools, duration)
            rows.append({"row_id": row_id, "utterance_id": utt, "source": "demo", "split": "train",
                         "source_audio_uri": str(path), "audio_uri": str(path), "offset_s": offset,
                         "duration_s": duration, "recipe_applied": False, **recipe.to_row()})
    return pd.DataFrame(rows)


def test_materialize_writes_flac_with_exact_length_and_reapplies_identically(stage_rows, pools, tmp_path) -> None:
    out_dir = tmp_path / "audio"
    done, failures = materialize(stage_rows, pools, str(out_dir))
    assert failures.empty and len(done) == len(stage_rows)
    assert list(done.index) == list(stage_rows.index)
    assert done["recipe_applied"].all() and (done["offset_s"] == 0.0).all() and done["gain"].notna().all()
    assert done["rir_id"].notna().any() and done["noise_id"].notna().any()
    for (_, src), (_, out) in zip(stage_rows.iterrows(), done.iterrows(), strict=True):
        clean = read_audio(src["source_audio_uri"], src["offset_s"], src["duration_s"], target_sr=SR)
        info = sf.info(out["audio_uri"])
        assert info.samplerate == SR and info.frames == round(len(clean) / src["speed"])
        assert out["duration_s"] == pytest.approx(info.frames / SR)
        # A training job re-applies the recorded recipe lazily: same audio, same FLAC bytes.
        recipe = Recipe.from_row(out)
        rir = pools.load_rir(recipe.rir_id) if recipe.rir_id else None
        noise = pools.load_noise(recipe.noise_id) if recipe.noise_id else None
        lazy, gain = apply_recipe(clean, SR, recipe, rir, noise)
        assert gain == out["gain"]
        lazy_uri = tmp_path / "lazy.flac"
        write_flac(str(lazy_uri), lazy, SR)
        assert lazy_uri.read_bytes() == Path(out["audio_uri"]).read_bytes()


def test_materialize_resumes_and_shares_files(stage_rows, pools, tmp_path, monkeypatch) -> None:
    out_dir = tmp_path / "audio"
    # The repeated rows also repeat index labels: results must still line up row by row.
    twice = pd.concat([stage_rows, stage_rows.iloc[:2].assign(row_id=lambda d: d["row_id"] + "-copy")])
    first, _ = materialize(twice, pools, str(out_dir))
    assert first["row_id"].tolist() == twice["row_id"].tolist()
    assert first["audio_uri"].iloc[-2:].tolist() == first["audio_uri"].iloc[:2].tolist()  # same variant, one file
    assert len(list(out_dir.glob("*.flac"))) == len(stage_rows)
    assert all(Path(u).name.startswith(("demo_a-", "demo_b-")) for u in first["audio_uri"])

    def refuse(*_args, **_kw):
        raise AssertionError("a finished file was rendered again")

    monkeypatch.setattr(augment, "apply_recipe", refuse)
    second, failures = materialize(twice, pools, str(out_dir))
    assert failures.empty
    pd.testing.assert_frame_equal(first, second)


def test_materialize_reports_bad_rows_and_keeps_the_rest(stage_rows, pools, tmp_path) -> None:
    rows = stage_rows.copy()
    rows.loc[0, "source_audio_uri"] = str(tmp_path / "gone.wav")
    rows.loc[1, ["rir_id", "speed"]] = ["no/such/rir.wav", 1.05]
    rows.loc[2, ["noise_id", "snr_db", "noise_offset_s"]] = [None, None, None]
    done, failures = materialize(rows, pools, str(tmp_path / "audio"))
    assert len(done) == len(rows) - 2
    assert set(failures["row_id"]) == {rows.loc[0, "row_id"], rows.loc[1, "row_id"]}
    by_row = failures.set_index("row_id")
    assert by_row.loc[rows.loc[0, "row_id"], "reason"] == "missing_audio"
    assert "gone.wav" in by_row.loc[rows.loc[0, "row_id"], "detail"]
    assert by_row.loc[rows.loc[1, "row_id"], "reason"] == "missing_audio"
    assert "no/such/rir.wav" in by_row.loc[rows.loc[1, "row_id"], "detail"]
    assert list(failures.columns) == augment.FAILURE_COLUMNS


_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    import pandas as pd
    from tasks.augment.materialize import materialize
    from tasks.augment.pools import build_pools
    from tasks.spec import AugmentSpec
    spec = AugmentSpec(rir_paths=[{rirs!r}], noise_paths=[{noises!r}])
    pools = build_pools(spec, seed=13, work_dir={work!r})
    done, failures = materialize(pd.read_pickle({rows!r}), pools, {out!r})
    assert failures.empty, failures
    print("\\n".join(done["audio_uri"]))
    """
)


def test_identical_bytes_across_processes(stage_rows, rir_root, noise_root, tmp_path) -> None:
    rows_path = tmp_path / "rows.pkl"
    stage_rows.to_pickle(rows_path)
    uris = []
    for k in range(2):
        script = _CHILD.format(repo=str(REPO), rirs=str(rir_root), noises=str(noise_root),
                               work=str(tmp_path / f"work{k}"), rows=str(rows_path), out=str(tmp_path / f"out{k}"))
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        uris.append(result.stdout.split())
    assert len(uris[0]) == len(stage_rows)
    for a, b in zip(*uris, strict=True):
        assert Path(a).name == Path(b).name and Path(a).parent != Path(b).parent
        assert Path(a).read_bytes() == Path(b).read_bytes()


def test_materialised_names_do_not_depend_on_the_output_folder(speech_wav, noise_root, tmp_path) -> None:
    """Simulated rooms live under <output>/work/augment: their absolute path must not name the file
    (it did, so two builds into two folders published different file names and content_sha256)."""
    spec = augment_spec(None, noise_root, simulate_rirs=3, p_reverb=1.0, p_noise=0.0)
    clip = speech_wav("The weather is nice today.", name="src/w.wav")
    names = []
    for output in ("first-output", "elsewhere/second-output"):
        pools = build_pools(spec, seed=13, work_dir=str(tmp_path / output / "work" / "augment"))
        recipe = draw_recipe(13, "demo/w#0", "train", spec, pools, sf.info(clip).duration)
        assert recipe.rir_id in pools.rirs
        row = {"row_id": "demo/w#0", "utterance_id": "demo/w", "source": "demo", "split": "train",
               "source_audio_uri": str(clip), "audio_uri": str(clip), "offset_s": 0.0,
               "duration_s": sf.info(clip).duration, "recipe_applied": False, **recipe.to_row()}
        done, failures = materialize(pd.DataFrame([row]), pools, str(tmp_path / output / "work" / "audio"))
        assert failures.empty
        names.append(Path(done["audio_uri"].iloc[0]).name)
    assert names[0] == names[1]


def test_a_source_file_replaced_under_its_name_gets_a_new_materialised_file(speech_wav, noise_root, tmp_path) -> None:
    """The materialised name hashed the source's path, not its bytes: a clip re-recorded under the same
    name reused the stale augmented audio. The segment key (the source's sha256) now names it too."""
    from tasks.augment.materialize import content_name

    spec = augment_spec(None, noise_root, simulate_rirs=2, p_reverb=1.0, p_noise=0.0)
    clip = speech_wav("The weather is nice today.", name="src/w.wav")
    pools = build_pools(spec, seed=13, work_dir=str(tmp_path / "work" / "augment"))
    recipe = draw_recipe(13, "demo/w#0", "train", spec, pools, sf.info(clip).duration)
    row = pd.Series({"utterance_id": "demo/w", "source_audio_uri": str(clip), "offset_s": 0.0,
                     "duration_s": sf.info(clip).duration, "segment_key": "aaaa:0.000:full"})
    before = content_name(row, recipe, pools, 16000)
    assert content_name(row.copy(), recipe, pools, 16000) == before
    assert content_name(row.copy().replace("aaaa:0.000:full", "bbbb:0.000:full"), recipe, pools, 16000) != before
