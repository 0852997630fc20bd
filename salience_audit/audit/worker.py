"""Audit one shard: load the group's runs once, stream the shard's images in batches.

This function is what every engine runs (in-process for the local engine, as a
Ray task for the distributed one). Models are cached per process, so a worker
that audits many shards of a group loads its runs once.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from salience_audit.audit.batch import BatchAuditor, BatchInput, RunExtractor
from salience_audit.audit.config import AuditConfig
from salience_audit.audit.plan import Shard
from salience_audit.audit.store import ResultStore, RowBuffer
from salience_audit.data.images import ImageDataset
from salience_audit.data.sample import Sample
from salience_audit.errors import InputError
from salience_audit.models.audit_model import AuditModel, load_run
from salience_audit.salience.extract import SalienceExtractor

_MODEL_CACHE: dict[str, AuditModel] = {}


@dataclass(frozen=True)
class RunRef:
    """A run of a group: a run folder on disk, or an in-memory model (Python API)."""

    name: str
    path: str | None = None
    model: AuditModel | None = None
    trust_pickle: bool = False
    """Allow a ``model.pt`` that is a pickled whole model (runs code from the file; see ``load_run``)."""

    def load(self, device: torch.device) -> AuditModel:
        if self.model is not None:
            return self.model.to(device).eval()
        assert self.path is not None
        key = f"{self.path}@{device}@{self.trust_pickle}"
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = load_run(self.path, trust_pickle=self.trust_pickle).to(device).eval()
        return _MODEL_CACHE[key]


@dataclass
class ShardReport:
    shard_id: str
    images: int
    rejected: list[tuple[str, int, str]]
    seconds: float


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


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
            if not self.skip:
                raise
            sample = self.samples[i]
            problem = err.problem
            if err.path is not None and sample.human_map is not None and err.path == str(sample.human_map):
                problem = f"human map {err.path}: {problem}"
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
    t0 = time.perf_counter()
    store = ResultStore(out_dir)
    device = resolve_device(config.device)
    models = [ref.load(device) for ref in runs]
    sizes = {m.input_size for m in models}
    if len(sizes) != 1:
        raise InputError(f"group {shard.group!r} mixes input sizes {sorted(sizes)}; a group must share one architecture")
    input_size = sizes.pop()
    if config.channels_last and device.type == "cuda":
        for m in models:
            m.to(memory_format=torch.channels_last)
    extractors = [RunExtractor(ref.name, SalienceExtractor(m, config.method)) for ref, m in zip(runs, models)]
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
    )
    rows = RowBuffer()
    rejected: list[tuple[str, int, str]] = []
    autocast = torch.autocast("cuda", dtype=torch.float16) if (config.amp and device.type == "cuda") else None
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
            if config.channels_last and device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
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
            if autocast is not None:
                with autocast:
                    auditor.process(inp, rows, gen)
            else:
                auditor.process(inp, rows, gen)
    finally:
        for e in extractors:
            e.extractor.close()
    for index, reason in auditor.rejected:  # non-finite logits (skip mode); index is a dataset position
        s = shard_samples[index - shard.start]
        rejected.append((s.key or s.path, s.line, reason))
    side: dict[str, np.ndarray] = {}
    for run_name, total in auditor.aggregates.map_sums.items():
        side[f"mapsum::{run_name}::{shard.dataset}"] = total
        side[f"mapcount::{run_name}::{shard.dataset}"] = np.asarray(auditor.aggregates.map_counts[run_name])
    if rejected:
        side["rejected_path"] = np.asarray([r[0] for r in rejected], dtype=str)
        side["rejected_line"] = np.asarray([r[1] for r in rejected], dtype=np.int64)
        side["rejected_reason"] = np.asarray([r[2] for r in rejected], dtype=str)
    store.write_shard(shard.id, rows, side)
    return ShardReport(shard.id, len(shard_samples), rejected, time.perf_counter() - t0)


def shard_worker_entry(args: tuple[Shard, list[RunRef], list[Sample], AuditConfig, str]) -> ShardReport:
    """Picklable single-argument entry point (for pools and Ray)."""
    return run_shard(*args)


def clear_model_cache() -> None:
    _MODEL_CACHE.clear()
