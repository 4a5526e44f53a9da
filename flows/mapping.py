"""Per-shard stages as at most `run.max_task_runs_per_stage` Prefect task runs: consecutive shards grouped.

Why: Prefect pays a fixed cost per task run (state changes on the server, a future, a log context;
~20-30 ms of a worker, measured in benchmarks/RESULTS.md), and a flow run with tens of thousands of
task runs strains the server. At 10 million utterances and 500-item shards a stage has 16,384
shards; grouped, it is 2,000 task runs of 8-9 shards each. A group's task runs its shards one after
another, in order, calling the stage's own task function (`task_fn.fn`), so each shard does exactly
what it does alone (same inputs, same outputs, same files): results and the release do not depend on
the grouping. Retrying a group redoes only its unfinished shards, because shard steps reuse what is
already written under `work/`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task


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


def map_shards(task_fn: Any, spec: Any, uris: list[str], max_task_runs: int, **kwargs: Any) -> list[Any]:
    """Run a per-shard task over `uris` in at most `max_task_runs` task runs; results in shard order.

    `task_fn` is a Prefect task taking `(spec, uri, position, **kwargs)`. With at most
    `max_task_runs` shards each shard is its own run of `task_fn`, as before; with more, each group
    is one run named after `task_fn` (with its retry settings) that calls `task_fn.fn` per shard.
    """
    labels = positions(len(uris))
    if len(uris) <= max_task_runs:
        futures = [task_fn.submit(spec, u, p, **kwargs) for u, p in zip(uris, labels, strict=True)]
        return [f.result() for f in futures]
    groups = shard_groups(len(uris), max_task_runs)
    futures = []
    for group in groups:
        runner = shard_group_task.with_options(
            name=task_fn.name, retries=task_fn.retries, retry_delay_seconds=task_fn.retry_delay_seconds,
            retry_condition_fn=task_fn.retry_condition_fn,
            task_run_name=f"{task_fn.name}[{group.start + 1}-{group.stop}/{len(uris)}]")
        futures.append(runner.submit(task_fn.fn, spec, [uris[i] for i in group], [labels[i] for i in group],
                                     dict(kwargs)))
    results = [r for f in futures for r in f.result()]
    if len(results) != len(uris):  # a group returning the wrong count would misalign shards silently
        raise RuntimeError(f"{task_fn.name}: {len(results)} shard results for {len(uris)} shards")
    return results
