"""Simulated rooms (tasks.augment.rooms): used when no RIR folder is given, reused, and physically plausible."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from tasks.augment.pools import build_pools
from tests.tasks.augment.conftest import SR, augment_spec


def test_simulated_rirs_when_no_folders(noise_root, tmp_path) -> None:
    work = tmp_path / "work"
    start = time.perf_counter()
    pools = build_pools(augment_spec(None, noise_root, simulate_rirs=6), seed=5, work_dir=str(work))
    assert time.perf_counter() - start < 6.0  # well under a second per room
    assert sorted(pools.rirs) == [f"sim/room_{i:02d}" for i in range(6)]
    assert all(Path(u).is_relative_to(work / "simulated_rirs") for u in pools.rirs.values())
    assert pools.eval_rirs and not set(pools.eval_rirs) & set(pools.train_rirs)
    mtimes = {u: os.path.getmtime(u) for u in pools.rirs.values()}
    rebuilt = build_pools(augment_spec(None, noise_root, simulate_rirs=6), seed=5, work_dir=str(work))
    assert {u: os.path.getmtime(u) for u in rebuilt.rirs.values()} == mtimes  # reused, not rewritten
    for rir_id in pools.rirs:
        h = pools.load_rir(rir_id).astype(np.float64)
        peak = int(np.argmax(np.abs(h)))
        energy = np.cumsum(h[peak:] ** 2)
        tenth = len(energy) // 10
        assert 0 < peak < 0.05 * SR  # the direct path arrives first, within the room's size
        assert energy[-1] - energy[-tenth] < 0.01 * energy[-1]  # it decays
        assert energy[-1] - energy[0] > 0.05 * energy[-1]  # and it reverberates
    other = build_pools(augment_spec(None, noise_root, simulate_rirs=2), seed=6, work_dir=str(work))
    assert not np.array_equal(other.load_rir("sim/room_00"), pools.load_rir("sim/room_00"))
