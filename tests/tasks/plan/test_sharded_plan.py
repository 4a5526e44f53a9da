"""The sharded plan: the same items in 1, 3 or 7 plan shards give the same plan, equal to the whole-frame rules.

Plan shards group consecutive labelling shards (`run.part_rows` // their mean rows of them); `_spec`
defaults to one labelling shard per plan shard, so the tests below exercise the cross-shard reductions.

Items come from benchmarks/plan_items.py (three sources, speakers spread over shards, human and model
labels, missing labels, cross-source duplicate segments, PII, too-short clips). The whole-frame
functions (`resolve_duplicate_segments`, `sample_asr_rows`, `split_shares`, `plausibility.screen`) are
the reference the reductions must reproduce.
"""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.plan_items import item_frame, write_frames
from manifests.schema import SENTIMENTS
from tasks.core.shards import read_frame, stable_hash
from tasks.plan import balance, pii, plausibility, quota, splits
from tasks.plan.split_report import split_shares
from tasks.plan.step import _require_labels, plan_stages
from tasks.spec import parse_spec

N_ITEMS = 900


def _spec(out: Path, balance_cfg: dict | None = None, policy: dict | None = None, part_rows: int = 100):
    """`run.shard_size` 100: `part_rows` 100 puts each labelling shard in its own plan shard."""
    sources = [{"name": s, "kind": "folder", "path": "/nonexistent"} for s in ("commonvoice", "podcast", "meld")]
    if policy:
        sources[0].update(policy)
    return parse_spec({"name": "t", "output": str(out), "augment": {"enabled": False}, "pii": {"detect": "local"},
                       "balance": balance_cfg or {"max_source_share": 0.5}, "sources": sources,
                       "run": {"shard_size": 100, "part_rows": part_rows}})


def _shards(root: Path, items: pd.DataFrame, k: int) -> list[dict]:
    shard_of = items["utterance_id"].map(lambda u: int(stable_hash("layout", u)[:8], 16) % k)
    frames = [part for _, part in items.groupby(shard_of, sort=True)]
    return [{"items_uri": u, "rejects_uris": [], "reused": False} for u in write_frames(str(root / f"k{k}"), frames)]


def _tables(plan: dict) -> dict[str, pd.DataFrame]:
    def cat(key: str, order: list[str]) -> pd.DataFrame:
        frame = pd.concat([read_frame(s[key]) for s in plan["shards"]], ignore_index=True)
        frame = frame.sort_values(order).reset_index(drop=True)
        return frame.astype(object).where(frame.notna(), None)  # an all-null shard column reads as None

    return {"utterances": cat("utterances_uri", ["utterance_id"]), "rows": cat("rows_uri", ["row_id"]),
            "rejects": cat("rejects_uri", ["input_ref", "stage", "reason"])}


