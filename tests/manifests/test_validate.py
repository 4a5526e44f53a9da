import json
from pathlib import Path

import pandas as pd

from manifests import io as mio
from manifests import uri as fs
from manifests.schema import ASR_STAGE, CLASS_INDEX, CLASSIFIER_STAGE, REJECTS, UTTERANCES
from manifests.validate import validate_release
from tests.manifests.release_factory import add_utterance, make_tables, reweight, write_release


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


# ------------------------------------------------------------------ one broken rule per release


def _check(tmp_path, tables, spec=None, card_extra=None) -> list[str]:
    write_release(str(tmp_path), tables=tables, spec=spec, card_extra=card_extra)
    return validate_release(str(tmp_path)).problems


def _long_utterance(tables, windows=((0.0, 5.0, 5.0), (2.5, 7.5, 5.0), (4.0, 9.0, 5.0))):
    """A 9 s test-split utterance: full windows at 0 and 2.5, tail 1.5 s >= 1 s adds one ending at 9."""
    add_utterance(tables, "src/long", "test", "neutral", duration=9.0, windows=list(windows))
    reweight(tables)


def test_window_rule_including_last_window(tmp_path):
    ok = make_tables()
    _long_utterance(ok)
    assert _check(tmp_path / "ok", ok) == []
    for name, windows in {
        "missing last window": [(0.0, 5.0, 5.0), (2.5, 7.5, 5.0)],
        "last window not end-aligned": [(0.0, 5.0, 5.0), (2.5, 7.5, 5.0), (5.0, 10.0, 5.0)],
    }.items():
        broken = make_tables()
        _long_utterance(broken, windows)
        problems = "\n".join(_check(tmp_path / name.replace(" ", "-"), broken))
        assert "src/long (" in problems and "do not follow the window rule" in problems, name
    # a shorter tail (0.5 s < min_last_window_s) must be dropped, not windowed
    short_tail = make_tables()
    add_utterance(short_tail, "src/tail", "test", "neutral", duration=8.0,
                  windows=[(0.0, 5.0, 5.0), (2.5, 7.5, 5.0), (3.0, 8.0, 5.0)])
    reweight(short_tail)
    assert any("src/tail (" in p for p in _check(tmp_path / "tail", short_tail))


def test_valid_s_of_a_padded_short_utterance(tmp_path):
    def pad_wrong(t):
        t[CLASSIFIER_STAGE].loc[0, "valid_s"] = 2.5  # a 3 s utterance: valid_s must be 3

    assert any("src/u0 (" in p and "window rule" in p for p in _problems(tmp_path, pad_wrong))


def test_windows_of_a_lazy_speed_row_are_in_utterance_time(tmp_path):
    tables = make_tables()
    clf = tables[CLASSIFIER_STAGE]
    clf.loc[0, "speed"] = 1.05  # train row, recipe not applied: 3 s of source = 2.857125 s heard
    clf.loc[0, "valid_s"] = 2.857125
    assert _check(tmp_path / "ok", tables) == []
    clf.loc[0, "valid_s"] = 3.0  # the source length, not the utterance-time length
    assert any("src/u0 (" in p for p in _check(tmp_path / "bad", tables))
    clf.loc[0, "duration_s"] = float("nan")  # a missing cut is reported, never a crash
    assert any("without a positive duration_s" in p for p in _check(tmp_path / "nan", tables))


def test_weights_follow_power_and_max_weight_from_the_spec(tmp_path):
    from tasks.publish.weights import class_weights
    from tasks.spec import WeightSpec

    def by(spec):
        return lambda counts: class_weights(counts, WeightSpec(**spec))[0]

    for spec in ({"power": 0.5, "max_weight": None}, {"power": 1.0, "max_weight": 1.2}):
        tables = make_tables()
        for i in range(4):  # make train imbalanced enough for the cap to bind
            add_utterance(tables, f"src/n{i}", "train", "neutral", asr_variants=0)
        reweight(tables, by(spec))
        name = f"p{spec['power']}-m{spec['max_weight']}"
        assert _check(tmp_path / name, tables, spec={"weights": spec}) == []
        reweight(tables)  # the default rule: wrong for this spec
        problems = "\n".join(_check(tmp_path / (name + "-bad"), tables, spec={"weights": spec}))
        assert "class_weight of" in problems and "the rule (1/frequency)^" in problems


