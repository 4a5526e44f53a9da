"""PyTorch Datasets over a release's stage tables, plus the collate, sampler and feature helpers.

An item is what the model hears: 16 kHz mono float32 audio, cut and augmented as the row says. A row
whose recipe was materialised (`recipe_applied` true) is read as is; otherwise the reader loads the
clean utterance, applies the recipe (RIR/noise files from the release's augment_pools.json) and then
cuts the window, so the recipe is applied exactly once either way.

Datasets hold only plain rows and settings: files are opened per item, in whichever DataLoader
worker asks, so `num_workers > 0` works (fork or spawn).

Class weights: either weight the loss by `class_weight` or sample with `weighted_sampler`, not
both: each alone corrects the class imbalance; together they correct it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Subset, WeightedRandomSampler

from manifests.audio_io import SAMPLE_RATE, RowReader
from manifests.release import Release, check_split, naming_original, open_release
from manifests.schema import ASR_STAGE, CLASSIFIER_STAGE

METADATA_COLUMNS: tuple[str, ...] = ("row_id", "utterance_id", "source", "split", "sentiment")
Transform = Callable[[dict[str, Any]], dict[str, Any]]


class _StageDataset(Dataset):
    stage: str = ""

    def __init__(self, release: Release | str, split: str | None = "train", *, transform: Transform | None = None,
                 pools: Mapping[str, Mapping[str, str]] | None = None, sample_rate: int = SAMPLE_RATE) -> None:
        check_split(split)
        rel = release if isinstance(release, Release) else open_release(release)
        frame = rel.table(self.stage)
        if split is not None:
            frame = frame[frame["split"] == split]
        self.frame = frame.reset_index(drop=True)
        self.records: list[dict[str, Any]] = self.frame.to_dict("records")
        uris = set(self.frame["audio_uri"])
        self.audio_origins = {new: old for new, old in rel.audio_origins.items() if new in uris}
        self.reader = RowReader(rel.pools if pools is None else pools, sample_rate)
        self.sample_rate = sample_rate
        self.transform = transform
        self._check_pools()

    def _check_pools(self) -> None:
        """Fail at construction, not mid-epoch, when a lazy recipe names a file the pools lack."""
        lazy = self.frame[~self.frame["recipe_applied"].fillna(False).astype(bool)]
        for kind, col in (("rirs", "rir_id"), ("noises", "noise_id")):
            missing = set(lazy[col].dropna()) - set(self.reader.pools.get(kind, {}))
            if missing:
                raise ValueError(
                    f"{len(missing)} {kind[:-1]} id(s) of unapplied recipes (e.g. {sorted(missing)[0]!r}) are not in "
                    "the release's manifests/augment_pools.json; pass pools={'rirs': {...}, 'noises': {...}}"
                )

    def __len__(self) -> int:
        return len(self.records)

    def _metadata(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {c: (None if pd.isna(row.get(c)) else row.get(c)) for c in METADATA_COLUMNS}

    def _finish(self, item: dict[str, Any]) -> dict[str, Any]:
        return self.transform(item) if self.transform is not None else item


class AsrDataset(_StageDataset):
    """ASR-stage rows: {"waveform": (samples,), "target": target_text, "metadata": {...}}."""

    stage = ASR_STAGE

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.records[index]
        with naming_original(row["audio_uri"], self.audio_origins):
            audio = self.reader.utterance(row)
        return self._finish({"waveform": torch.from_numpy(audio), "target": row["target_text"],
                             "metadata": self._metadata(row)})


class ClassifierDataset(_StageDataset):
    """Classifier windows: waveform (window samples, zero-padded), target = class index (-1 for
    non-speech), speech_present, class_weight, valid_samples (real audio in the window), metadata."""

    stage = CLASSIFIER_STAGE

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.records[index]
        with naming_original(row["audio_uri"], self.audio_origins):
            audio, n_valid = self.reader.window(row)
        target = row.get("class_index")
        return self._finish({
            "waveform": torch.from_numpy(audio),
            "target": -1 if target is None or pd.isna(target) else int(target),
            "speech_present": bool(row["speech_present"]),
            "class_weight": float(row["class_weight"]),
            "valid_samples": int(n_valid),
            "metadata": self._metadata(row),
        })


def _weight_frame(data: ClassifierDataset | Subset | pd.DataFrame) -> pd.DataFrame:
    """The rows `data` yields, in its order: a Subset (nested or not) picks its indices' rows."""
    if isinstance(data, Subset):
        indices = [int(i) for i in data.indices]
        return _weight_frame(data.dataset).iloc[indices]
    if isinstance(data, _StageDataset):
        return data.frame
    if isinstance(data, pd.DataFrame):
        return data
    raise TypeError(f"weighted_sampler takes a ClassifierDataset, a Subset of one or a DataFrame, "
                    f"not {type(data).__name__}")


