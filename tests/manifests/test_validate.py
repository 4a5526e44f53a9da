import json

import pandas as pd

from manifests import io as mio
from manifests import uri as fs
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, UTTERANCES
from manifests.validate import validate_release
from tests.manifests.release_factory import make_tables, write_release


def _problems(tmp_path, mutate=None, found=None) -> list[str]:
    tables = make_tables()
    if mutate:
        mutate(tables)
    write_release(str(tmp_path), tables=tables, found=found)
    return validate_release(str(tmp_path)).problems


def test_valid_release_passes(tmp_path):
    report = validate_release(str(write_release(str(tmp_path)).root))
    assert report.ok, report.problems
    assert report.checks


def test_lost_items_are_caught(tmp_path):
    problems = _problems(tmp_path, found={"src": 9})
    assert any("found 9 but accepted 6 + rejected 1" in p for p in problems)


def test_speaker_leakage_is_caught(tmp_path):
    def leak(t):
        t[UTTERANCES].loc[4, "speaker_id"] = "s0"  # s0 is in train, u4 is dev

    assert any("speakers in more than one split" in p for p in _problems(tmp_path, leak))


def test_unbalanced_asr_train_is_caught(tmp_path):
    def unbalance(t):
        extra = t[ASR_STAGE].iloc[[1]].assign(row_id="src/u2#0", utterance_id="src/u2")
        extra["target_text"] = "Neutral sentence 2"
        t[ASR_STAGE] = pd.concat([t[ASR_STAGE], extra], ignore_index=True)

    assert any("not uniform over sentiment" in p for p in _problems(tmp_path, unbalance))


def test_bad_weights_geometry_and_augmentation_are_caught(tmp_path):
    def corrupt(t):
        clf = t[CLASSIFIER_STAGE]
        clf.loc[0, "class_weight"] = 5.0
        clf.loc[1, "end_s"] = 4.0
        clf.loc[4, "speed"] = 1.05  # dev row augmented
        t[ASR_STAGE].loc[0, "snr_db"] = 30.0

    problems = "\n".join(_problems(tmp_path, corrupt))
    assert "class_weight x frequency" in problems or "mean class_weight" in problems
    assert "windows not 5.0 s long" in problems
    assert "augmentation on splits not configured" in problems
    assert "snr_db outside [0.0, 15.0]" in problems


def test_tampered_manifest_breaks_content_hash(tmp_path):
    paths = write_release(str(tmp_path))
    tables = make_tables()
    tables[UTTERANCES].loc[0, "transcript"] = "tampered"
    tables[ASR_STAGE].loc[0, "target_text"] = "Negative tampered"
    mio.write_manifest(tables[UTTERANCES], UTTERANCES, paths.manifest(UTTERANCES))
    mio.write_manifest(tables[ASR_STAGE], ASR_STAGE, paths.manifest(ASR_STAGE))
    problems = validate_release(str(tmp_path)).problems
    assert any("content_sha256 mismatch" in p for p in problems)


def test_missing_manifest_and_bad_card(tmp_path):
    paths = write_release(str(tmp_path))
    (tmp_path / "releases" / "r1" / "manifests" / "rejects.parquet").unlink()
    assert any("rejects.parquet is missing" in p for p in validate_release(paths.root).problems)
    fs.write_bytes(paths.card_json, b"{not json")
    assert any("not valid JSON" in p for p in validate_release(paths.root).problems)


def test_not_a_release(tmp_path):
    report = validate_release(str(tmp_path))
    assert not report.ok and "neither a release folder" in report.problems[0]
    json.dumps(report.problems)