def test_eligibility_rules_are_enforced_per_stage_and_split(tmp_path):
    tables = make_tables()
    tables[UTTERANCES].loc[5, "sentiment_origin"] = "text_classifier"  # src/u5, test split
    rules = {"eligibility": {"asr": {"test": {"sentiment_origin": ["human"], "transcript_origin": None}},
                             "classifier": {}}}
    problems = "\n".join(_check(tmp_path / "asr", tables, spec=rules))
    assert "asr_stage: 1 test rows use sentiment_origin outside eligibility.asr.test ['human']" in problems
    assert "classifier_stage" not in problems
    # the same rows without the rule pass; a classifier rule (list shorthand) catches its windows too
    assert _check(tmp_path / "none", make_tables()) == []
    clf_rule = {"eligibility": {"classifier": {"test": ["human", "mapped_emotion"]}}}
    problems = "\n".join(_check(tmp_path / "clf", tables, spec=clf_rule))
    assert "classifier_stage: 1 test rows use sentiment_origin" in problems


def test_unbalanced_splits_keep_every_eligible_utterance_once(tmp_path):
    def drop_dev(t):
        t[ASR_STAGE] = t[ASR_STAGE][t[ASR_STAGE]["split"] != "dev"].reset_index(drop=True)

    def repeat_test(t):
        extra = t[ASR_STAGE][t[ASR_STAGE]["split"] == "test"].assign(row_id="src/u5#1")
        t[ASR_STAGE] = pd.concat([t[ASR_STAGE], extra], ignore_index=True)

    assert any("dev split is not balanced" in p and "missing src/u4" in p for p in _problems(tmp_path, drop_dev))
    assert any("test split is not balanced" in p and "repeated src/u5" in p
               for p in _problems(tmp_path / "r", repeat_test))


def test_balance_method_sets_the_per_class_count(tmp_path):
    # the factory undersamples train to 1 per class; oversampling means 2 (neutral has 2 items)
    problems = _check(tmp_path, make_tables(), spec={"balance": {"method": "oversample"}})
    assert any("balance.method oversample means 2 rows per class" in p for p in problems)
    target = _check(tmp_path / "t", make_tables(), spec={"balance": {"method": "target_size", "target_per_class": 1}})
    assert target == []


def test_oversampled_repeats_must_be_distinct_augmentations(tmp_path):
    tables = make_tables()
    asr = tables[ASR_STAGE]
    extra = asr[asr["utterance_id"].isin(["src/u0", "src/u3"])].copy()
    extra["row_id"] = extra["utterance_id"] + "#1"
    extra["speed"] = 0.95  # variant 1 sounds different from variant 0 (speed 1.05)
    u2 = tables[UTTERANCES].loc[[2]]  # neutral u2 was left out by undersampling: oversampling needs it
    neutral = asr[asr["utterance_id"] == "src/u1"].assign(
        row_id="src/u2#0", utterance_id="src/u2", source_audio_uri=u2["audio_uri"].iloc[0],
        audio_uri=u2["audio_uri"].iloc[0], target_text="Neutral sentence 2")
    tables[ASR_STAGE] = pd.concat([asr, extra, neutral], ignore_index=True)
    spec = {"balance": {"method": "oversample"}}
    assert _check(tmp_path / "ok", tables, spec=spec) == []
    tables[ASR_STAGE].loc[tables[ASR_STAGE]["row_id"] == "src/u0#1", "speed"] = 1.05  # same recipe as #0
    problems = _check(tmp_path / "same", tables, spec=spec)
    assert any("identical recipes" in p and "src/u0#0" in p for p in problems)


