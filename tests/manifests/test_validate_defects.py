"""One defect per release, for every per-part rule of the validator that no other test breaks.

Each case takes the factory's valid release, breaks exactly one rule and asserts the validator's
sentence for it, so a rewrite of `manifests.validate_part` / `validate_rows` (issue #16: vectorised
checks) cannot drop a check silently.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from manifests.parts import manifest_section, part_of, release_digest, write_part
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, MANIFEST_NAMES, REJECTS, UTTERANCES
from manifests.validate import validate_release
from tests.manifests.release_factory import SPEC, make_tables, split_parts, write_release


def _set(name, row, column, value):
    def mutate(t):
        t[name].loc[row, column] = value
    return mutate


def _dup_asr_row_id(t):
    t[ASR_STAGE].loc[1, "row_id"] = t[ASR_STAGE].loc[0, "row_id"]


def _ghost_window(t):
    t[CLASSIFIER_STAGE].loc[0, "utterance_id"] = "src/ghost"


def _asr_in_other_split(t):
    asr = t[ASR_STAGE]
    asr.loc[asr["utterance_id"] == "src/u5", "split"] = "dev"


CASES = [
    (_set(UTTERANCES, 1, "utterance_id", "src/u0"), "utterances.utterance_id not unique: src/u0"),
    (_set(UTTERANCES, 1, "utterance_id", None), "utterances.utterance_id has 1 null values"),
    (_set(UTTERANCES, 0, "sentiment", "angry"),
     "utterances.sentiment has values outside ['negative', 'neutral', 'positive']: angry"),
    (_set(UTTERANCES, 4, "split", "val"), "utterances.split has values outside ['train', 'dev', 'test']: val"),
    (_set(UTTERANCES, 2, "duration_s", 0.0), "utterances with non-positive duration_s: src/u2"),
    (_set(UTTERANCES, 2, "duration_s", float("nan")), "utterances with non-positive duration_s: src/u2"),
    (_set(ASR_STAGE, 0, "target_text", "Negative something else"),
     "asr_stage.target_text is not '<Sentiment> <transcript>' for rows src/u0#0"),
    (_set(REJECTS, 0, "reason", "bogus"), "rejects.reason has values outside"),
    (_set(REJECTS, 0, "detail", "   "), "rejects without a detail sentence: /data/bad.wav"),
    (_set(REJECTS, 0, "detail", None), "rejects without a detail sentence: /data/bad.wav"),
    (_set(ASR_STAGE, 0, "speed", 1.2), "asr_stage: speed outside [0.95, 1.0, 1.05]: rows src/u0#0"),
    (_set(CLASSIFIER_STAGE, 1, "speed", 0.9), "classifier_stage: speed outside [0.95, 1.0, 1.05]: rows src/u1#0@0.00"),
    (_set(CLASSIFIER_STAGE, 5, "snr_db", -3.0), "classifier_stage: snr_db outside [0.0, 15.0]: rows src/u5#0@0.00"),
    (_set(CLASSIFIER_STAGE, 5, "rir_id", "rir/a"),
     "classifier_stage: augmentation on splits not configured for it (['train']): rows src/u5#0@0.00"),
    (_dup_asr_row_id, "asr_stage.row_id not unique: src/u0#0"),
    (_set(CLASSIFIER_STAGE, 2, "split", "val"), "classifier_stage.split has values outside"),
    (_set(CLASSIFIER_STAGE, 2, "sentiment", "angry"), "classifier_stage.sentiment has values outside"),
    (_set(ASR_STAGE, 1, "sentiment", "angry"), "asr_stage.sentiment has values outside"),
    (_ghost_window, "classifier_stage: rows whose utterance_id is not in utterances: src/u0#0@0.00"),
    (_asr_in_other_split, "asr_stage: rows in another split than their utterance: src/u5#0"),
    (_set(CLASSIFIER_STAGE, 0, "valid_s", 6.0), "classifier_stage valid_s outside (0, 5.0]: rows src/u0#0@0.00"),
    (_set(CLASSIFIER_STAGE, 0, "valid_s", 0.0), "classifier_stage valid_s outside (0, 5.0]: rows src/u0#0@0.00"),
    (lambda t: t[CLASSIFIER_STAGE].loc.__setitem__((0, ["start_s", "end_s"]), [0.5, 5.5]),
     "classifier_stage padded windows must start at 0 (short utterances only): src/u0#0@0.00"),
    (_set(CLASSIFIER_STAGE, 3, "sentiment", None), "classifier_stage speech windows must have a sentiment"),
    (_set(CLASSIFIER_STAGE, 3, "class_index", 0), "classifier_stage class_index does not match sentiment: rows src/u3#0@0.00"),
    (_set(CLASSIFIER_STAGE, 0, "class_weight", float("nan")), "classifier_stage train: NaN class_weight"),
]


@pytest.mark.parametrize("mutate, message", CASES, ids=[m for _, m in CASES])
def test_each_defect_is_reported(tmp_path, mutate, message):
    tables = make_tables()
    mutate(tables)
    write_release(str(tmp_path), tables=tables)
    problems = validate_release(str(tmp_path)).problems
    assert any(message in p for p in problems), problems


def test_the_factory_release_is_valid(tmp_path):
    """The cases above break a release that is valid without them."""
    write_release(str(tmp_path), tables=make_tables())
    assert validate_release(str(tmp_path)).problems == []


def _noise_window(row_id: str) -> dict:
    return {"row_id": row_id, "utterance_id": row_id.split("@")[0], "source": "noise", "split": "train",
            "sentiment": None, "source_audio_uri": "/noise/x.flac", "audio_uri": "/noise/x.flac", "offset_s": 0.0,
            "duration_s": 5.0, "recipe_applied": False, "speed": 1.0, "gain": 1.0, "aug_seed": 0, "start_s": 0.0,
            "end_s": 5.0, "valid_s": 5.0, "speech_present": False, "class_index": np.nan, "class_weight": 1.0}


def _write_v2(root: Path, parts: list[dict[str, pd.DataFrame]]) -> None:
    """A v2 release of the given parts (each a {manifest: rows} dict), card consistent with them."""
    from manifests import io as mio
    from manifests import uri as fs

    paths = mio.release_paths(str(root), "r2")
    records = {name: [write_part(p[name], name, paths.root, i, release_name="r2") for i, p in enumerate(parts)]
               for name in MANIFEST_NAMES}
    sources = pd.concat([p[n]["source"] for p in parts for n in (UTTERANCES, REJECTS)])
    card = {"name": "t", "release": "r2", "schema_version": "2",
            "content_sha256": release_digest({n: [r["content_sha256"] for r in records[n]] for n in MANIFEST_NAMES}),
            "manifests": {n: manifest_section(records[n]) for n in MANIFEST_NAMES},
            "counts": {"sources": {str(k): {"found": int(v)} for k, v in sources.value_counts().items()}},
            "spec": SPEC}
    fs.write_bytes(paths.card_json, json.dumps(card).encode())
    mio.point_latest(str(root), "r2")


def test_a_window_of_no_utterance_outside_its_hashed_part_is_reported(tmp_path):
    tables = make_tables()
    noise = pd.DataFrame([_noise_window(f"noise/n{i}@0.00") for i in range(6)])
    tables[CLASSIFIER_STAGE] = pd.concat([tables[CLASSIFIER_STAGE], noise], ignore_index=True)
    parts = split_parts(tables, 2)
    _write_v2(tmp_path / "ok", parts)
    assert validate_release(str(tmp_path / "ok")).problems == []
    row = "noise/n0@0.00"
    home = part_of(row, 2)
    moved = parts[home][CLASSIFIER_STAGE]
    parts[1 - home][CLASSIFIER_STAGE] = pd.concat([parts[1 - home][CLASSIFIER_STAGE], moved[moved["row_id"] == row]])
    parts[home][CLASSIFIER_STAGE] = moved[moved["row_id"] != row]
    _write_v2(tmp_path / "bad", parts)
    problems = validate_release(str(tmp_path / "bad")).problems
    assert f"part {1 - home:05d}: classifier_stage: windows of no utterance outside their hashed part: {row}" in problems


def test_a_v2_part_whose_rows_cannot_be_checked_is_reported_not_a_crash(tmp_path):
    """Duplicate utterance ids stop a part's row checks; the global checks still run and say so."""
    from tests.manifests.release_factory import write_release_v2

    tables = make_tables()
    tables[UTTERANCES].loc[1, "utterance_id"] = "src/u0"
    write_release_v2(str(tmp_path), tables=tables, n_parts=3)
    problems = validate_release(str(tmp_path)).problems
    assert any("utterances.utterance_id not unique: src/u0" in p for p in problems), problems
