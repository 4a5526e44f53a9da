"""Prefect's cost per task run for a per-shard stage (flows/mapping.py), with threads and with Dask.

A flow maps a shard task whose function does nothing (returns its shard's URI) over `--shards`
shards through `flows.mapping.map_shards`, capped at `--max-runs` task runs: every second and CPU
second the stage takes is orchestration. Runs in a fresh process per case (threads: the embedded
Prefect server; dask: a local cluster of 2 worker processes and a `prefect server start`), sampled
like benchmarks/plan_scale.py. Reports wall and CPU (flow + server + workers) per task run.

    nice -n 10 .venv/bin/python benchmarks/task_overhead.py --shards 400 4000 --max-runs 400
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def child(runner: str, shards: int, max_runs: int, report: str) -> None:
    from flows.cli import _prefect_env

    _prefect_env()
    from prefect import flow, task

    from flows.build_dataset import task_runner_for
    from flows.mapping import map_shards
    from tasks.spec import parse_spec

    spec = parse_spec({"name": "overhead", "output": tempfile.mkdtemp(prefix="overhead-out-"),
                       "sources": [{"name": "s", "kind": "folder", "path": "/nonexistent"}],
                       "run": {"task_runner": runner, "max_workers": 2, "max_task_runs_per_stage": max_runs}})

    @task(name="noop-shard")
    def noop_shard(spec: Any, uri: str, position: str) -> dict[str, Any]:
        return {"items_uri": uri, "pid": os.getpid()}

    @flow(name="overhead")
    def stage() -> dict[str, Any]:
        map_shards(noop_shard, spec, ["warm-up"] * 4, max_runs)  # workers started, first runs paid
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        out = map_shards(noop_shard, spec, [f"shard-{i}" for i in range(shards)], max_runs)
        assert [r["items_uri"] for r in out] == [f"shard-{i}" for i in range(shards)]
        return {"stage_s": time.perf_counter() - t0, "flow_cpu_s": time.process_time() - cpu0,
                "pids": sorted({r["pid"] for r in out})}

    result = stage.with_options(task_runner=task_runner_for(spec))()
    Path(report).write_text(json.dumps(result))


def _tree_cpu(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def main() -> None:
    from plan_scale import Sampler, start_server

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=int, nargs="+", default=[400, 4000])
    ap.add_argument("--max-runs", type=int, default=400)
    ap.add_argument("--runners", nargs="+", choices=["threads", "dask"], default=["threads", "dask"])
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="task-overhead-"))
    server = start_server(root / "server") if "dask" in args.runners else None
    print("| runner | shards | task runs | stage wall s | wall ms per run (x2 workers) | CPU s (all processes, whole "
          "child incl. start-up) | stage CPU ms per run (flow process) | workers | load |\n" + "|---" * 9 + "|")
    try:
        for runner in args.runners:
            for shards in args.shards:
                report = root / f"{runner}-{shards}.json"
                env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(root / f"home-{runner}-{shards}")}
                env.pop("PREFECT_API_URL", None)
                if runner == "dask" and server:
                    env["PREFECT_API_URL"] = server[1]
                u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                s0 = _tree_cpu(server[0].pid) if runner == "dask" and server else 0.0
                with open(report.with_suffix(".log"), "w") as log:
                    proc = subprocess.Popen([sys.executable, __file__, "_child", runner, str(shards),
                                             str(args.max_runs), str(report)], env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
                    sampler = Sampler([proc.pid])
                    sampler.start()
                    proc.wait()
                    sampler.stop()
                u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = (u1.ru_utime - u0.ru_utime) + (u1.ru_stime - u0.ru_stime)
                cpu += (_tree_cpu(server[0].pid) - s0) if runner == "dask" and server else 0.0
                if proc.returncode != 0:
                    print(f"| {runner} | {shards} | failed (exit {proc.returncode}, log {report.with_suffix('.log')}) |")
                    continue
                rep = json.loads(report.read_text())
                runs = min(shards, args.max_runs)
                print(f"| {runner} | {shards:,} | {runs} | {rep['stage_s']:.1f} | {2000 * rep['stage_s'] / runs:.0f} | "
                      f"{cpu:.0f} | {1000 * rep['flow_cpu_s'] / runs:.0f} | {len(rep['pids'])} | "
                      f"{os.getloadavg()[0]:.1f} |", flush=True)
    finally:
        if server:
            server[0].terminate()
            server[0].wait(timeout=30)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "_child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    else:
        main()