def test_source_share_cap(tmp_path):
    def build(b_negatives: int):
        """Train: 4 neutral, 4 positive, negatives u0 + 3 from source a + b_negatives from b (none picked)."""
        tables = make_tables()
        for i in range(3):
            add_utterance(tables, f"a/neg{i}", "train", "negative", source="a")
            add_utterance(tables, f"src/pos{i}", "train", "positive")
        for i in range(2):
            add_utterance(tables, f"src/neu{i}", "train", "neutral")
        for i in range(b_negatives):
            add_utterance(tables, f"b/neg{i}", "train", "negative", source="b", asr_variants=0)
        asr = tables[ASR_STAGE]
        u2 = asr[asr["utterance_id"] == "src/u1"].assign(row_id="src/u2#0", utterance_id="src/u2",
                                                         target_text="Neutral sentence 2")
        tables[ASR_STAGE] = pd.concat([asr, u2], ignore_index=True)
        reweight(tables)
        return tables

    spec = {"balance": {"max_source_share": 0.5}}  # 4 per class: cap 2 per source
    # a gives 3 > cap, but the only other source (src) gave all it had: the cap was lifted correctly
    assert _check(tmp_path / "ok", build(0), spec=spec) == []
    # b had 2 negatives and gave none while a gave 3: the cap was not honoured
    problems = _check(tmp_path / "bad", build(2), spec=spec)
    assert problems == ["asr_stage train negative: source a gives 3 utterances, above max_source_share 0.5 (cap 2) "
                        "while b had unused eligible items"]


def test_non_speech_windows_have_null_sentiment_and_weight_one(tmp_path):
    def sentiment_on_noise(t):
        t[CLASSIFIER_STAGE].loc[4, "speech_present"] = False  # dev window keeps its sentiment

    def heavy_noise(t):
        clf = t[CLASSIFIER_STAGE]
        clf.loc[4, ["speech_present", "sentiment", "class_index"]] = [False, None, None]
        clf.loc[4, "class_weight"] = 2.0

    assert any("non-speech windows must have a null sentiment" in p for p in _problems(tmp_path, sentiment_on_noise))
    assert any("non-speech windows must have class_weight 1.0" in p for p in _problems(tmp_path / "w", heavy_noise))


def test_card_duplicate_count_must_match_rejects(tmp_path):
    tables = make_tables()
    assert _check(tmp_path / "ok", tables, card_extra={"leakage": {"duplicate_segments_resolved": 0}}) == []
    problems = _check(tmp_path / "bad", tables, card_extra={"leakage": {"duplicate_segments_resolved": 2}})
    assert any("2 duplicate segments resolved but rejects.parquet has 0" in p for p in problems)


def test_on_missing_class_error_means_every_class_present(tmp_path):
    def no_positive(t):
        for name in (UTTERANCES, ASR_STAGE, CLASSIFIER_STAGE):
            t[name].loc[t[name]["utterance_id"] == "src/u3", "sentiment"] = "neutral"
        t[ASR_STAGE].loc[t[ASR_STAGE]["utterance_id"] == "src/u3", "target_text"] = "Neutral sentence 3"
        t[CLASSIFIER_STAGE]["class_index"] = t[CLASSIFIER_STAGE]["sentiment"].map(CLASS_INDEX)
        reweight(t)
        t[ASR_STAGE] = t[ASR_STAGE][t[ASR_STAGE]["utterance_id"] != "src/u3"].reset_index(drop=True)

    tables = make_tables()
    no_positive(tables)
    # after the change train has negative 1, neutral 3 available; undersampled to 1 each
    tables[ASR_STAGE] = tables[ASR_STAGE][tables[ASR_STAGE]["row_id"] != "src/u3#0"]
    assert _check(tmp_path / "ok", tables) == []
    problems = _check(tmp_path / "err", tables, spec={"balance": {"on_missing_class": "error"}})
    assert any("classes ['positive'] are empty" in p for p in problems)