def _whole_frame(spec, items: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    """Today's whole-corpus path: (planned items, duplicate rejects, ASR (uid, variant), balance report)."""
    dedup = splits.resolve_duplicate_segments(items)
    kept, _ = _require_labels(dedup.items.reset_index(drop=True), spec)
    kept = splits.assign_splits(kept, spec.splits, spec.seed)
    kept, _ = pii.flag_items(kept, spec.pii)
    sane, _, _, _ = plausibility.screen(kept, spec)
    out = pii.asr_excluded(kept, spec.pii)
    asr, report = balance.sample_asr_rows(kept[~out & sane], spec.balance, spec.seed, eligibility=spec.eligibility)
    return kept, dedup.rejects, asr[["utterance_id", "variant"]], report


def test_one_three_and_seven_plan_shards_give_the_same_plan(tmp_path: Path) -> None:
    """One labelling shard, then 7 labelling shards (~129 rows each) grouped by `run.part_rows` into 1, 3 and 7
    plan shards (their shard results carry no `rows`: the plan reads the counts from the files)."""
    items = item_frame(N_ITEMS, seed=1)
    labelled = _shards(tmp_path, items, 7)
    plans = {0: plan_stages(_spec(tmp_path / "out0"), _shards(tmp_path, items, 1), n_parts=1)}
    for part_rows, parts in ((900, 1), (400, 2), (100, 4)):  # 7, 3 and 1 labelling shard(s) per plan shard
        spec = _spec(tmp_path / f"out{part_rows}", part_rows=part_rows)
        plans[part_rows] = plan_stages(spec, labelled, n_parts=parts)
    assert [len(plans[k]["shards"]) for k in (0, 900, 400, 100)] == [1, 1, 3, 7]
    assert plans[100]["row_shard_uris"] == [s["rows_uri"] for s in plans[100]["shards"]]
    assert [s["index"] for s in plans[400]["shards"]] == list(range(3))
    base = _tables(plans[0])
    assert base["rows"]["in_asr"].sum() > 0 and (base["rejects"]["reason"] == "duplicate_segment").sum() > 0
    for k in (900, 400, 100):
        other = _tables(plans[k])
        for name in base:
            pd.testing.assert_frame_equal(base[name], other[name], check_dtype=False)
        for section in ("balance_report", "split_shares", "pii", "plausibility", "eligibility", "pools"):
            assert plans[k][section] == plans[0][section], section


def test_plan_shards_group_consecutive_labelling_shards() -> None:
    """per = part_rows // mean rows of a labelling shard (at least 1); the last plan shard takes the rest."""
    from tasks.plan.shard_step import plan_inputs

    labelled = [{"items_uri": f"i{k}", "rejects_uris": [f"r{k}a", f"r{k}b"], "reused": False, "rows": 100}
                for k in range(7)]
    groups = plan_inputs(_spec(Path("/tmp/x"), part_rows=300), labelled)
    assert [g["items_uris"] for g in groups] == [["i0", "i1", "i2"], ["i3", "i4", "i5"], ["i6"]]
    assert groups[2]["rejects_uris"] == ["r6a", "r6b"] and groups[0]["rejects_uris"][:3] == ["r0a", "r0b", "r1a"]
    assert len(plan_inputs(_spec(Path("/tmp/x"), part_rows=99), labelled)) == 7  # fewer rows than a shard: 1 each
    assert len(plan_inputs(_spec(Path("/tmp/x"), part_rows=50_000), labelled)) == 1
    # rows, not shard_size: half-full shards (a power of two of them) put twice as many in a plan shard
    half = [{**r, "rows": 50} for r in labelled]
    assert [len(g["items_uris"]) for g in plan_inputs(_spec(Path("/tmp/x"), part_rows=300), half)] == [6, 1]
    uneven = [{**r, "rows": n} for r, n in zip(labelled, (10, 90, 0, 200, 100, 50, 250), strict=True)]
    assert [len(g["items_uris"]) for g in plan_inputs(_spec(Path("/tmp/x"), part_rows=200), uneven)] == [2, 2, 2, 1]
    assert len(plan_inputs(_spec(Path("/tmp/x"), part_rows=300), [{**r, "rows": 0} for r in labelled])) == 7
    assert parse_spec({"name": "t", "output": "/tmp/x", "sources": [{"name": "s", "kind": "folder", "path": "/p"}]}
                      ).run.part_rows == 50_000


@pytest.mark.parametrize("cfg", [{"method": "undersample", "max_source_share": 0.5},
                                 {"method": "oversample"},
                                 {"method": "target_size", "target_per_class": 200, "max_source_share": 0.4}])
def test_balance_from_counts_and_rank_thresholds_equals_the_whole_frame_sample(tmp_path: Path, monkeypatch,
                                                                              cfg: dict) -> None:
    # 16 coarse bins: many ranks share the boundary bin, so the exact pass over it decides
    monkeypatch.setattr(quota, "rank_bin", lambda rank: int(rank[0], 16))
    items = item_frame(N_ITEMS, seed=2)
    spec = _spec(tmp_path / "out", cfg)
    plan = plan_stages(spec, _shards(tmp_path, items, 5), n_parts=2)
    rows = _tables(plan)["rows"]
    kept, _, asr, report = _whole_frame(spec, items)
    picked = rows[rows["in_asr"]]
    assert sorted(zip(picked["utterance_id"], picked["variant"], strict=True)) == \
        sorted(zip(asr["utterance_id"], asr["variant"], strict=True))
    for key in ("splits", "excluded", "by_source", "warnings", "eligibility"):
        assert plan["balance_report"][key] == report[key], key
    train = picked[picked["split"] == "train"]["sentiment"].value_counts()
    assert set(train.index) == set(SENTIMENTS) and train.max() - train.min() <= 1  # uniform train split
    if cfg["method"] != "undersample":
        assert picked["variant"].max() >= 1  # oversampled classes still give new variants
    assert plan["split_shares"] == split_shares(kept, spec)[0]


def test_cross_shard_duplicate_segments_resolve_like_the_whole_frame_rule(tmp_path: Path) -> None:
    items = item_frame(N_ITEMS, seed=3)
    shards = _shards(tmp_path, items, 7)
    spec = _spec(tmp_path / "out")
    plan = plan_stages(spec, shards, n_parts=4)
    got = _tables(plan)["rejects"]
    got = got[got["reason"] == "duplicate_segment"].reset_index(drop=True)
    want = splits.resolve_duplicate_segments(items).rejects.sort_values(["input_ref", "stage", "reason"])
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_dtype=False)
    shard_of = {u: i for i, s in enumerate(shards) for u in read_frame(s["items_uri"])["utterance_id"]}
    seg = items.set_index("utterance_id")["segment_key"]
    cross = [u for u in got["input_ref"] if len({shard_of[v] for v in seg[seg == seg[u]].index}) > 1]
    assert cross  # the case that needs the shuffle: a loser and its winner in different shards
    utterances = _tables(plan)["utterances"]
    assert utterances["segment_key"].is_unique and not set(got["input_ref"]) & set(utterances["utterance_id"])


