"""Audit one shard: load the group's runs once, stream the shard's images in batches.

This function is what every engine runs (in-process for the local engine, as a
Ray task for the distributed one). Models are cached per process, so a worker
that audits many shards of a group loads its runs once; the cache holds one group
at a time, so a worker's memory does not grow with the number of groups.

Memory per shard is bounded by the shard: its rows (one small record per image x run x
measure variant) and the current batch; side aggregates are running sums.

Devices: ``amp`` runs the model passes under autocast (bfloat16 on the CPU and on GPUs that
support it, else float16: ``device.amp_dtype``); maps and logits leave the extractor as float32
and every measure is computed outside autocast (SSIM in float64). ``channels_last`` converts
models and image batches to the channels-last memory format (on the CPU too, where oneDNN's
convolutions run faster in it; the extractor converts each batch at the model's input, the
measures keep contiguous images). On CUDA the
DataLoader pins memory; with ``num_workers > 0`` it prefetches and keeps its workers for
the whole shard.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from salience_audit.audit.batch import BatchAuditor, BatchInput, RunExtractor
from salience_audit.audit.config import AuditConfig
from salience_audit.audit.conventions import Conventions
from salience_audit.audit.plan import Shard
from salience_audit.data.images import ImageDataset
from salience_audit.data.sample import Sample
from salience_audit.device import amp_dtype, cpu_has_fast_bfloat16, resolve_device
from salience_audit.errors import InputError
from salience_audit.models.audit_model import AuditModel, load_run
from salience_audit.models.checkpoint import ModelRecipe, load_checkpoint
from salience_audit.results.schema import RowBuffer
from salience_audit.results.store import ResultStore
from salience_audit.salience.precomputed import MapRun
from salience_audit.salience.extract import SalienceExtractor

logger = logging.getLogger(__name__)

_MODEL_CACHE: dict[str, AuditModel] = {}


@dataclass(frozen=True)
class RunRef:
    """A run of a group: a run folder on disk, or an in-memory model (Python API)."""

    name: str
    path: str | None = None
    model: AuditModel | None = None
    trust_pickle: bool = False
    """Allow a ``model.pt`` that is a pickled whole model (runs code from the file; see ``load_run``)."""
    recipe: ModelRecipe | None = None
    """Set when ``path`` is a bare checkpoint file: how to rebuild its network."""
    maps: MapRun | None = None
    """Set for a run of precomputed maps (no model: only map measures apply)."""

    def cache_key(self, device: torch.device) -> str | None:
        """Key of this run in the per-process model cache (None for an in-memory model)."""
        return None if self.path is None else f"{self.path}@{device}@{self.trust_pickle}@{self.recipe}"

    def load(self, device: torch.device) -> AuditModel:
        if self.model is not None:
            return self.model.to(device).eval()
        if self.maps is not None:
            raise InputError(f"run {self.name!r} is a set of precomputed maps ({self.maps.where}); it has no model")
        assert self.path is not None
        key = f"{self.path}@{device}@{self.trust_pickle}@{self.recipe}"
        if key not in _MODEL_CACHE:
            if self.recipe is not None:
                model = load_checkpoint(self.path, self.recipe, name=self.name)
            else:
                model = load_run(self.path, trust_pickle=self.trust_pickle)
            _MODEL_CACHE[key] = model.to(device).eval()
        return _MODEL_CACHE[key]


@dataclass
class ShardReport:
    shard_id: str
    images: int
    rejected: list[tuple[str, int, str]]
    seconds: float


class TolerantDataset(Dataset):
    """Wraps :class:`ImageDataset`; with ``skip=True`` a bad image becomes a flagged placeholder."""

    def __init__(self, base: ImageDataset, samples: list[Sample], skip: bool) -> None:
        self.base = base
        self.samples = samples
        self.skip = skip

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            item = dict(self.base[i])
            item["ok"] = True
            item["error"] = ""
            return item
        except InputError as err:
            sample = self.samples[i]
            problem = err.problem
            if err.path is not None and sample.human_map is not None and err.path == str(sample.human_map):
                problem = f"human map {err.path}: {problem}"
            if not self.skip:  # name the manifest line too, as the pre-flight does
                raise InputError(f"{sample.path}: {problem}", sample.source or None, sample.line or None) from err
            size = self.base.size
            map_size = getattr(self.base, "map_size", None) or size
            return {
                "image": torch.zeros(3, size, size),
                "label": torch.tensor(self.samples[i].label, dtype=torch.int64),
                "index": i,
                "human_map": torch.zeros(map_size, map_size),
                "has_human_map": False,
                "ok": False,
                "error": problem,
            }


def _batch_generator(seed: int, dataset: str, first_index: int, device: torch.device) -> torch.Generator:
    """Noise generator that depends only on (seed, dataset, first image index of the batch)."""
    digest = hashlib.sha256(f"{seed}|{dataset}|{first_index}".encode()).digest()
    gen = torch.Generator(device=device)
    gen.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return gen


def run_shard(
    shard: Shard,
    runs: list[RunRef],
    samples: list[Sample],
    config: AuditConfig,
    out_dir: str,
    keep_maps: bool = False,
) -> ShardReport:
    """Audit ``samples[shard.start:shard.stop]`` with every run of ``shard.group``; write the shard.

    ``samples`` is the whole dataset, or only the shard's own samples (``len(samples) ==
    len(shard)``, what the Ray engine sends); row indices are dataset positions either way.
    """
    if any(ref.maps is not None for ref in runs):
        return run_map_shard(shard, runs, samples, config, out_dir)
    t0 = time.perf_counter()
    store = ResultStore(out_dir)
    device = resolve_device(config.device)
    _keep_only_cached(runs, device)
    models = [ref.load(device) for ref in runs]
    sizes = {m.input_size for m in models}
    if len(sizes) != 1:
        raise InputError(f"group {shard.group!r} mixes input sizes {sorted(sizes)}; a group must share one architecture")
    input_size = sizes.pop()
    if config.batch_size == "auto":  # run_audit resolves it; a direct call resolves it here
        from salience_audit.audit.batchsize import auto_batch_size

        config = dataclasses.replace(config, batch_size=auto_batch_size(models[0], config, device))
    extractors = [RunExtractor(ref.name, build_extractor(m, config, device)) for ref, m in zip(runs, models)]  # type: ignore[arg-type]
    auditor = BatchAuditor(extractors, config, shard.dataset, shard.group, input_size)

    shard_samples = list(samples) if len(samples) == len(shard) else samples[shard.start : shard.stop]
    if len(shard_samples) != len(shard):
        raise InputError(f"shard {shard.id}: expected {len(shard)} samples, got {len(shard_samples)}")
    base = ImageDataset(shard_samples, input_size, map_size=input_size)
    data = TolerantDataset(base, shard_samples, skip=config.on_bad_image == "skip")
    loader = DataLoader(
        data,
        batch_size=config.batch_size,
        shuffle=False,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.num_workers > 0,
        prefetch_factor=2 if config.num_workers > 0 else None,
    )
    rows = RowBuffer()
    rejected: list[tuple[str, int, str]] = []
    try:
        for batch in loader:
            ok = batch["ok"].to(torch.bool)
            local_idx = batch["index"].numpy()
            for i in np.flatnonzero(~ok.numpy()):
                s = shard_samples[int(local_idx[i])]
                rejected.append((s.key or s.path, s.line, str(batch["error"][i])))
            if not bool(ok.any()):
                continue
            keep = ok.nonzero().squeeze(1)
            images = batch["image"][keep].to(device, non_blocking=True)
            idx = local_idx[keep.numpy()]
            sel = [shard_samples[int(i)] for i in idx]
            inp = BatchInput(
                images=images,
                labels=batch["label"][keep].to(device),
                indices=idx + shard.start,
                paths=[s.key or s.path for s in sel],
                human_maps=batch["human_map"][keep].to(device),
                has_human_map=batch["has_human_map"][keep].to(device),
                where=[f"{s.source}:{s.line}" if s.source and s.line else (s.source or s.path) for s in sel],
            )
            gen = _batch_generator(config.seed, shard.dataset, int(inp.indices[0]), device)
            auditor.process(inp, rows, gen)
    finally:
        for e in extractors:
            e.extractor.close()
    for index, reason in auditor.rejected:  # non-finite logits (skip mode); index is a dataset position
        s = shard_samples[index - shard.start]
        rejected.append((s.key or s.path, s.line, reason))
    side = {**map_sum_side(auditor, shard.dataset), **rejected_side(rejected)}
    store.write_shard(shard.id, rows, side, metadata=dict(shard.stamp))
    return ShardReport(shard.id, len(shard_samples), rejected, time.perf_counter() - t0)


def build_extractor(model: AuditModel, config: AuditConfig, device: torch.device) -> SalienceExtractor:
    """The extractor the audit uses for one run: ``config.method`` by ``config.salience_path``,
    the model in the memory format ``config.channels_last`` asks for (set either way: a cached
    model never keeps an earlier audit's format), its passes in ``amp_dtype(device)`` under
    ``config.amp``."""
    model.to(memory_format=torch.channels_last if config.channels_last else torch.contiguous_format)
    dtype = amp_dtype(device) if config.amp else None
    if dtype is not None and device.type == "cpu":
        _warn_slow_cpu_bfloat16()
    return SalienceExtractor(model, config.method, path=config.salience_path, autocast_dtype=dtype,
                             channels_last=config.channels_last,
                             grad_before_inplace=Conventions(config.profile).grad_before_inplace)


@functools.cache
def _warn_slow_cpu_bfloat16() -> None:
    """One log line per process when ``--amp`` asks for bfloat16 on a CPU that emulates it."""
    if not cpu_has_fast_bfloat16():
        logger.warning("--amp: this CPU has no native bfloat16 (AVX-512 BF16 or AMX); PyTorch emulates it, "
                       "so mixed precision makes the passes slower here, not faster")


def map_sum_side(auditor: BatchAuditor, dataset: str) -> dict[str, np.ndarray]:
    """The ``mapsum::`` / ``mapcount::`` side arrays of a shard (sums for the mean map of each run)."""
    side: dict[str, np.ndarray] = {}
    for run_name, total in auditor.aggregates.map_sums.items():
        side[f"mapsum::{run_name}::{dataset}"] = total
        side[f"mapcount::{run_name}::{dataset}"] = np.asarray(auditor.aggregates.map_counts[run_name])
    return side


def rejected_side(rejected: list[tuple[str, int, str]]) -> dict[str, np.ndarray]:
    """The ``rejected_*`` side arrays of a shard (path, manifest line, reason per left-out image)."""
    if not rejected:
        return {}
    return {
        "rejected_path": np.asarray([r[0] for r in rejected], dtype=str),
        "rejected_line": np.asarray([r[1] for r in rejected], dtype=np.int64),
        "rejected_reason": np.asarray([r[2] for r in rejected], dtype=str),
    }


HUMAN_MAP_READ_SIZE = 224
"""Side at which human maps are read for precomputed-map runs before area-averaging to the map size."""


def run_map_shard(
    shard: Shard, runs: list[RunRef], samples: list[Sample], config: AuditConfig, out_dir: str
) -> ShardReport:
    """Audit a shard of a group of precomputed maps: no model, no image decoded.

    Maps are read per batch (:meth:`MapRun.read`) for every run; only the measures that need
    maps alone are computed (:meth:`BatchAuditor.process_maps`).
    """
    from salience_audit.data.images import load_map
    from salience_audit.data.mapmatch import relative_key

    t0 = time.perf_counter()
    if any(ref.maps is None for ref in runs):
        raise InputError(f"group {shard.group!r} mixes precomputed maps and models; put them in separate groups")
    shard_samples = list(samples) if len(samples) == len(shard) else samples[shard.start : shard.stop]
    auditor = BatchAuditor([RunExtractor(ref.name, None) for ref in runs],  # type: ignore[arg-type]
                           config, shard.dataset, shard.group, HUMAN_MAP_READ_SIZE)
    rows = RowBuffer()
    rejected: list[tuple[str, int, str]] = []
    sources = {ref.name: ref.maps.open() for ref in runs}  # type: ignore[union-attr]
    with_human = "human" in config.measures

    def read(items: list[tuple[int, Sample]]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        keys = [(relative_key(s.key, s.path, None), s.path) for _, s in items]
        maps = {name: source.read(keys) for name, source in sources.items()}
        human = None
        if with_human and any(s.human_map for _, s in items):
            human = torch.stack([load_map(s.human_map, HUMAN_MAP_READ_SIZE) if s.human_map
                                 else torch.zeros(HUMAN_MAP_READ_SIZE, HUMAN_MAP_READ_SIZE) for _, s in items])
        return maps, human

    for begin in range(0, len(shard_samples), config.batch_size):
        part = [(shard.start + begin + k, s) for k, s in enumerate(shard_samples[begin : begin + config.batch_size])]
        try:
            maps, human = read(part)
        except InputError:
            if config.on_bad_image != "skip":
                raise
            good = []
            for item in part:  # find the bad ones; they go to rejected.csv
                try:
                    read([item])
                    good.append(item)
                except InputError as err:
                    rejected.append((item[1].key or item[1].path, item[1].line, f"precomputed map: {err}"))
            part = good
            if not part:
                continue
            maps, human = read(part)
        batch = BatchInput(
            images=torch.zeros(len(part), 0),
            labels=torch.tensor([s.label for _, s in part], dtype=torch.int64),
            indices=np.asarray([i for i, _ in part], dtype=np.int64),
            paths=[s.key or s.path for _, s in part],
            human_maps=human,
            has_human_map=None if human is None else torch.tensor([bool(s.human_map) for _, s in part]),
        )
        auditor.process_maps(batch, maps, rows)
    side = {**map_sum_side(auditor, shard.dataset), **rejected_side(rejected)}
    ResultStore(out_dir).write_shard(shard.id, rows, side, metadata=dict(shard.stamp))
    return ShardReport(shard.id, len(shard_samples), rejected, time.perf_counter() - t0)


def _keep_only_cached(runs: list[RunRef], device: torch.device) -> None:
    """Drop cached models of other groups (one group's runs stay loaded per process)."""
    keep = {ref.cache_key(device) for ref in runs}
    stale = [key for key in _MODEL_CACHE if key not in keep]
    for key in stale:
        del _MODEL_CACHE[key]
    if stale and device.type == "cuda":
        torch.cuda.empty_cache()



def clear_model_cache() -> None:
    """Drop every cached model (the audit is done: no run stays loaded)."""
    _MODEL_CACHE.clear()
