"""Engines run the pending shards of an audit: in this process, or on a Ray cluster.

Both engines call :func:`salience_audit.audit.worker.run_shard` on the same shards
and write to the same store, so their per-sample results are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from salience_audit.audit.config import AuditConfig
from salience_audit.audit.plan import Shard
from salience_audit.audit.worker import RunRef, ShardReport, run_shard
from salience_audit.data.sample import Sample
from salience_audit.errors import SalienceAuditError

ENGINES = ("local", "ray")

ShardJob = tuple[Shard, list[RunRef], list[Sample]]
Progress = Callable[[ShardReport], None]


def run_local(jobs: Sequence[ShardJob], config: AuditConfig, out_dir: str, on_done: Progress) -> None:
    """Run shards one after another in this process (models cached between shards)."""
    for shard, runs, samples in jobs:
        on_done(run_shard(shard, runs, samples, config, out_dir))


def run_ray(
    jobs: Sequence[ShardJob],
    config: AuditConfig,
    out_dir: str,
    on_done: Progress,
    address: str | None = None,
    num_cpus: int | None = None,
) -> None:
    """Run shards as Ray tasks: one task per shard, one GPU per task when the cluster has GPUs.

    ``address``: an existing cluster (``ray://host:10001`` or ``auto``); ``None`` starts a
    local Ray instance. The output folder must be reachable by every worker (shared
    file system) for a multi-node cluster.
    """
    try:
        import ray
    except ImportError as err:
        raise SalienceAuditError(
            "the ray engine needs Ray: pip install 'salience-audit[ray]' (or pip install 'ray[default]')"
        ) from err

    started_here = False
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"num_cpus": num_cpus, "include_dashboard": False}
        ray.init(ignore_reinit_error=True, log_to_driver=False, **kwargs)
        started_here = True
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        use_gpu = gpus >= 1 and config.device in ("auto", "cuda")
        remote = ray.remote(num_gpus=1 if use_gpu else 0, num_cpus=1, max_retries=2)(run_shard)
        # Large, shared inputs go to the object store once.
        sample_refs: dict[int, object] = {}
        pending = []
        for shard, runs, samples in jobs:
            key = id(samples)
            if key not in sample_refs:
                sample_refs[key] = ray.put(samples)
            pending.append(remote.remote(shard, runs, sample_refs[key], config, out_dir))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            on_done(ray.get(done[0]))
    finally:
        if started_here:
            ray.shutdown()
