"""Grouping shards into at most `run.max_task_runs_per_stage` Prefect task runs (flows/mapping.py)."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect import flow, task
from prefect.runtime import task_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.mapping import in_flight_limit, map_shards, positions, run_group, shard_groups, submit_bounded


@pytest.mark.parametrize("n, most", [(0, 5), (1, 1), (3, 5), (5, 5), (6, 5), (7, 3), (16384, 2000), (2048, 2000),
                                     (10, 1)])
def test_groups_cover_every_shard_once_in_order_and_respect_the_cap(n: int, most: int) -> None:
    groups = shard_groups(n, most)
    assert [i for g in groups for i in g] == list(range(n))  # every shard once, in shard order
    assert len(groups) == min(n, most)
    sizes = [len(g) for g in groups]
    assert all(s >= 1 for s in sizes) and (not sizes or max(sizes) - min(sizes) <= 1)
    assert sizes == sorted(sizes, reverse=True)  # the larger groups first: a pure function of (n, most)


def test_sixteen_thousand_shards_make_two_thousand_runs_of_eight_or_nine() -> None:
    sizes = [len(g) for g in shard_groups(16384, 2000)]
    assert sizes.count(9) == 384 and sizes.count(8) == 1616


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        shard_groups(4, 0)


def test_run_group_calls_the_step_per_shard_in_order_with_its_own_position() -> None:
    calls = []

    def step(spec, uri, position, **kw):
        calls.append((spec, uri, position, kw))
        return uri.upper()

    assert run_group(step, "S", ["a", "b"], ["1/3", "2/3"], {"k": 1}) == ["A", "B"]
    assert calls == [("S", "a", "1/3", {"k": 1}), ("S", "b", "2/3", {"k": 1})]
    assert positions(3) == ["1/3", "2/3", "3/3"]


@task(name="fill-test", retries=2, retry_delay_seconds=0)
def _shard_task(spec: str, uri: str, position: str, factor: int = 1) -> dict:
    return {"uri": uri, "position": position, "value": int(uri[1:]) * factor, "spec": spec,
            "task_run": str(task_run.id), "task_name": task_run.task_name, "run_name": task_run.name}


@flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
def _mapped(n: int, most: int) -> list[dict]:
    return map_shards(_shard_task, "spec", [f"u{i}" for i in range(n)], most, factor=3)


def test_more_shards_than_the_cap_run_as_groups_with_results_in_shard_order(prefect_harness) -> None:
    results = _mapped(7, 3)
    assert [r["uri"] for r in results] == [f"u{i}" for i in range(7)]
    assert [r["value"] for r in results] == [3 * i for i in range(7)]
    assert [r["position"] for r in results] == [f"{i + 1}/7" for i in range(7)]  # as if run one by one
    runs = [r["task_run"] for r in results]
    assert len(set(runs)) == 3  # three task runs for seven shards
    assert [runs.count(r) for r in dict.fromkeys(runs)] == [3, 2, 2]  # consecutive shards share a run
    assert {r["task_name"] for r in results} == {"fill-test"}  # named after the stage's task
    assert results[0]["run_name"] == "fill-test[1-3/7]"


def test_up_to_the_cap_each_shard_is_its_own_task_run(prefect_harness) -> None:
    results = _mapped(3, 3)
    assert [r["value"] for r in results] == [0, 3, 6]
    assert len({r["task_run"] for r in results}) == 3


def test_the_plans_steps_grouped_under_the_cap_give_the_same_plan(prefect_harness, tmp_path, monkeypatch) -> None:
    """The plan's per-shard steps, mapped as Prefect tasks and grouped two runs per step, plan exactly
    what the in-process plan does."""
    import flows.build_dataset as build
    from benchmarks.plan_items import item_frame
    from flows.build_dataset import _plan_mapper
    from tasks.plan.step import plan_stages
    from tests.tasks.plan.test_sharded_plan import _shards, _spec, _tables

    items = item_frame(300, seed=5)
    spec = _spec(tmp_path / "out")
    spec.run.max_task_runs_per_stage = 2
    shards = _shards(tmp_path, items, 5)
    caps: list[tuple[int, int]] = []

    def recording(task_fn, step, calls, most, **kw):  # the real grouping, with its inputs recorded
        caps.append((len(calls), most))
        return map_shards(task_fn, step, calls, most, **kw)

    monkeypatch.setattr(build, "map_shards", recording)

    @flow
    def grouped() -> dict:
        return plan_stages(spec, shards, mapper=_plan_mapper(spec), n_parts=2)

    here = _tables(plan_stages(spec, shards, n_parts=2))
    mapped = _tables(grouped())
    for name, table in here.items():
        pd.testing.assert_frame_equal(mapped[name], table)
    assert caps and all(most == 2 for _, most in caps) and any(n > 2 for n, _ in caps)  # grouped steps ran


class _Future:
    def __init__(self, log: list, i: int, fail: bool = False) -> None:
        self.log, self.i, self.fail = log, i, fail

    def result(self) -> int:
        self.log.append(("result", self.i))
        if self.fail:
            raise RuntimeError(f"shard {self.i} failed")
        return self.i * 10


@pytest.mark.parametrize("n, window", [(0, 1), (1, 1), (5, 1), (7, 3), (7, 7), (7, 20)])
def test_submit_bounded_keeps_at_most_the_window_unfinished_and_results_in_order(n: int, window: int) -> None:
    log: list = []

    def submit(i: int) -> _Future:
        log.append(("submit", i))
        return _Future(log, i)

    assert submit_bounded(submit, n, window) == [i * 10 for i in range(n)]
    open_runs, most = 0, 0
    for kind, _ in log:
        open_runs += 1 if kind == "submit" else -1
        most = max(most, open_runs)
    assert most == min(n, window) and open_runs == 0
    assert [i for kind, i in log if kind == "result"] == list(range(n))  # collected oldest first


def test_submit_bounded_stops_submitting_after_a_failure() -> None:
    log: list = []

    def submit(i: int) -> _Future:
        log.append(("submit", i))
        return _Future(log, i, fail=i == 1)

    with pytest.raises(RuntimeError, match="shard 1 failed"):
        submit_bounded(submit, 10, 3)
    assert max(i for kind, i in log if kind == "submit") == 3  # the window was full; nothing after the failure
    with pytest.raises(ValueError, match="at least 1"):
        submit_bounded(submit, 2, 0)
    assert in_flight_limit(1) == 16 and in_flight_limit(2) == 16 and in_flight_limit(4) == 32


def test_a_small_window_gives_the_same_results_through_prefect(prefect_harness) -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def windowed(n: int, most: int, window: int) -> list[dict]:
        return map_shards(_shard_task, "spec", [f"u{i}" for i in range(n)], most, max_in_flight=window, factor=3)

    for most in (3, 50):  # grouped and one run per shard
        assert [r["value"] for r in windowed(9, most, 2)] == [i * 3 for i in range(9)]