def weighted_sampler(data: ClassifierDataset | Subset | pd.DataFrame, num_samples: int | None = None,
                     generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """Draw rows with probability proportional to `class_weight` (with replacement).

    `data` is a ClassifierDataset, a `torch.utils.data.Subset` of one (the sampler yields positions
    in the subset, weighted by the subset's rows in subset order) or a frame with `class_weight`.

    An alternative to weighting the loss: use one or the other. With the sampler, train with an
    unweighted loss; using both corrects the class imbalance twice.
    """
    frame = _weight_frame(data)
    weights = torch.tensor(frame["class_weight"].astype(float).to_numpy(), dtype=torch.double)
    if len(weights) == 0 or not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError("class_weight must be finite, >= 0 and non-empty to build a sampler"
                         + (" (no rows: the stage or split is empty, see the card's empty_reason)" if len(weights) == 0 else ""))
    return WeightedRandomSampler(weights, num_samples or len(weights), replacement=True, generator=generator)


def _pad_stack(tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad along the last axis and stack; also the original last-axis lengths."""
    lengths = torch.tensor([t.shape[-1] for t in tensors], dtype=torch.long)
    longest = int(lengths.max()) if len(tensors) else 0
    out = tensors[0].new_zeros((len(tensors), *tensors[0].shape[:-1], longest))
    for i, t in enumerate(tensors):
        out[i, ..., : t.shape[-1]] = t
    return out, lengths


def collate_pad(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad waveforms to the longest in the batch: {"waveform": (B, T), "lengths": (B,), ...}.

    Numbers and bools become tensors, other tensors are padded on their last axis (with
    `<key>_lengths`), strings and metadata stay lists.
    """
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [b[key] for b in batch]
        if isinstance(values[0], torch.Tensor):
            padded, lengths = _pad_stack(values)
            out[key] = padded
            out["lengths" if key == "waveform" else f"{key}_lengths"] = lengths
        elif isinstance(values[0], bool | np.bool_):
            out[key] = torch.tensor(values, dtype=torch.bool)
        elif isinstance(values[0], int | np.integer):
            out[key] = torch.tensor(values, dtype=torch.long)
        elif isinstance(values[0], float | np.floating):
            out[key] = torch.tensor(values, dtype=torch.float32)
        else:
            out[key] = values
    return out


class LogMel(torch.nn.Module):
    """Waveforms (..., samples) -> log-mel features (..., n_mels, frames), SpecAugment when training.

    25 ms windows every 10 ms; log(mel + 1e-6). SpecAugment is the reference policy of
    `manifests.specaugment` (identity in eval mode). Use it on batches in the training loop, or per
    item as a Dataset `transform`.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_mels: int = 80, specaugment: bool = True,
                 policy: dict[str, Any] | None = None) -> None:
        super().__init__()
        import torchaudio.transforms as T

        from manifests.specaugment import SpecAugment

        self.mel = T.MelSpectrogram(sample_rate=sample_rate, n_fft=int(0.025 * sample_rate),
                                    hop_length=int(0.010 * sample_rate), n_mels=n_mels)
        self.specaugment = SpecAugment(policy) if specaugment else None

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        feats = torch.log(self.mel(waveform) + 1e-6)
        if self.specaugment is not None:
            feats = self.specaugment(feats)
        return feats
