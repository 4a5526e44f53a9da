"""A release's stage table as a Hugging Face `datasets.Dataset` with an `Audio` column.

`datasets` 4 and later decode `Audio` through torchcodec, which this project does not install (it
does not pair with the pinned torch). So the column is `Audio(decode=False)`: each value is
{"path": audio_uri, "bytes": None}, and the row's other columns say which range to read and which
recipe to apply. `AudioDecoder` (or `decode=True`, which installs it with `set_transform`) turns a
row into {"array", "sampling_rate", "path"} exactly as the PyTorch datasets do: window cut, lazy
recipe applied once, 16 kHz mono float32.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from manifests.audio_io import SAMPLE_RATE, RowReader
from manifests.release import Release, check_split, naming_original, open_release, stage_name
from manifests.schema import CLASSIFIER_STAGE


class AudioDecoder:
    """Decodes the `audio` column of a batch (dict of lists) or of one example (dict of values).

    `audio_origins` (a release's `audio_origins`: rewritten path -> manifest path) lets a
    missing-file error name both paths when `audio_roots` rewrote the row's audio.
    """

    def __init__(self, stage: str, pools: Mapping[str, Mapping[str, str]] | None = None,
                 sample_rate: int = SAMPLE_RATE, audio_origins: Mapping[str, str] | None = None) -> None:
        self.stage = stage_name(stage)
        self.reader = RowReader(pools, sample_rate)
        self.audio_origins = dict(audio_origins or {})

    def decode_example(self, example: Mapping[str, Any]) -> dict[str, Any]:
        row = dict(example)
        row["audio_uri"] = example["audio"]["path"] if isinstance(example.get("audio"), Mapping) else example["audio_uri"]
        with naming_original(row["audio_uri"], self.audio_origins):
            if self.stage == CLASSIFIER_STAGE:
                array, _ = self.reader.window(row)
            else:
                array = self.reader.utterance(row)
        return {"array": array, "sampling_rate": self.reader.sr, "path": row["audio_uri"]}

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """For `Dataset.set_transform`: replaces `audio` with decoded arrays on the fly. Not for `map`:
        `datasets` would re-encode the `audio` column (and needs torchcodec for that); docs/training.md
        shows the `map` form, which returns the arrays under `waveform`."""
        keys = list(batch)
        size = len(batch[keys[0]]) if keys else 0
        out = dict(batch)
        out["audio"] = [self.decode_example({k: batch[k][i] for k in keys}) for i in range(size)]
        return out


def to_hf_dataset(uri: str | Release, stage: str, split: str | None = None, decode: bool = False) -> Any:
    """The stage table (optionally one split) as a `datasets.Dataset` with `audio: Audio(decode=False)`.

    With `decode=True` the dataset decodes on access (`ds[0]["audio"]["array"]`) through
    `AudioDecoder`; otherwise call `AudioDecoder(stage, release.pools)` yourself, e.g. in `map`.
    """
    import datasets
    import pyarrow.compute as pc

    check_split(split)
    release = uri if isinstance(uri, Release) else open_release(uri)
    name = stage_name(stage)
    table = release.arrow(name)
    if split is not None:
        table = table.filter(pc.equal(table["split"], split))
    table = table.replace_schema_metadata(None)  # keep integer columns integer (pandas would make floats)
    ds = datasets.Dataset(table)
    ds = ds.add_column("audio", [{"path": u, "bytes": None} for u in table["audio_uri"].to_pylist()])
    ds = ds.cast_column("audio", datasets.Audio(sampling_rate=SAMPLE_RATE, decode=False))
    ds.info.description = json.dumps({"voicetone.release": release.root, "voicetone.stage": name,
                                      "voicetone.split": split})
    if decode:
        uris = set(table["audio_uri"].to_pylist())
        origins = {new: old for new, old in release.audio_origins.items() if new in uris}
        ds.set_transform(AudioDecoder(name, release.pools, audio_origins=origins), output_all_columns=False)
    return ds
