"""Which augmentation recipe each stage row gets: drawn from (seed, row id) alone.

``draw_recipe`` seeds a numpy Generator from sha256(f"{seed}:{row_id}"): a row's recipe depends only
on the dataset seed and the row id, never on order, shard or process. The variants of one utterance
rotate through the speeds; ``classifier_variants`` gives the classifier stage ``copies_per_utterance``
variants per augmented utterance. The DSP that applies a recipe is `manifests.augmentation`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from manifests.augmentation import Recipe
from tasks.core.hashing import seeded_digest
from tasks.spec import AugmentSpec

if TYPE_CHECKING:
    from tasks.augment.pools import AugmentPools


def derive_seed(seed: int, row_id: str) -> int:
    """A 63-bit integer from sha256(f"{seed}:{row_id}") (fits the int64 aug_seed column)."""
    digest = seeded_digest(seed, row_id)
    return int.from_bytes(digest[:8], "big") >> 1


IDENTITY = Recipe(speed=1.0, gain=1.0)


def _speed_slot(seed: int, row_id: str, u_speed: float, count: int) -> int:
    """Index into the sorted speeds: rotated over an utterance's variants (see draw_recipe)."""
    utterance, sep, variant = row_id.rpartition("#")
    if not sep or not variant.isdigit():
        return min(int(u_speed * count), count - 1)
    start = np.random.default_rng(derive_seed(seed, f"speed:{utterance}")).integers(count)
    return int((int(start) + int(variant)) % count)


def classifier_variants(items: pd.DataFrame, spec: AugmentSpec) -> pd.DataFrame:
    """(utterance_id, variant) of the classifier stage: `copies_per_utterance` per augmented utterance.

    Utterances of splits that ``spec`` augments get variants 0..copies-1 (each its own recipe, so
    its own speed, RIR and noise); every other utterance, or all of them when augmentation is off,
    gets variant 0 only (extra clean copies would just repeat the same audio).
    """
    copies = spec.copies_per_utterance if spec.enabled else 1
    counts = np.where(items["split"].isin(list(spec.splits)), copies, 1) if copies > 1 else np.ones(len(items), int)
    return pd.DataFrame({
        "utterance_id": np.repeat(items["utterance_id"].to_numpy(), counts),
        "variant": np.concatenate([np.arange(c) for c in counts]) if len(items) else np.zeros(0, int),
    }).astype({"variant": int})


def draw_recipe(
    seed: int, row_id: str, split: str, spec: AugmentSpec, pools: AugmentPools, duration_s: float,
    speaker: str | None = None,
) -> Recipe:
    """The recipe of one stage row, from (seed, row_id) alone.

    Splits not in ``spec.splits`` (and everything when augmentation is off) get the identity recipe.
    Seven uniform numbers are always drawn in the same order (speed, reverb?, which RIR, noise?,
    which noise, offset, SNR), so changing one probability does not reshuffle the others. Train rows
    use the train pools, dev/test rows the eval pools. A noise longer than the utterance starts at a
    uniform offset that fits the utterance; a shorter one starts anywhere and loops. `speaker` (the
    row's split group) keeps babble in which that speaker talks out of the noise draw.
    The gain is left to ``apply_recipe`` (None) unless the recipe changes nothing (gain 1.0).

    Speed: a row id ``<utterance>#<variant>`` (``tasks.plan.stage_rows.recipe_key``) takes the speed at
    ``(start + variant) % len(speeds)``, with ``start`` drawn from (seed, utterance) alone, so variant 0
    is still uniform over the speeds while the copies of one utterance (``copies_per_utterance``,
    oversampled ASR repeats) rotate through them: 3 copies get 0.95, 1.0 and 1.05 once each, as in
    Kaldi's 3-way speed perturbation. Other row ids use the row's own uniform draw.
    """
    if not spec.enabled or split not in spec.splits:
        return IDENTITY
    aug_seed = derive_seed(seed, row_id)
    u_speed, u_rev, u_rir, u_noise, u_noise_id, u_offset, u_snr = np.random.default_rng(aug_seed).random(7)
    speeds = sorted(float(s) for s in spec.speeds)
    speed = speeds[_speed_slot(seed, row_id, float(u_speed), len(speeds))]
    rir_pool, noise_pool = pools.rir_pool(split), pools.noise_pool(split, speaker)
    rir_id = None
    if rir_pool and u_rev < spec.p_reverb:
        rir_id = rir_pool[min(int(u_rir * len(rir_pool)), len(rir_pool) - 1)]
    noise_id = noise_offset_s = snr_db = None
    if noise_pool and u_noise < spec.p_noise:
        noise_id = noise_pool[min(int(u_noise_id * len(noise_pool)), len(noise_pool) - 1)]
        noise_len = pools.noise_durations.get(noise_id, 0.0)
        span = noise_len - duration_s if noise_len > duration_s else noise_len
        noise_offset_s = float(u_offset * max(span, 0.0))
        low, high = spec.snr_db
        snr_db = float(low + u_snr * (high - low))
    if speed == 1.0 and rir_id is None and noise_id is None:
        return Recipe(speed=1.0, gain=1.0, aug_seed=aug_seed)
    return Recipe(speed=speed, rir_id=rir_id, noise_id=noise_id, noise_offset_s=noise_offset_s,
                  snr_db=snr_db, gain=None, aug_seed=aug_seed)
