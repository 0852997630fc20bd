"""The Ray engine gives the local engine's per-sample results, fails clearly, and cleans up after itself.

One real local Ray instance (2 CPUs, no dashboard, usage statistics off) serves the module;
the engine's bookkeeping (start/stop, bounded submission window, GPU placement) is also
checked against a stand-in ``ray`` module, which needs no cluster.
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home, before ray is imported

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fixtures_audit import AuditSetup, audit_setup  # noqa: E402,F401  (session fixture)

from salience_audit.audit import engines  # noqa: E402
from salience_audit.audit.config import AuditConfig  # noqa: E402
from salience_audit.audit.pipeline import run_audit  # noqa: E402
from salience_audit.audit.plan import Shard, plan_shards  # noqa: E402
from salience_audit.audit.worker import RunRef, ShardReport  # noqa: E402
from salience_audit.data.manifest import read_manifest  # noqa: E402
from salience_audit.errors import SalienceAuditError  # noqa: E402
from salience_audit.results.store import ResultStore  # noqa: E402

KEYS = ["dataset", "group", "run", "measure", "variant", "index"]
MEASURES = ("entropy", "noise", "transforms", "stability", "degradation")


def _config() -> AuditConfig:
    return AuditConfig(measures=MEASURES, batch_size=6, shard_size=6, device="cpu", gallery_size=1)


def _rows(out: Path) -> pd.DataFrame:
    return ResultStore(out).read_rows().sort_values(KEYS, kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------ real Ray


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'salience-audit[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_audit_equals_local_audit(
    audit_setup: AuditSetup, ray_cluster: Any, tmp_path: Path  # noqa: F811
) -> None:
    datasets = {"faces": read_manifest(str(audit_setup.manifest))[:12]}  # 2 groups x 2 shards
    groups = {name: [str(p) for p in runs] for name, runs in audit_setup.groups.items()}
    local = run_audit(groups, datasets, tmp_path / "local", _config(), progress=False, report=False)
    distributed = run_audit(
        groups, datasets, tmp_path / "ray", _config(), engine="ray", progress=False, report=False
    )
    assert ray_cluster.is_initialized(), "run_ray shut down a Ray instance it did not start"

    want, got = _rows(local.out_dir), _rows(distributed.out_dir)
    assert len(want) > 0 and not got.duplicated(KEYS).any()
    assert sorted(p.name for p in local.results_dir.iterdir()) == sorted(p.name for p in distributed.results_dir.iterdir())
    pd.testing.assert_frame_equal(got.drop(columns="value"), want.drop(columns="value"), check_exact=True)
    pd.testing.assert_series_equal(got["value"], want["value"], check_exact=False, rtol=0, atol=1e-12)
    assert set(want["measure"]) >= {"entropy", "noise_ssim", "equivariance", "stability_ssim", "degrade_ssim"}


def test_ray_task_error_names_the_shard(
    audit_setup: AuditSetup, ray_cluster: Any, tmp_path: Path  # noqa: F811
) -> None:
    samples = read_manifest(str(audit_setup.manifest))
    shard = plan_shards(["broken"], {"faces": samples}, 6)[1]
    runs = [RunRef("gone", path=str(tmp_path / "no-such-run")), RunRef("gone2", path=str(tmp_path / "no-such-run2"))]
    with pytest.raises(engines.ShardFailedError) as info:
        engines.run_ray([(shard, runs, samples)], _config(), str(tmp_path / "out"), lambda r: None)
    message = str(info.value)
    assert shard.id in message and "'broken'" in message and "images 6-11" in message
    assert "no-such-run" in message  # the task's own error is kept
    assert ray_cluster.is_initialized()


# ------------------------------------------------------------------ engine logic, stand-in ray


@dataclass
class FakeRay:
    """Just enough of the ``ray`` module API for :func:`engines.run_ray`, executing tasks inline."""

    resources: dict[str, float] = field(default_factory=lambda: {"CPU": 2.0})
    initialized: bool = False
    init_kwargs: dict[str, Any] = field(default_factory=dict)
    shutdowns: int = 0
    remote_options: dict[str, Any] = field(default_factory=dict)
    max_in_flight: int = 0
    in_flight: int = 0
    calls: list[tuple[Shard, int, str]] = field(default_factory=list)
    fail_on: str | None = None

    def module(self) -> types.ModuleType:
        mod = types.ModuleType("ray")
        exc = types.ModuleType("ray.exceptions")

        class RayError(Exception):
            pass

        class RayTaskError(RayError):
            def __init__(self, cause: BaseException) -> None:
                super().__init__(str(cause))
                self.cause = cause

        exc.RayError = RayError  # type: ignore[attr-defined]
        self.task_error = RayTaskError
        mod.exceptions = exc  # type: ignore[attr-defined]
        for name in ("is_initialized", "init", "shutdown", "cluster_resources", "put", "remote", "wait", "get", "cancel"):
            setattr(mod, name, getattr(self, name))
        return mod

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **kwargs: Any) -> None:
        self.initialized, self.init_kwargs = True, kwargs

    def shutdown(self) -> None:
        self.initialized, self.shutdowns = False, self.shutdowns + 1

    def cluster_resources(self) -> dict[str, float]:
        return self.resources

    def put(self, obj: Any) -> Any:
        return ("ref", obj)

    def remote(self, **options: Any) -> Any:
        self.remote_options = options
        fake = self

        class Remote:
            def __init__(self, fn: Any) -> None:
                self.fn = fn

            def remote(self, shard: Shard, runs: Any, samples: list, config: Any, out_dir: str) -> Any:
                fake.in_flight += 1
                fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                fake.calls.append((shard, len(samples), config[1].device))
                return ("task", shard)

        return Remote

    def wait(self, refs: list, num_returns: int = 1) -> tuple[list, list]:
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: Any) -> ShardReport:
        self.in_flight -= 1
        shard = ref[1]
        if shard.id == self.fail_on:
            raise self.task_error(ValueError("boom"))
        return ShardReport(shard.id, len(shard), [], 0.0)

    def cancel(self, ref: Any) -> None:
        self.in_flight -= 1


def _jobs(n_images: int = 40, shard_size: int = 4) -> list[tuple[Shard, list[RunRef], list]]:
    samples = list(range(n_images))  # stand-ins: the engine only slices them
    shards = plan_shards(["g1", "g2"], {"d": samples}, shard_size)  # type: ignore[dict-item]
    runs = [RunRef("a", path="x"), RunRef("b", path="y")]
    return [(s, runs, samples) for s in shards]


def test_run_ray_starts_and_stops_only_its_own_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake.module())
    monkeypatch.setitem(sys.modules, "ray.exceptions", sys.modules["ray"].exceptions)
    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    reports: list[ShardReport] = []
    jobs = _jobs()
    engines.run_ray(jobs, _config(), "/unused", reports.append, num_cpus=2)
    assert fake.shutdowns == 1 and not fake.initialized
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    assert fake.init_kwargs["include_dashboard"] is False and fake.init_kwargs["num_cpus"] == 2
    pythonpath = fake.init_kwargs["runtime_env"]["env_vars"]["PYTHONPATH"].split(os.pathsep)
    assert pythonpath[0] == engines._package_parent()
    assert sorted(r.shard_id for r in reports) == sorted(s.id for s, _, _ in jobs)
    # Each task gets only its own shard's samples; a bounded number of tasks is in flight.
    assert all(n == len(shard) for shard, n, _ in fake.calls)
    assert fake.max_in_flight <= engines.TASKS_PER_SLOT * 2 < len(jobs)
    assert fake.remote_options["num_gpus"] == 0

    # Already initialised by the caller: used as is, never shut down.
    fake.initialized, fake.shutdowns = True, 0
    engines.run_ray(jobs[:3], _config(), "/unused", lambda r: None)
    assert fake.initialized and fake.shutdowns == 0


def test_run_ray_gpu_placement_and_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRay(resources={"CPU": 16.0, "GPU": 2.0}, initialized=True)
    monkeypatch.setitem(sys.modules, "ray", fake.module())
    monkeypatch.setitem(sys.modules, "ray.exceptions", sys.modules["ray"].exceptions)
    jobs = _jobs()
    config = AuditConfig(device="cuda:1", shard_size=4)
    engines.run_ray(jobs, config, "/unused", lambda r: None)
    assert fake.remote_options["num_gpus"] == 1
    assert {device for _, _, device in fake.calls} == {"cuda"}  # each task sees its own GPU as cuda:0
    assert fake.max_in_flight <= engines.TASKS_PER_SLOT * 2

    fake.fail_on = jobs[5][0].id
    fake.in_flight = 0
    with pytest.raises(engines.ShardFailedError, match=r"ValueError: boom") as info:
        engines.run_ray(jobs, config, "/unused", lambda r: None)
    assert jobs[5][0].id in str(info.value) and "resume" in str(info.value)
    assert fake.in_flight == 0  # the other in-flight tasks were cancelled


def test_run_ray_without_ray_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(SalienceAuditError, match=r'pip install "salience-audit\[ray\]"') as info:
        engines.run_ray(_jobs()[:1], _config(), "/unused", lambda r: None)
    assert info.value.exit_code == 3  # a missing optional dependency (docs/cli.md)
