import datetime
import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from manifests import io as mio
from manifests.schema import (
    ASR_STAGE,
    CLASSIFIER_STAGE,
    ID_COLUMNS,
    MANIFEST_NAMES,
    REJECTS,
    TIMING_FIELDS,
    UTTERANCES,
    UTTERANCES_SCHEMA,
)
from tests.manifests.release_factory import make_tables, write_release


def test_writer_casts_to_contract_and_tags_schema_version(tmp_path):
    tables = make_tables()
    uri = str(tmp_path / "utterances.parquet")
    mio.write_manifest(tables[UTTERANCES].assign(extra_col=1), UTTERANCES, uri)
    table = pq.read_table(uri)
    assert table.schema.metadata[b"voicetone.schema_version"] == b"1"
    for field in UTTERANCES_SCHEMA:
        assert table.schema.field(field.name).type == field.type
    assert "extra_col" in table.schema.names  # the contract allows added columns
    back = mio.read_manifest(uri)
    assert back["utterance_id"].tolist() == tables[UTTERANCES]["utterance_id"].tolist()
    assert back["gender"].isna().all()  # absent optional columns are written as nulls


def test_reader_refuses_other_schema_versions(tmp_path):
    uri = str(tmp_path / "x.parquet")
    table = mio.to_arrow(make_tables()[UTTERANCES], UTTERANCES)
    meta = dict(table.schema.metadata)
    meta[b"voicetone.schema_version"] = b"3"  # versions 1 and 2 are readable
    pq.write_table(table.replace_schema_metadata(meta), uri)
    with pytest.raises(mio.ManifestError, match="schema version 3"):
        mio.read_manifest(uri)


def test_writer_names_the_column_it_cannot_store(tmp_path):
    bad = make_tables()[UTTERANCES].assign(duration_s="three seconds")
    with pytest.raises(mio.ManifestError, match="utterances.duration_s"):
        mio.write_manifest(bad, UTTERANCES, str(tmp_path / "u.parquet"))


def test_content_hash_ignores_row_order_release_name_and_timing(tmp_path):
    a = write_release(str(tmp_path / "a"), release="20260101T000000Z")
    tables = make_tables()
    tables[ASR_STAGE] = tables[ASR_STAGE].iloc[::-1].assign(processing_time_s=1.23)
    b = write_release(str(tmp_path / "b"), tables=tables, release="20270101T000000Z")
    ha = mio.content_sha256({n: mio.read_manifest(a.manifest(n)) for n in MANIFEST_NAMES}, a.root)
    hb = mio.content_sha256({n: mio.read_manifest(b.manifest(n)) for n in MANIFEST_NAMES}, b.root)
    assert ha == hb
    tables[UTTERANCES].loc[0, "transcript"] = "changed"
    c = write_release(str(tmp_path / "c"), tables=tables)
    hc = mio.content_sha256({n: mio.read_manifest(c.manifest(n)) for n in MANIFEST_NAMES}, c.root)
    assert hc != ha


def test_latest_resolution(tmp_path):
    paths = write_release(str(tmp_path))
    assert mio.resolve_release(str(tmp_path)).root == paths.root
    assert mio.resolve_release(paths.root).root == paths.root
    tables = mio.read_release(str(tmp_path))
    assert set(tables) == set(MANIFEST_NAMES)
    with pytest.raises(mio.ManifestError, match="neither a release folder"):
        mio.resolve_release(str(tmp_path / "nothing"))


def test_s3_round_trip(moto_server, s3_bucket):
    output = f"s3://{s3_bucket}/datasets/demo"
    paths = write_release(output)
    assert paths.root.startswith("s3://")
    tables = mio.read_release(output)
    assert len(tables[UTTERANCES]) == 6
    assert isinstance(tables[ASR_STAGE], pd.DataFrame)


# ---------------------------------------------------------------- content hash: column-wise == row loop
#
# The row-by-row implementation that defined content_sha256 before it was vectorised, kept verbatim
# as the oracle: the column-wise `mio.table_digest` must produce the same bytes for every input this
# accepts (and fail where it fails), or every published release would change identity.