def test_a_relative_path_validates_like_the_absolute_one(demo_release, monkeypatch):
    """`voicetone validate out/x` from the shell: materialised audio_uris are hashed relative to the
    release folder, which must be the same folder however the user spelled it."""
    spec, _result = demo_release
    output = Path(spec.output)
    assert validate_release(str(output)).ok
    monkeypatch.chdir(output.parent)
    for spelling in (output.name, f"./{output.name}/", f"../{output.parent.name}/{output.name}"):
        report = validate_release(spelling)
        assert report.ok, (spelling, report.problems)
        assert report.release.startswith(str(output))


def test_speakers_may_share_splits_only_under_utterance_stratified(tmp_path):
    """An utterance-level split is relaxed from the speaker rule only for sources the spec puts under it."""

    def stratify(t):
        t[UTTERANCES]["split_origin"] = "hashed"
        t[UTTERANCES].loc[4, "speaker_id"] = "s0"  # s0 is in train, u4 is dev
        t[UTTERANCES].loc[[0, 4], "split_origin"] = "stratified"

    tables = make_tables()
    stratify(tables)
    problems = _check(tmp_path / "a", tables)
    assert any("speakers in more than one split" in p for p in problems)
    assert any("not under split_policy utterance_stratified" in p for p in problems)
    tables = make_tables()
    stratify(tables)
    policy = {"sources": [{"name": "src", "kind": "folder", "path": "/data", "split_policy": "utterance_stratified"}]}
    assert _check(tmp_path / "b", tables, spec=policy) == []


def test_a_source_that_accepted_nothing_is_reported(tmp_path):
    """#15.3: a source with 0 accepted items validated. Now validate fails it, unless the spec allowed
    it (run.allow_failed_sources), in which case it is reported among the checks."""
    def add_failed_source(t):
        extra = t[REJECTS].iloc[[0]].copy()
        extra["source"], extra["input_ref"] = "broken", "broken/a.wav"
        t[REJECTS] = pd.concat([t[REJECTS], extra], ignore_index=True)

    problems = _problems(tmp_path / "a", mutate=add_failed_source)
    assert any("source 'broken' accepted 0 of 1 found items (a failed source" in p for p in problems), problems

    tables = make_tables()
    add_failed_source(tables)
    write_release(str(tmp_path / "b"), tables=tables, spec={"run": {"allow_failed_sources": ["broken"]}})
    report = validate_release(str(tmp_path / "b"))
    assert report.ok, report.problems
    assert "source 'broken' accepted 0 of 1 found items (allowed by run.allow_failed_sources)" in report.checks


def test_stage_rows_outside_the_plausibility_limits_are_caught(tmp_path):
    """A 63 µs utterance in the stages fails; with it left out of the (unbalanced) dev split, the release passes."""
    limits = {"plausibility": {"asr": {"min_duration_s": 0.3, "max_duration_s": 60.0},
                               "classifier": {"min_duration_s": 0.3, "max_duration_s": 600.0},
                               "min_chars_per_s": 0.5, "max_chars_per_s": 35.0}}
    tables = make_tables()
    add_utterance(tables, "src/tiny", "dev", "neutral", duration=1 / 16000, windows=[(0.0, 5.0, 1 / 16000)])
    reweight(tables)
    problems = _check(tmp_path / "a", tables, spec=limits)
    assert any("asr_stage: rows of utterances outside the plausibility limits" in p for p in problems)
    assert any("classifier_stage: rows of utterances outside the plausibility limits" in p for p in problems)
    assert _check(tmp_path / "b", tables) == []  # a release built before the limits existed is not judged by them
    for name in (ASR_STAGE, CLASSIFIER_STAGE):
        tables[name] = tables[name][tables[name]["utterance_id"] != "src/tiny"].reset_index(drop=True)
    reweight(tables)
    assert _check(tmp_path / "c", tables, spec=limits) == []
