"""Reference SpecAugment for training jobs: time warp, frequency masks and time masks on log-mels.

SpecAugment is not written into the data: it is applied at training time, on every epoch, to the
log-mel features of whatever audio the manifest row names. The dataset card records the policy below
so a training job and the card agree on what "with SpecAugment" means.

Default policy (``SPECAUGMENT_POLICY``): the LibriSpeech-double ("LD") policy of Park et al. 2019,
"SpecAugment: A Simple Data Augmentation Method for ASR" (2 frequency masks of width <= F=27 mel bins,
2 time masks of width <= T=100 frames), with the time-mask width also capped at p=0.05 of the
utterance's frames (the adaptive cap of Park et al. 2020) so short utterances are not wiped out, and
time warp with W=5 frames (the ESPnet default; the paper's W=80 assumes far longer inputs).
torchaudio (2.9) has frequency and time masking but no spectrogram time warp, so ``time_warp`` here is
the usual interpolation warp: a random centre frame moves by up to W frames and each side is linearly
stretched to fill the gap. Masked cells take each example's mean value ("mean"), which suits both
normalised and raw log-mels; give a float to use a constant instead.

torch is imported inside functions so ``import manifests`` stays light. Randomness comes from torch's
global generator: call ``torch.manual_seed`` for reproducible masks.
"""

from __future__ import annotations

from typing import Any

SPECAUGMENT_POLICY: dict[str, Any] = {
    "name": "LD-adaptive",
    "reference": "Park et al. 2019 (LibriSpeech double); adaptive time-mask cap from Park et al. 2020",
    "time_warp_w": 5,
    "freq_masks": 2,
    "freq_mask_f": 27,
    "time_masks": 2,
    "time_mask_t": 100,
    "time_mask_max_ratio": 0.05,
    "mask_value": "mean",
    "iid_masks": True,
    "input": "log-mel features shaped (..., freq, time)",
}


def time_warp(spec: Any, w: int) -> Any:
    """Warp each (freq, time) example along time around a random centre by up to `w` frames."""
    import torch
    import torch.nn.functional as F

    if w <= 0 or spec.shape[-1] <= 2 * w + 1:
        return spec
    n_freq, n_time = spec.shape[-2], spec.shape[-1]
    flat = spec.reshape(-1, 1, n_freq, n_time)
    out = torch.empty_like(flat)
    for i in range(flat.shape[0]):
        centre = int(torch.randint(w, n_time - w, (1,)))
        warped = int(torch.randint(centre - w, centre + w + 1, (1,)))
        warped = min(max(warped, 1), n_time - 1)
        left = F.interpolate(flat[i : i + 1, :, :, :centre], size=(n_freq, warped), mode="bilinear", align_corners=False)
        right = F.interpolate(
            flat[i : i + 1, :, :, centre:], size=(n_freq, n_time - warped), mode="bilinear", align_corners=False
        )
        out[i : i + 1] = torch.cat([left, right], dim=-1)
    return out.reshape(spec.shape)


_CLASS: Any = None


def SpecAugment(policy: dict[str, Any] | None = None) -> Any:  # named like the class it builds
    """A torch module applying `policy` (default SPECAUGMENT_POLICY); the class is built on first use."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _build_class()
    return _CLASS(policy)


def _build_class() -> type:
    import torch
    import torchaudio.transforms as T

    class _SpecAugment(torch.nn.Module):
        """Time warp, then frequency masks, then time masks; identity in eval mode."""

        def __init__(self, policy: dict[str, Any] | None) -> None:
            super().__init__()
            self.policy = dict(SPECAUGMENT_POLICY if policy is None else policy)
            p = self.policy
            iid = bool(p.get("iid_masks", True))
            ratio = float(p.get("time_mask_max_ratio", 1.0))
            self.masks = torch.nn.ModuleList(
                [T.FrequencyMasking(int(p["freq_mask_f"]), iid_masks=iid) for _ in range(int(p["freq_masks"]))]
                + [T.TimeMasking(int(p["time_mask_t"]), iid_masks=iid, p=ratio) for _ in range(int(p["time_masks"]))]
            )

        def forward(self, spec: torch.Tensor) -> torch.Tensor:
            if not self.training:
                return spec
            spec = time_warp(spec, int(self.policy.get("time_warp_w", 0)))
            # torchaudio's iid masks need a batch axis: mask a (1, ..., freq, time) tensor of ones.
            keep = torch.ones((1, *spec.shape), dtype=spec.dtype, device=spec.device)
            for mask in self.masks:
                keep = mask(keep, 0.0)
            keep = keep[0]
            value = self.policy.get("mask_value", "mean")
            if value == "mean":
                fill = spec.mean(dim=(-2, -1), keepdim=True).expand_as(spec)
            else:
                fill = torch.full_like(spec, float(value))
            return torch.where(keep > 0, spec, fill)

    return _SpecAugment
