"""to_hf_dataset: an Audio(decode=False) column plus our decoder (datasets 5 decodes via torchcodec)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from manifests.dataset import AsrDataset, ClassifierDataset
from manifests.hf import AudioDecoder, to_hf_dataset
from manifests.release import open_release


def test_hf_dataset_columns_and_audio_feature(small_release: Path) -> None:
    import datasets

    ds = to_hf_dataset(str(small_release), "classifier", split="train")
    assert isinstance(ds, datasets.Dataset) and len(ds) == 4
    assert isinstance(ds.features["audio"], datasets.Audio) and ds.features["audio"].decode is False
    assert ds.features["class_index"].dtype == "int32"
    frame = open_release(str(small_release)).classifier.query("split == 'train'").reset_index(drop=True)
    assert ds["row_id"] == frame["row_id"].tolist()
    assert ds[0]["audio"] == {"bytes": None, "path": frame.loc[0, "audio_uri"]}


@pytest.mark.parametrize(("stage", "torch_dataset"), [("classifier", ClassifierDataset), ("asr", AsrDataset)])
def test_decoded_audio_equals_the_torch_dataset(small_release: Path, stage: str, torch_dataset) -> None:
    ds = to_hf_dataset(str(small_release), stage, split="train", decode=True)
    reference = torch_dataset(str(small_release), split="train")
    for i in range(len(ds)):
        audio = ds[i]["audio"]
        assert audio["sampling_rate"] == 16000 and audio["array"].dtype == np.float32
        assert torch.equal(torch.from_numpy(audio["array"]), reference[i]["waveform"])
    batch = ds[0:2]
    assert [a["array"].shape for a in batch["audio"]] == [tuple(reference[i]["waveform"].shape) for i in range(2)]


def test_decoder_by_hand_with_map(small_release: Path) -> None:
    release = open_release(str(small_release))
    ds = to_hf_dataset(release, "asr", split="train")
    decoder = AudioDecoder("asr", release.pools)
    lengths = ds.map(lambda b: {"n": [len(a["array"]) for a in decoder(b)["audio"]]}, batched=True,
                     remove_columns=["audio"])["n"]
    assert lengths == [round(3 * 16000 / 1.05)] * len(ds)


def test_demo_release_lazy_rows_decode(lazy_release: Path) -> None:
    ds = to_hf_dataset(str(lazy_release), "classifier", split="train", decode=True)
    row = next(i for i, r in enumerate(ds.with_format(None, columns=["rir_id"])) if r["rir_id"])
    reference = ClassifierDataset(str(lazy_release), split="train")[row]["waveform"]
    assert torch.equal(torch.from_numpy(ds[row]["audio"]["array"]), reference)