def _oracle_canonical(value, release_root):
    if isinstance(value, list | tuple) or type(value).__name__ == "ndarray":
        return [_oracle_canonical(v, release_root) for v in list(value)]
    if mio._is_null(value):
        return None
    if isinstance(value, float):
        return float(repr(round(value, 9)))
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        return _oracle_canonical(value.item(), release_root)
    if isinstance(value, str) and release_root and value.startswith(release_root):
        return mio.RELEASE_PLACEHOLDER + value[len(release_root) :]
    return value


def _oracle_release_uris(df):
    """The URI pre-pass (not part of the verbatim row loop): a release-relative audio_uri hashes as
    `<release>/<path>`, exactly as the absolute in-release paths of older releases did."""
    if "audio_uri" not in df.columns:
        return df
    def canon(v):
        relative = isinstance(v, str) and v and "://" not in v and not v.startswith(("/", "~"))
        return f"{mio.RELEASE_PLACEHOLDER}/{v}" if relative else v
    return df.assign(audio_uri=[canon(v) for v in df["audio_uri"]])


def _oracle_table_digest(df, name, release_root=None):
    df = _oracle_release_uris(df)
    cols = sorted(c for c in df.columns if c not in TIMING_FIELDS)
    keys = [c for c in ID_COLUMNS[name] if c in df.columns]
    ordered = df.sort_values(keys, kind="mergesort") if keys and len(df) else df
    digest = hashlib.sha256()
    digest.update(json.dumps(cols).encode())
    for row in ordered[cols].itertuples(index=False, name=None):
        canon = [_oracle_canonical(v, release_root) for v in row]
        digest.update(json.dumps(canon, separators=(",", ":"), sort_keys=False, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _oracle_content_sha256(tables, release_root=None):
    digest = hashlib.sha256()
    for name in MANIFEST_NAMES:
        digest.update(name.encode())
        digest.update(_oracle_table_digest(tables[name], name, release_root).encode())
    return digest.hexdigest()


def _assert_same_digest(df, name, root):
    """Equal digests, or both implementations refuse the table with the same exception type."""
    try:
        expected = _oracle_table_digest(df, name, root)
    except Exception as err:  # noqa: BLE001 - any refusal of the oracle must be mirrored
        with pytest.raises(type(err)):
            mio.table_digest(df, name, root)
        return
    assert mio.table_digest(df, name, root) == expected


ROOT = "/out/releases/20260101T000000Z"
AWKWARD_FLOATS = [
    float("nan"), -0.0, 0.0, float("inf"), float("-inf"), 0.1 + 0.2, 1.23456789012345, 5e-324, -5e-324,
    1.7976931348623157e308, 2.5e-9, 5e-10, 1234567.0000000005, -3.0000000015, 1e16 + 1, 0.5, 2**53 + 0.0,
]
AWKWARD_STRINGS = [
    "", "é", "日本語", "😀 emoji", "nul\x00byte", '"quoted"', "back\\slash", "tab\tnew\nline", "\u2028",
    ROOT, ROOT + "/audio/a.wav", ROOT + "x/b.wav", "/out/releases/other/c.wav", "<release>/d.wav",
]
AWKWARD_OBJECTS = [
    None, float("nan"), pd.NA, pd.NaT, True, False, 0, -1, 2**63 - 1, -(2**63), 2**70, -0.0, 1e-12,
    [], [1, None, "a"], [[1, 2], [], [float("nan"), -0.0]], (3, "x"), np.array([1, 2, 3]), np.array([], dtype=object),
    np.array([True, False]), np.array(["s", ROOT + "/z"], dtype=object), {"a": 1.5, "b": [1, 2]}, {},
    {"nan": float("nan"), "nested": {"k": None}}, np.int64(7), np.int32(-3), np.uint64(2**64 - 1), np.bool_(True),
    np.str_("numpy str"), np.str_(ROOT + "/np.wav"), pd.Timestamp("2026-01-02T03:04:05", tz="UTC"),
    pd.Timestamp("2026-01-02"), datetime.date(2026, 1, 2), b"bytes", *AWKWARD_STRINGS, *AWKWARD_FLOATS,
]


def _random_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """A table of every dtype pandas/pyarrow hand to the digest, with awkward values mixed in."""

    def pick(pool, k=n):
        return [pool[i] for i in rng.integers(0, len(pool), size=k)]

    floats = np.where(rng.random(n) < 0.3, pick(AWKWARD_FLOATS), rng.normal(0, 10.0 ** rng.integers(-12, 12, n)))
    strings = [s if rng.random() < 0.5 else f"id-{rng.integers(1e9)}" for s in pick(AWKWARD_STRINGS)]
    with_missing = [None if rng.random() < 0.2 else s for s in strings]
    return pd.DataFrame(
        {
            "row_id": [f"r{i:05d}" for i in rng.permutation(n)],
            "f64": floats,
            "f32": np.where(np.abs(floats) < 3e38, floats, np.inf).astype(np.float32),
            "f16": np.clip(floats, -6e4, 6e4).astype(np.float16),
            "i64": rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64),
            "i32": rng.integers(-(2**31), 2**31 - 1, n).astype(np.int32),
            "u64": rng.integers(0, 2**64 - 1, n, dtype=np.uint64),
            "flag": rng.random(n) < 0.5,
            "obj": pd.Series(pick(AWKWARD_OBJECTS), dtype=object),
            "obj_str": pd.Series(with_missing, dtype=object),
            "str": pd.Series(with_missing, dtype="str"),
            "string_na": pd.Series(with_missing, dtype="string"),
            "Int64": pd.array([None if rng.random() < 0.2 else int(v) for v in rng.integers(-99, 99, n)], dtype="Int64"),
            "boolean": pd.array([None if rng.random() < 0.2 else bool(v) for v in rng.random(n) < 0.5], dtype="boolean"),
            "category": pd.Categorical(pick(["a", "b", None, ROOT + "/c"])),
            "when": pd.to_datetime(rng.integers(0, 2**40, n), unit="s").where(rng.random(n) < 0.8),
            "when_tz": pd.to_datetime(rng.integers(0, 2**40, n), unit="s", utc=True),
            "processing_time_s": rng.random(n),  # a timing field: left out by both
        }
    )


@pytest.mark.parametrize("seed", range(6))
def test_table_digest_matches_row_loop_oracle_on_awkward_tables(seed):
    rng = np.random.default_rng(seed)
    df = _random_frame(rng, int(rng.integers(1, 400)))
    roots = [ROOT, None, ""]
    for root in roots:
        _assert_same_digest(df, ASR_STAGE, root)
    # Arrow round trip (what publish and the validator hash): contract columns, list column, nulls.
    tables = make_tables()
    asr = tables[ASR_STAGE]
    k = len(asr)
    extra = df.head(k).reset_index(drop=True)
    asr = asr.reset_index(drop=True).assign(
        audio_uri=[ROOT + f"/audio/{i}.wav" for i in range(k)], gain=extra["f64"].to_numpy(),
        speed=[None, *extra["f64"].iloc[1:]], aug_seed=[None, *range(1, k)], recipe_applied=[None, *[True] * (k - 1)],
        floats_list=[[], [1.5, float("nan")], [-0.0, 1e-10, float("inf")], None, [2.5e-9]][:k],
        strings_list=[["é", ROOT + "/a"], [], None, [None, "x"], [""]][:k], mapcol=[{"a": 1.5, "b": None}] * k,
    )
    with_arrow = mio.to_arrow(asr, ASR_STAGE).to_pandas()
    _assert_same_digest(with_arrow, ASR_STAGE, ROOT)


def test_table_digest_edge_shapes_match_oracle():
    empty = pd.DataFrame({"row_id": pd.Series([], dtype="str"), "x": pd.Series([], dtype=float)})
    _assert_same_digest(empty, ASR_STAGE, ROOT)
    only_timing = pd.DataFrame({"processing_time_s": [1.0, 2.0], "built_at": ["a", "b"]})
    _assert_same_digest(only_timing, REJECTS, ROOT)  # no hashed columns: one "[]" row each
    dup = pd.DataFrame([[1, 2.5, "a"], [3, -0.0, "b"]], columns=["row_id", "v", "v"])
    _assert_same_digest(dup, ASR_STAGE, None)
    n = 40_000  # spans several column-wise chunks; distinct and repeating string columns
    big = pd.DataFrame({"row_id": [f"r{i:06d}" for i in range(n)][::-1], "v": np.arange(n) / 7,
                        "split": pd.Series([("train", None, ROOT + "/a", "é")[i % 4] for i in range(n)], dtype="str")})
    _assert_same_digest(big, ASR_STAGE, ROOT)
    # np.float64 inside a list: the old code refused it (repr is "np.float64(...)"); so must the new.
    bad = pd.DataFrame({"row_id": ["a"], "v": [[np.float64(0.5)]]})
    _assert_same_digest(bad, ASR_STAGE, None)
    with pytest.raises(ValueError):
        mio.table_digest(bad, ASR_STAGE)


def test_content_sha256_of_demo_release_matches_row_loop_oracle(demo_release):
    """The demo is a schema-version-2 release: its identity is the hash of its parts' row digests,
    each equal to the row-loop oracle's; the whole tables' v1 identity still matches the oracle too."""
    from manifests.parts import iter_parts, release_digest

    _, result = demo_release
    paths = mio.resolve_release(result["release_uri"])
    assert paths.layout() == "2"
    tables = {n: mio.read_manifest(paths.manifest(n)) for n in MANIFEST_NAMES}
    assert all(len(tables[n]) for n in (UTTERANCES, ASR_STAGE, CLASSIFIER_STAGE))
    assert mio.content_sha256(tables, paths.root) == _oracle_content_sha256(tables, paths.root)
    parts = {n: [t.to_pandas() for _, t in iter_parts(paths.manifest_dir(n))] for n in MANIFEST_NAMES}
    oracle = release_digest({n: [_oracle_table_digest(df, n, paths.root) for df in parts[n]] for n in MANIFEST_NAMES})
    assert mio.release_identity(paths) == oracle == result["content_sha256"]
    for name in MANIFEST_NAMES:
        _assert_same_digest(tables[name], name, paths.root)


AWKWARD_URIS = [
    "audio/a.flac", "audio/é 日本.flac", ROOT + "/audio/b.flac", ROOT + "/audio/", ROOT, ROOT + "x/c.wav",
    "/moved/20260101T000000Z/audio/d.flac", "/moved/other/audio/e.flac", "s3://bucket/audio/f.wav",
    "file:///g.wav", "~/h.wav", "", None, float("nan"), "<release>/i.wav", "/corpus/20260101T000000Z/audio/j.wav",
]


@pytest.mark.parametrize("dtype", [object, "str", "string"])
@pytest.mark.parametrize("root", [ROOT, ROOT + "/", None, ""])
def test_canonical_audio_uris_with_kernels_equal_the_row_loop(dtype, root):
    """Relative, in-release (current root or, for an applied recipe, a moved release's `/<name>/audio/`),
    outside, empty and missing URIs: the Arrow rewrite gives the row loop's values and the same digest."""
    n = len(AWKWARD_URIS)
    uris = AWKWARD_URIS if dtype is object else [None if isinstance(u, float) else u for u in AWKWARD_URIS]
    df = pd.DataFrame({"row_id": [f"r{i:02d}" for i in range(2 * n)],
                       "audio_uri": pd.Series(uris + uris, dtype=dtype),
                       "recipe_applied": [True] * n + [False] * n})
    for name in ("20260101T000000Z", None):
        fast = mio._canonical_audio_uris(df, root, name)["audio_uri"]
        rows = mio._canonical_audio_uris_rows(df, root, name or (root.rstrip("/").rsplit("/", 1)[-1] if root else None))
        expect = [None if isinstance(v, float) or v is pd.NA else v for v in rows["audio_uri"].tolist()]
        assert [None if v is pd.NA or isinstance(v, float) else v for v in fast.tolist()] == expect
    assert fast.tolist()[6] == ("<release>/audio/d.flac" if root else "/moved/20260101T000000Z/audio/d.flac")
    assert fast.tolist()[n + 6] == "/moved/20260101T000000Z/audio/d.flac"  # only an applied recipe's row moves
    if not (root or "").endswith("/"):  # the oracle's pre-pass has no moved-release rule nor a root's "/"
        _assert_same_digest(df.iloc[n:], ASR_STAGE, root)


def test_canonical_audio_uris_other_values_take_the_row_loop():
    df = pd.DataFrame({"row_id": ["a", "b", "c"], "audio_uri": pd.Series(["audio/x.wav", 3, pd.NA], dtype=object)})
    assert mio._canonical_audio_uris(df, ROOT, None)["audio_uri"].tolist()[:2] == ["<release>/audio/x.wav", 3]