def test_utterance_stratified_source_keeps_its_policy_in_any_layout(tmp_path: Path) -> None:
    policy = {"split_policy": "utterance_stratified"}
    spec = _spec(tmp_path / "out", policy=policy)
    items = item_frame(N_ITEMS, seed=4)
    mine = items["source"] == "commonvoice"
    placed = splits.apply_source_policy(items[mine], spec.sources[0], spec.splits, spec.seed)  # as ingest does
    items = pd.concat([placed, items[~mine]]).sort_index()
    plans = [plan_stages(spec, _shards(tmp_path, items, k)) for k in (1, 5)]
    tables = [_tables(p)["utterances"] for p in plans]
    pd.testing.assert_frame_equal(tables[0], tables[1], check_dtype=False)
    cv = tables[1][tables[1]["source"] == "commonvoice"]
    assert set(cv["split_origin"]) == {"stratified"}
    want = placed.set_index("utterance_id")["split"]
    assert (cv.set_index("utterance_id")["split"] == want.loc[cv["utterance_id"]]).all()
    entry = plans[1]["split_shares"]["by_source"]["commonvoice"]
    assert entry["policy"] == "utterance_stratified" and entry["speakers_in_several_splits"]
    assert plans[0]["split_shares"] == plans[1]["split_shares"]


def test_allocation_from_counts_equals_the_round_robin_pick_order() -> None:
    rng = random.Random(7)
    for _ in range(300):
        counts = {f"s{i}": rng.randint(1, 30) for i in range(rng.randint(1, 5))}
        n = rng.randint(1, sum(counts.values()))
        cap = rng.randint(1, n)
        by_source = {s: [f"{s}-{j}" for j in range(c)] for s, c in counts.items()}
        order = balance.pick_order(by_source, n, cap, seed=3)
        want = {s: sum(1 for u in order if u.startswith(f"{s}-")) for s in counts}
        assert quota.allocation(counts, n, cap, seed=3) == want, (counts, n, cap)


def test_plan_steps_on_dask_worker_processes_equal_the_in_process_plan(tmp_path: Path) -> None:
    """The plan's steps run on a 2-process Dask cluster (as under `run.task_runner: dask`) give the same plan."""
    from distributed import Client, LocalCluster

    from tasks.plan.shard_step import STEPS

    items = item_frame(400, seed=5)
    spec = _spec(tmp_path / "out")
    shards = _shards(tmp_path, items, 4)
    here = plan_stages(spec, shards, n_parts=2)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        def dask_map(step: str, calls: list[tuple]) -> list:
            return client.gather([client.submit(STEPS[step], *args, pure=False) for args in calls])

        spec2 = _spec(tmp_path / "out-dask")
        there = plan_stages(spec2, shards, mapper=dask_map, n_parts=2)
    a, b = _tables(here), _tables(there)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=False)
    for section in ("balance_report", "split_shares", "pii", "plausibility", "eligibility"):
        assert here[section] == there[section], section


def test_plan_logs_each_step_and_its_time(tmp_path: Path) -> None:
    """Long plans name their slow step: one timed line per mapped step, then the total and the reductions."""
    lines: list[str] = []
    items = item_frame(300, seed=3)
    plan_stages(_spec(tmp_path / "out"), _shards(tmp_path, items, 3), log=lambda fmt, *a: lines.append(fmt % a),
                n_parts=2)
    steps = [line.split()[2].rstrip(":") for line in lines if line.startswith("plan step ")]
    assert steps[:4] == ["dedup_keys", "resolve_part", "screen_shard", "count_groups"] and steps[-1] == "finish_shard"
    assert any(line.startswith("plan step resolve_part: 2 call(s) in ") for line in lines)
    total = [line for line in lines if line.startswith("plan: 3 plan shard(s), 2 partition(s) in ")]
    assert len(total) == 1 and "in the steps" in total[0]
