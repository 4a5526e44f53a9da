"""Pinned `table_digest` hex values of awkward tables, computed by the row-wise definition before the
digest was vectorised further: the definition of content_sha256 (docs/manifest-contract.md) must not
drift, so any change of these values is a change of every release's identity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from manifests import io as mio
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, REJECTS, UTTERANCES

ROOT = "/out/releases/20260101T000000Z"
FLOATS = [0.1, 1e-7, -0.0, 0.0, float("inf"), float("-inf"), float("nan"), 2.5e-9, 1.23456789012345, 1e16 + 1]


def _tables() -> dict[str, tuple[pd.DataFrame, str]]:
    n = len(FLOATS)
    ids = [f"r{i:02d}" for i in range(n)][::-1]
    strings = ["é", "日本語 😀", None, '"q"\\', "tab\tnl\n", "", "\u2028", "plain", None, "x"]
    stage = pd.DataFrame({
        "row_id": ids,
        "utterance_id": pd.Series([f"u{i % 3}" for i in range(n)], dtype="str"),
        "audio_uri": ["audio/a.flac", ROOT + "/audio/b.flac", "s3://bucket/c.wav", None, "/abs/d.wav",
                      "audio/e.flac", ROOT + "x/f.wav", "audio/a.flac", "", "audio/g.flac"],
        "recipe_applied": [True, False, None, True, False, True, None, False, True, False],
        "gain": FLOATS,
        "aug_seed": [1, None, 3, 4, None, 6, 7, 8, 9, 10],
        "speed": np.array(FLOATS, dtype=np.float32),
        "sentiment": pd.Series(strings, dtype="str"),
        "detail": pd.Series(strings, dtype=object),
        "na_mix": pd.Series([None, float("nan"), pd.NA, "a", 1, 2.5, True, -0.0, pd.NaT, "b"], dtype=object),
        "lists": [[], [0.1, None], [[1, 2], []], None, [float("nan"), -0.0], ["é", ROOT + "/z"], [1e-7],
                  np.array([1, 2]), np.array([], dtype=object), [[[]]]],
        "ints": np.arange(n, dtype=np.int64) - 5,
        "flags": [True, False] * (n // 2),
        "processing_time_s": FLOATS,
    })
    # list<double> read back holds np.float64 items, which the definition refuses (tests/manifests/test_io.py)
    arrow_lists = [[], [1, 2], [7, -3], None, [0], [2**40], [], [1], None, [3]]
    nested = [[[1, 2], []], [], None, [[]], [[3]], [[4, 0]], [], [[5]], [[6]], [[7]]]
    written = mio.to_arrow(stage.drop(columns=["na_mix", "lists"]).assign(
        ints_list=arrow_lists, nested=nested, strings_list=[["é", ROOT + "/z"], [], None, [None, "x"], [""]] * 2),
        CLASSIFIER_STAGE).to_pandas()  # what a part reads back as
    rejects = pd.DataFrame({"source": ["b", "a", "a", None], "input_ref": ["x", "y", None, "z"],
                            "stage": ["ingest"] * 4, "reason": ["missing_audio", None, "x", "y"],
                            "detail": [None, "é", "", "d"]})
    m = 40_000  # several digest chunks; repeating and distinct strings, nulls in every column kind
    big = pd.DataFrame({"row_id": [f"r{i:06d}" for i in range(m)][::-1], "duration_s": np.arange(m) / 7,
                        "split": [("train", None, ROOT + "/a", "é")[i % 4] for i in range(m)],
                        "audio_uri": [f"audio/{i % 977}.flac" if i % 5 else None for i in range(m)],
                        "recipe_applied": [(True, False, None)[i % 3] for i in range(m)],
                        "aug_seed": [i if i % 11 else None for i in range(m)],
                        "class_index": [i % 3 if i % 4 else None for i in range(m)]})
    empty = mio.to_arrow(pd.DataFrame(), UTTERANCES).to_pandas()
    return {
        "stage_raw": (stage, ASR_STAGE),
        "stage_written": (written, CLASSIFIER_STAGE),
        "rejects_written": (mio.to_arrow(rejects, REJECTS).to_pandas(), REJECTS),
        "big_written": (mio.to_arrow(big, CLASSIFIER_STAGE).to_pandas(), CLASSIFIER_STAGE),
        "empty_written": (empty, UTTERANCES),
        "empty_frame": (pd.DataFrame(), REJECTS),
        "empty_columns": (pd.DataFrame({"row_id": pd.Series([], dtype="str"), "v": pd.Series([], dtype=float)}),
                          ASR_STAGE),
    }


PINS = {
    'stage_raw': ('e21eaa766d43ac6428855227af2c932f1ba5ca6ce2b2065d217145dcc6d79677', '400e40e3eabbb89a98e6deca90b2cabe9bd51eb6743e7cad85e2013fd16596f0'),
    'stage_written': ('7875214e49a6da062251a97d09b1edb6d902c6209c2b9bbc4af2acb84c255af7', 'd1bf37680ab0ceaaad3ddd25d9471e165398f296abe85168cc3d21c165491b16'),
    'rejects_written': ('15f51875981b08c6302804410871aaeb48bb90ec810e99a53f6fffdf25b51767', '15f51875981b08c6302804410871aaeb48bb90ec810e99a53f6fffdf25b51767'),
    'big_written': ('6b2b0de84cbfdc48f705f565a8019f65d09c1a0f1b04ff9df42ac4b3144ab49e', '50d332b46a4d5ad8165d08a263768238951014c63da14430397a5d1ab7a88d47'),
    'empty_written': ('3716c74ab1f419cf5f188a913f217b59b7db60977920ee8ef411cb3572e76f4f', '3716c74ab1f419cf5f188a913f217b59b7db60977920ee8ef411cb3572e76f4f'),
    'empty_frame': ('4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945', '4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945'),
    'empty_columns': ('e4a6845e00cd6ca7ce9c964b6c1f2c65afae9bebe2039673739092c353e20b35', 'e4a6845e00cd6ca7ce9c964b6c1f2c65afae9bebe2039673739092c353e20b35'),
}


@pytest.mark.parametrize("key", sorted(PINS))
@pytest.mark.parametrize("root", [ROOT, None])
def test_table_digest_is_pinned(key, root):
    df, name = _tables()[key]
    assert mio.table_digest(df, name, root, "20260101T000000Z") == PINS[key][root is None]
