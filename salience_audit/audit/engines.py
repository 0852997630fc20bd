"""Engines run the pending shards of an audit: in this process, or on a Ray cluster.

Both engines call :func:`salience_audit.audit.worker.run_shard` on the same shards
and write to the same store, so their per-sample results are identical.

The Ray engine (see ``docs/scaling.md``):

- one task per shard; one GPU per task when the cluster has GPUs (and the device is
  ``auto`` or ``cuda``), else ``max(1, num_workers)`` CPUs per task;
- each task receives only its own shard's samples (never the whole dataset) and the
  group's run references, put once per group in the object store;
- at most a few tasks per slot are in flight, so the object store and the driver hold
  a bounded number of shards' inputs whatever the dataset size;
- a failing task stops the audit with an error naming its shard; shards finished by
  then stay written and a rerun resumes after them;
- workers import this package from the driver's environment: a local instance started
  here gets the package folder on ``PYTHONPATH``; on a multi-node cluster install the
  package on every node or pass ``runtime_env`` (e.g. ``{"py_modules": [...]}``);
- Ray's usage statistics are off unless ``RAY_USAGE_STATS_ENABLED`` is already set;
- Ray is shut down afterwards only if this function started it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import salience_audit
from salience_audit.audit.config import AuditConfig
from salience_audit.audit.plan import Shard
from salience_audit.audit.worker import RunRef, ShardReport, run_shard
from salience_audit.data.sample import Sample
from salience_audit.errors import SalienceAuditError, require_extra

ENGINES = ("local", "ray")

ShardJob = tuple[Shard, list[RunRef], list[Sample]]
Progress = Callable[[ShardReport], None]

TASKS_PER_SLOT = 2
"""Tasks in flight per task slot of the cluster (keeps every slot busy between tasks)."""


class ShardFailedError(SalienceAuditError):
    """A shard's task failed; the message names the shard and carries the task's error."""


def run_local(jobs: Sequence[ShardJob], config: AuditConfig, out_dir: str, on_done: Progress) -> None:
    """Run shards one after another in this process (models cached between shards)."""
    for shard, runs, samples in jobs:
        on_done(run_shard(shard, runs, samples, config, out_dir))


def _describe(shard: Shard) -> str:
    return f"shard {shard.id} (group {shard.group!r}, dataset {shard.dataset!r}, images {shard.start}-{shard.stop - 1})"


def _package_parent() -> str:
    """The folder that holds the ``salience_audit`` package (what workers need on sys.path)."""
    return str(Path(salience_audit.__file__).resolve().parent.parent)


def _local_runtime_env(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """``runtime_env`` for a local instance: the package folder is put first on workers' PYTHONPATH.

    Workers started by a local instance use the driver's Python (so its virtualenv); adding the
    package folder makes a source checkout importable too. Only environment variables are set,
    nothing is downloaded or packaged.
    """
    env = dict(runtime_env or {})
    env_vars = dict(env.get("env_vars") or {})
    paths = [_package_parent()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env_vars.setdefault("PYTHONPATH", os.pathsep.join(dict.fromkeys(paths)))
    env_vars.setdefault("RAY_USAGE_STATS_ENABLED", os.environ.get("RAY_USAGE_STATS_ENABLED", "0"))
    env["env_vars"] = env_vars
    return env


def _task_error(shard: Shard, err: BaseException) -> ShardFailedError:
    """A clear error for a failed task: the shard, then the task's own exception."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException):
        detail = f"{type(cause).__name__}: {cause}"
    else:  # worker crashed, out of memory, node died ...
        detail = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return ShardFailedError(
        f"{_describe(shard)} failed on the Ray cluster: {detail}. "
        "Shards finished before it are kept; fix the cause and run the same command to resume."
    )


def run_ray(
    jobs: Sequence[ShardJob],
    config: AuditConfig,
    out_dir: str,
    on_done: Progress,
    address: str | None = None,
    num_cpus: int | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> None:
    """Run shards as Ray tasks: one task per shard, one GPU per task when the cluster has GPUs.

    Args:
        jobs: (shard, runs of its group, the whole dataset) per pending shard.
        config: the audit settings (identical for every task).
        out_dir: output folder; for a multi-node cluster it must be a shared file system
            path that every node sees under the same name.
        on_done: called in the driver with each finished shard's report.
        address: an existing cluster (``auto``, ``ray://head:10001`` ...); ``None`` uses the
            Ray instance already initialised in this process, or starts a local one.
        num_cpus: CPUs of a local instance started here (default: all).
        runtime_env: Ray runtime environment for the workers (multi-node: how they get
            this package, e.g. ``{"py_modules": ["/path/to/salience_audit"]}`` or a
            ``pip`` list on a cluster that can install packages).
    """
    ray = require_extra("ray", "ray", "the ray engine")
    RayError = require_extra("ray.exceptions", "ray", "the ray engine").RayError  # noqa: N806 - a class
    if not jobs:
        return

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any]
        if address:
            kwargs = {"address": address}
            if runtime_env:
                kwargs["runtime_env"] = runtime_env
        else:
            kwargs = {
                "num_cpus": num_cpus,
                "include_dashboard": False,
                "runtime_env": _local_runtime_env(runtime_env),
            }
        try:
            ray.init(log_to_driver=False, configure_logging=False, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            raise SalienceAuditError(f"cannot start or reach {where}: {err}") from err
        started_here = True
    try:
        _submit_all(ray, RayError, jobs, config, out_dir, on_done)
    finally:
        if started_here:
            ray.shutdown()


def _submit_all(
    ray: Any, ray_error: type[BaseException], jobs: Sequence[ShardJob], config: AuditConfig, out_dir: str, on_done: Progress
) -> None:
    """Submit the shards through a bounded window of in-flight tasks; collect them as they finish."""
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    use_gpu = gpus >= 1 and config.device.split(":")[0] in ("auto", "cuda")
    task_cpus = max(1, config.num_workers)
    if use_gpu:
        # Ray gives each task its own GPU as cuda:0 (CUDA_VISIBLE_DEVICES).
        config = replace(config, device="cuda")
        slots = int(gpus)
    else:
        slots = max(1, int(float(resources.get("CPU", 1)) // task_cpus))
    remote = ray.remote(num_gpus=1 if use_gpu else 0, num_cpus=task_cpus, max_retries=2)(run_shard)

    config_ref = ray.put(config)
    run_refs: dict[str, Any] = {}
    queue = deque(jobs)
    in_flight: dict[Any, Shard] = {}
    window = max(2, TASKS_PER_SLOT * slots)
    try:
        while queue or in_flight:
            while queue and len(in_flight) < window:
                shard, runs, samples = queue.popleft()
                if shard.group not in run_refs:
                    run_refs[shard.group] = ray.put(list(runs))
                # Only this shard's samples travel; run_shard accepts the shard's own slice.
                own = list(samples[shard.start : shard.stop])
                ref = remote.remote(shard, run_refs[shard.group], own, config_ref, out_dir)
                in_flight[ref] = shard
            done, _ = ray.wait(list(in_flight), num_returns=1)
            shard = in_flight.pop(done[0])
            try:
                report = ray.get(done[0])
            except ray_error as err:
                raise _task_error(shard, err) from err
            on_done(report)
    finally:
        for ref in in_flight:
            ray.cancel(ref)
