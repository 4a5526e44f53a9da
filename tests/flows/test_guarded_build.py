"""One build through the real flow that exercises three guards at once (issues 14.5, 15.6).

- split skew: a 2-speaker acted corpus split by speaker fires `split_skew`; the same corpus under
  `split_policy: utterance_stratified` is split per utterance, flagged, and still validates;
- plausibility: a 1-sample clip and a 70 s silent clip, both with human transcripts, stay in
  `utterances` but are left out of the stages they cannot serve, counted in the card.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from flows.build_dataset import build_dataset
from manifests.io import read_card, read_release, resolve_release
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE, UTTERANCES
from manifests.validate import validate_release
from tasks.spec import parse_spec
from tests.tasks.ingest.corpora.test_base import write_tone

EMOTIONS = {"angry": "negative", "happy": "positive", "neutral": "neutral"}


def _acted(folder: Path, seed: int, words: int = 4) -> Path:
    """TESS in miniature: 2 speakers x 3 emotions x `words` words, human transcript and sentiment."""
    lines = ["file_name,transcript,sentiment,speaker_id,emotion"]
    for s, speaker in enumerate(("OAF", "YAF")):
        for e, (emotion, sentiment) in enumerate(EMOTIONS.items()):
            for w, word in enumerate(("back", "bar", "base", "bath")[:words]):
                name = f"{speaker}_{word}_{emotion}.wav"
                write_tone(folder / name, 1.5, freq=300 + 40 * w + 7 * e, seed=seed + 100 * s + 10 * e + w)
                lines.append(f"{name},say the word {word},{sentiment},{speaker},{emotion}")
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    return folder


def _odd(folder: Path) -> Path:
    folder.mkdir(parents=True)
    sf.write(folder / "one_sample.wav", np.array([0.1], dtype=np.float32), 16000, subtype="PCM_16")
    sf.write(folder / "long_silence.wav", np.zeros(70 * 16000, dtype=np.float32), 16000, subtype="PCM_16")
    write_tone(folder / "fine.wav", 2.0, seed=7)
    (folder / "metadata.csv").write_text(
        "file_name,transcript,sentiment,speaker_id\n"
        "one_sample.wav,this is a clip,neutral,A\n"
        "long_silence.wav,thank you for watching see you,positive,B\n"
        "fine.wav,i am calling about my invoice,neutral,C\n")
    return folder


def test_guards_fire_and_the_release_validates(prefect_harness, tmp_path):
    spec = parse_spec({
        "name": "guarded", "output": str(tmp_path / "out"),
        "sources": [
            # 2 speakers split by speaker are skewed whatever their size (shares 1/2 or 1 against 1/2, 1/4,
            # 1/4): one word each keeps the build small (every clip's language is identified)
            {"name": "tess", "kind": "folder", "path": str(_acted(tmp_path / "tess", 0, words=1))},
            {"name": "tess_strat", "kind": "folder", "path": str(_acted(tmp_path / "tess_strat", 1000)),
             "split_policy": "utterance_stratified"},
            {"name": "odd", "kind": "folder", "path": str(_odd(tmp_path / "odd"))},
        ],
        "labelers": {"transcripts": "none", "sentiment": "none"},
        "augment": {"enabled": False},
        "balance": {"splits": []},
        "splits": {"train": 0.5, "dev": 0.25, "test": 0.25},
    })
    build_dataset(spec)
    report = validate_release(spec.output)
    assert report.ok, report.problems
    tables = read_release(spec.output)
    utt = tables[UTTERANCES].set_index("utterance_id")
    card = read_card(resolve_release(spec.output))
    fired = {(g["guard"], g.get("detail", {}).get("source")): g for g in card["guards"]}

    # 15.6: the speaker split of 2 speakers is skewed and says so; the stratified one follows the fractions.
    shares = card["split_shares"]["by_source"]
    assert shares["tess"]["policy"] == "speaker" and shares["tess"]["skewed"]
    assert fired[("split_skew", "tess")]["level"] == "warning"
    assert shares["tess_strat"]["policy"] == "utterance_stratified" and not shares["tess_strat"]["skewed"]
    assert shares["tess_strat"]["counts"] == {"train": 12, "dev": 6, "test": 6}  # 4 per stratum: 2/1/1
    assert fired[("split_policy", "tess_strat")]["level"] == "info"
    strat = utt[utt["source"] == "tess_strat"]
    assert set(strat["split_origin"]) == {"stratified"}
    assert (strat.groupby("speaker_id")["split"].nunique() == 3).all()  # speakers share splits, by policy
    md = Path(resolve_release(spec.output).card_md).read_text()
    assert md.index("split_skew") < md.index("## Summary")  # warnings come first

    # 14.5: the 63 µs clip and the 70 s silent clip are kept but stay out of the stages they cannot serve.
    assert {"odd/one_sample", "odd/long_silence"} <= set(utt.index)
    asr_utts = set(tables[ASR_STAGE]["utterance_id"])
    clf_utts = set(tables[CLASSIFIER_STAGE]["utterance_id"])
    assert "odd/one_sample" not in asr_utts | clf_utts
    assert "odd/long_silence" not in asr_utts and "odd/long_silence" in clf_utts
    assert "odd/fine" in asr_utts and "odd/fine" in clf_utts
    excluded = card["plausibility"]["excluded"]
    assert excluded["asr"]["by_source"] == {"odd": {"too_long": 1, "too_short": 1}}
    assert excluded["classifier"]["by_reason"] == {"too_short": 1}
    assert fired[("plausibility_limits", None)]["level"] == "info"
    assert card["counts"]["sources"]["odd"]["excluded_from_asr"] == 2
