"""PyTorch datasets: shapes, labels, weights, lazy == materialised audio, DataLoader workers, S3."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Subset

from manifests.audio_io import read_audio
from manifests.dataset import AsrDataset, ClassifierDataset, LogMel, collate_pad, weighted_sampler
from manifests.release import open_release, write_pool_index
from tests.manifests.release_factory import make_tables, write_release

SR = 16000


def test_classifier_items_shapes_labels_weights(small_release: Path) -> None:
    data = ClassifierDataset(str(small_release), split="train")
    frame = open_release(str(small_release)).classifier.query("split == 'train'").reset_index(drop=True)
    assert len(data) == len(frame) == 4
    for i in range(len(data)):
        item = data[i]
        wave = item["waveform"]
        assert wave.dtype == torch.float32 and wave.shape == (5 * SR,)
        assert item["valid_samples"] == 3 * SR
        assert torch.count_nonzero(wave[3 * SR :]) == 0 and torch.count_nonzero(wave[: 3 * SR]) > 0
        assert item["target"] == int(frame.loc[i, "class_index"])
        assert item["class_weight"] == pytest.approx(frame.loc[i, "class_weight"])
        assert item["speech_present"] is True
        assert item["metadata"]["row_id"] == frame.loc[i, "row_id"]
        expected = read_audio(frame.loc[i, "audio_uri"], 0.0, 3.0)
        assert np.array_equal(wave[: 3 * SR].numpy(), expected)


def test_asr_items_apply_the_lazy_speed_once(small_release: Path) -> None:
    from manifests.augmentation import change_speed

    data = AsrDataset(str(small_release), split="train")
    item = data[0]
    row = data.records[0]
    assert row["speed"] == 1.05 and not row["recipe_applied"]
    assert item["target"] == row["target_text"]
    clean = read_audio(row["audio_uri"], 0.0, 3.0)
    assert item["waveform"].shape == (round(3 * SR / 1.05),)
    assert np.array_equal(item["waveform"].numpy(), change_speed(clean, 1.05))


def test_collate_pads_and_reports_lengths(small_release: Path) -> None:
    asr = AsrDataset(str(small_release), split=None)
    batch = collate_pad([asr[0], asr[3]])  # a train row (sped up) and a dev row (clean)
    assert batch["waveform"].shape == (2, 3 * SR)
    assert batch["lengths"].tolist() == [round(3 * SR / 1.05), 3 * SR]
    assert torch.count_nonzero(batch["waveform"][0, batch["lengths"][0] :]) == 0
    assert isinstance(batch["target"], list) and len(batch["metadata"]) == 2
    clf = collate_pad([ClassifierDataset(str(small_release))[i] for i in range(3)])
    assert clf["target"].dtype == torch.long and clf["speech_present"].dtype == torch.bool
    assert clf["class_weight"].dtype == torch.float32 and clf["valid_samples"].tolist() == [3 * SR] * 3


def test_weighted_sampler_draws_by_class_weight(small_release: Path) -> None:
    data = ClassifierDataset(str(small_release), split="train")
    sampler = weighted_sampler(data, num_samples=20000, generator=torch.Generator().manual_seed(0))
    counts = Counter(data.records[i]["sentiment"] for i in sampler)
    # class_weight ~ 1/frequency: each sentiment is drawn about equally often.
    shares = np.array([counts[s] for s in ("negative", "neutral", "positive")]) / 20000
    assert np.allclose(shares, 1 / 3, atol=0.02)
    assert len(weighted_sampler(data.frame)) == len(data)
    with pytest.raises(ValueError, match="class_weight"):
        weighted_sampler(pd.DataFrame({"class_weight": [1.0, float("nan")]}))


def test_weighted_sampler_takes_a_subset_in_subset_order(small_release: Path) -> None:
    data = ClassifierDataset(str(small_release), split=None)
    assert data.frame["class_weight"].nunique() > 1
    indices = [4, 0, 3, 0, 1]
    subset = Subset(data, indices)
    sampler = weighted_sampler(subset, generator=torch.Generator().manual_seed(0))
    expected = [subset[i]["class_weight"] for i in range(len(subset))]
    assert sampler.weights.tolist() == pytest.approx(expected)
    assert sampler.weights.tolist() == pytest.approx(data.frame["class_weight"].iloc[indices].tolist())
    assert len(sampler) == len(subset) and all(0 <= i < len(subset) for i in sampler)
    nested = Subset(subset, [2, 1])  # a subset of a subset: rows 3 and 0 of the dataset
    assert weighted_sampler(nested).weights.tolist() == pytest.approx(
        data.frame["class_weight"].iloc[[3, 0]].tolist())
    loader = DataLoader(subset, batch_size=3, sampler=sampler, collate_fn=collate_pad)
    assert next(iter(loader))["waveform"].shape == (3, 5 * SR)
    with pytest.raises(TypeError, match="Subset"):
        weighted_sampler([1.0, 2.0])


def test_dataloader_with_workers_matches_single_process(small_release: Path) -> None:
    data = ClassifierDataset(str(small_release), split=None)
    one = list(DataLoader(data, batch_size=3, num_workers=0, collate_fn=collate_pad))
    two = list(DataLoader(data, batch_size=3, num_workers=2, collate_fn=collate_pad))
    assert len(one) == len(two) == 2
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a["waveform"], b["waveform"]) and a["metadata"] == b["metadata"]


def test_transform_hook_and_log_mel(small_release: Path) -> None:
    logmel = LogMel(specaugment=False)

    def features(item: dict) -> dict:
        item["features"] = logmel(item["waveform"])
        return item

    item = ClassifierDataset(str(small_release), transform=features)[0]
    assert item["features"].shape == (80, 501) and torch.isfinite(item["features"]).all()
    torch.manual_seed(0)
    augmenting = LogMel(specaugment=True).train()
    batch = torch.stack([item["waveform"]] * 2)
    assert augmenting(batch).shape == (2, 80, 501)
    assert torch.equal(augmenting.eval()(batch), logmel(batch))


def test_lazy_recipe_without_pools_fails_at_construction(small_release: Path) -> None:
    tables = make_tables()
    tables["asr_stage"]["rir_id"] = "room/a.wav"
    out = small_release.parent / "no-pools"
    write_release(str(out), tables)
    with pytest.raises(ValueError, match="augment_pools.json"):
        AsrDataset(str(out), split="train")


@pytest.mark.aws
def test_dataset_reads_release_and_audio_from_s3(small_release: Path, s3_bucket: str) -> None:
    import boto3

    client = boto3.client("s3")
    uploaded = {}
    for wav in sorted(small_release.parent.glob("u*.wav")):
        client.upload_file(str(wav), s3_bucket, f"audio/{wav.name}")
        uploaded[str(wav)] = f"s3://{s3_bucket}/audio/{wav.name}"
    tables = make_tables()
    for name in ("asr_stage", "classifier_stage"):
        local = open_release(str(small_release)).table(name)
        tables[name]["audio_uri"] = local["audio_uri"].map(uploaded).to_numpy()
    rel = small_release.parent / "s3-release"
    paths = write_release(str(rel), tables)
    write_pool_index(paths.root, {}, {})
    for file in sorted(rel.rglob("*")):
        if file.is_file():
            client.upload_file(str(file), s3_bucket, f"out/{file.relative_to(rel)}")
    remote = ClassifierDataset(f"s3://{s3_bucket}/out", split="train")
    local = ClassifierDataset(str(small_release), split="train")
    assert torch.equal(remote[1]["waveform"], local[1]["waveform"])
    assert np.array_equal(read_audio(uploaded[str(small_release.parent / "u0.wav")], 1.0, 0.5),
                          read_audio(str(small_release.parent / "u0.wav"), 1.0, 0.5))


# ------------------------------------------------------------------------------ the demo releases
# Slow: the session fixture builds the demo twice through the CLI (~25 s each on an idle machine).
def _snr_db(ref: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.sum((ref.astype(np.float64) - test) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / noise)


@pytest.mark.parametrize("dataset", [ClassifierDataset, AsrDataset])
def test_lazy_and_materialised_augmentation_give_the_same_audio(dataset, materialized_release: Path,
                                                                 lazy_release: Path) -> None:
    mat, lazy = dataset(str(materialized_release), split=None), dataset(str(lazy_release), split=None)
    index = {r["row_id"]: i for i, r in enumerate(lazy.records)}
    assert set(index) == {r["row_id"] for r in mat.records}
    compared = 0
    for i, row in enumerate(mat.records):
        a, b = mat[i]["waveform"].numpy(), lazy[index[row["row_id"]]]["waveform"].numpy()
        assert a.shape == b.shape, row["row_id"]
        assert np.max(np.abs(a - b)) < 1e-3, row["row_id"]
        if row["recipe_applied"] and np.any(a):
            assert _snr_db(a, b) > 60, row["row_id"]
            compared += 1
    assert compared >= 10  # speed, reverb and noise really were applied lazily on these rows


def test_materialised_rows_are_read_as_is(materialized_release: Path) -> None:
    data = ClassifierDataset(str(materialized_release), split=None)
    i = next(i for i, r in enumerate(data.records) if r["recipe_applied"] and r["noise_id"] and r["start_s"] > 0)
    row = data.records[i]
    flac, sr = sf.read(row["audio_uri"], dtype="float32")
    start, n = round(row["start_s"] * sr), round(row["valid_s"] * sr)
    assert np.array_equal(data[i]["waveform"][:n].numpy(), flac[start : start + n])


def test_demo_classifier_stage_through_dataloader(lazy_release: Path) -> None:
    data = ClassifierDataset(str(lazy_release), split="train")
    frame = data.frame
    assert (~frame["speech_present"]).any() and frame["rir_id"].notna().any()
    loader = DataLoader(data, batch_size=8, num_workers=2, collate_fn=collate_pad,
                        sampler=weighted_sampler(data, generator=torch.Generator().manual_seed(1)))
    seen = 0
    for batch in loader:
        assert batch["waveform"].shape[1:] == (5 * SR,) and batch["waveform"].dtype == torch.float32
        assert torch.isfinite(batch["waveform"]).all()
        speech = batch["speech_present"]
        assert (batch["target"][~speech] == -1).all() and (batch["target"][speech] >= 0).all()
        by_id = frame.set_index("row_id")
        for meta, weight in zip(batch["metadata"], batch["class_weight"], strict=True):
            assert weight.item() == pytest.approx(by_id.loc[meta["row_id"], "class_weight"])
        seen += len(batch["target"])
    assert seen == len(data)
