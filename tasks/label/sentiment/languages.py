"""Which sentiment labeler can label which language, and the hint an `unsupported_language` reject gives.

Support (docs/labelers.md#languages):
- VADER: English only.
- Amazon Comprehend: its documented list (`comprehend.SUPPORTED_LANGUAGES`: en es fr de it pt ar hi
  ja ko zh zh-TW).
- `trained`: the languages of the human-labelled text the run trained it on.
- `hf_model`: the `languages` the user lists for the model folder they point at.

The hint names only options that can work for the row's language AND its source kind: a corpus
without emotion labels (Common Voice, LibriSpeech) is never told to write an `emotion_map`, and
Comprehend is only suggested for a language it supports.
"""

from __future__ import annotations

from typing import Any

from tasks.label.transcripts.normalize import base_language

# Source kinds whose rows can carry an emotion label that an emotion_map turns into sentiment.
EMOTION_KINDS = frozenset({"cremad", "ravdess", "iemocap", "meld", "msp_podcast", "folder", "hf_dataset"})
# Source kinds whose metadata can carry a human sentiment column.
SENTIMENT_METADATA_KINDS = frozenset({"folder", "hf_dataset", "slue_voxceleb", "meld", "msp_podcast"})


def comprehend_supports(language: Any) -> bool:
    from tasks.label.sentiment.comprehend import comprehend_language

    return comprehend_language(language, "en") is not None if isinstance(language, str) and language else False


def unsupported_hint(row: dict[str, Any], current: str) -> str:
    """The reject detail for a row no configured labeler can label, naming what would work.

    `current` names the labeler that refused (e.g. "the whisper-vader text classifier is English-only").
    """
    uid, language = row.get("utterance_id"), row.get("language")
    lang = base_language(language)
    kind = str(row.get("corpus") or "")
    options = []
    if comprehend_supports(language):
        options.append("labelers.sentiment: aws_comprehend (Amazon Comprehend supports it)")
    options.append(f"labelers.text_classifier.kind: trained with human-labelled {lang!r} sentiment in the run "
                   "(a source whose rows carry sentiment in that language)")  # fmt: skip
    options.append(f"labelers.text_classifier.kind: hf_model with model_path to a local {lang!r} sentiment model "
                   f"and languages: [{lang}]")  # fmt: skip
    if kind in SENTIMENT_METADATA_KINDS:
        options.append("a sentiment column in the source's metadata")
    if kind in EMOTION_KINDS:
        options.append("an emotion_map for the source's emotion labels")
    return (f"utterance {uid} has no sentiment and its language is {language!r}; {current}. Options that would "
            f"work for {kind or 'this'} source: " + "; or ".join(options))  # fmt: skip
