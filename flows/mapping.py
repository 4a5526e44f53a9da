"""Per-shard stages as at most `run.max_task_runs_per_stage` Prefect task runs: consecutive shards grouped.

Why: Prefect pays a fixed cost per task run (state changes on the server, a future, a log context;
~20-30 ms of a worker, measured in benchmarks/RESULTS.md), and a flow run with tens of thousands of
task runs strains the server. At 10 million utterances and 500-item shards a stage has 16,384
shards; grouped, it is 2,000 task runs of 8-9 shards each. A group's task runs its shards one after
another, in order, calling the stage's own task function (`task_fn.fn`), so each shard does exactly
what it does alone (same inputs, same outputs, same files): results and the release do not depend on
the grouping. Retrying a group redoes only its unfinished shards, because shard steps reuse what is
already written under `work/`.

At most `max_in_flight` task runs are submitted and unfinished at a time (`in_flight_limit`): on Dask
each submission holds its pickled arguments and Prefect context in the flow process until it ends,
so submitting a stage's 328 runs at once grew the 10-million-utterance flow by ~1.4 MB per run;
with the window, ~0.3 MB (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from prefect import task

IN_FLIGHT_PER_WORKER = 8
MIN_IN_FLIGHT = 16


def in_flight_limit(max_workers: int) -> int:
    """Task runs kept submitted per stage: enough queued that no worker waits, few enough to stay small."""
    return max(MIN_IN_FLIGHT, IN_FLIGHT_PER_WORKER * int(max_workers))


def submit_bounded(submit: Callable[[int], Any], n: int, max_in_flight: int) -> list[Any]:
    """`submit(i).result()` for i in range(n), in order, with at most `max_in_flight` submitted and not
    yet collected. The oldest is collected first (tasks of a stage are alike in size, so the window
    rarely waits on one slow run); a failed run raises at once, and no further run is submitted."""
    if max_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, not {max_in_flight}")
    results: list[Any] = [None] * n
    pending: deque[tuple[int, Any]] = deque()
    for i in range(n):
        if len(pending) >= max_in_flight:
            j, future = pending.popleft()
            results[j] = future.result()
        pending.append((i, submit(i)))
    while pending:
        j, future = pending.popleft()
        results[j] = future.result()
    return results


def shard_groups(n_shards: int, max_groups: int) -> list[range]:
    """Consecutive index ranges covering `range(n_shards)` in order: at most `max_groups` of them.

    One shard per group up to `max_groups` shards; beyond, exactly `max_groups` groups whose sizes
    differ by at most one (the first `n_shards % max_groups` groups hold one more).
    """
    if max_groups < 1:
        raise ValueError(f"max_groups must be at least 1, not {max_groups}")
    if n_shards <= 0:
        return []
    count = min(n_shards, max_groups)
    size, extra = divmod(n_shards, count)
    groups, start = [], 0
    for g in range(count):
        stop = start + size + (1 if g < extra else 0)
        groups.append(range(start, stop))
        start = stop
    return groups


def positions(n_shards: int) -> list[str]:
    """The "i/N" label each shard's step logs (1-based), independent of the grouping."""
    return [f"{i + 1}/{n_shards}" for i in range(n_shards)]


def run_group(step: Callable[..., Any], spec: Any, uris: list[str], labels: list[str],
              kwargs: dict[str, Any]) -> list[Any]:
    """Run `step(spec, uri, label, **kwargs)` for each shard of a group, in order; one result per shard."""
    return [step(spec, uri, label, **kwargs) for uri, label in zip(uris, labels, strict=True)]


@task(name="shard-group")
def shard_group_task(step: Callable[..., Any], spec: Any, uris: list[str], labels: list[str],
                     kwargs: dict[str, Any]) -> list[Any]:
    """One Prefect task run for a group of shards (renamed after the stage's task by `map_shards`)."""
    return run_group(step, spec, uris, labels, kwargs)


def map_shards(task_fn: Any, spec: Any, uris: list[str], max_task_runs: int, *,
               max_in_flight: int = MIN_IN_FLIGHT, **kwargs: Any) -> list[Any]:
    """Run a per-shard task over `uris` in at most `max_task_runs` task runs; results in shard order.

    `task_fn` is a Prefect task taking `(spec, uri, position, **kwargs)`. With at most
    `max_task_runs` shards each shard is its own run of `task_fn`, as before; with more, each group
    is one run named after `task_fn` (with its retry settings) that calls `task_fn.fn` per shard.
    At most `max_in_flight` runs are submitted and unfinished at once (`submit_bounded`).
    """
    labels = positions(len(uris))
    if len(uris) <= max_task_runs:
        return submit_bounded(lambda i: task_fn.submit(spec, uris[i], labels[i], **kwargs), len(uris), max_in_flight)
    groups = shard_groups(len(uris), max_task_runs)

    def submit(g: int) -> Any:
        group = groups[g]
        runner = shard_group_task.with_options(
            name=task_fn.name, retries=task_fn.retries, retry_delay_seconds=task_fn.retry_delay_seconds,
            retry_condition_fn=task_fn.retry_condition_fn,
            task_run_name=f"{task_fn.name}[{group.start + 1}-{group.stop}/{len(uris)}]")
        return runner.submit(task_fn.fn, spec, [uris[i] for i in group], [labels[i] for i in group], dict(kwargs))

    results = [r for rs in submit_bounded(submit, len(groups), max_in_flight) for r in rs]
    if len(results) != len(uris):  # a group returning the wrong count would misalign shards silently
        raise RuntimeError(f"{task_fn.name}: {len(results)} shard results for {len(uris)} shards")
    return results
