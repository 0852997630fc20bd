"""Measures of human annotation maps themselves: they need no model, so none is loaded.

Human maps are salience maps too (DESIGN section 2). For every image of a dataset that
has one, the map is read, resized (area-averaging, antialiased) to the native map size of
the audited models, min-max normalised, and its entropy measured exactly like a model's
map. The rows carry group ``human`` and run ``human annotations``, so the report shows how
focused people are next to each model group.
"""

from __future__ import annotations

import numpy as np
import torch

from salience_audit.audit.config import AuditConfig
from salience_audit.audit.plan import Shard
from salience_audit.audit.worker import RunRef, rejected_side
from salience_audit.data.images import load_map
from salience_audit.data.sample import Sample
from salience_audit.errors import InputError
from salience_audit.measures.entropy import entropy
from salience_audit.results.schema import RowBuffer
from salience_audit.results.store import ResultStore
from salience_audit.salience.normalize import downscale, minmax_normalize

HUMAN_GROUP = "human"
HUMAN_RUN = "human annotations"


def datasets_with_human_maps(datasets: dict[str, list[Sample]]) -> list[str]:
    """Names of the datasets in which at least one image has a human map."""
    return [name for name, samples in datasets.items() if any(s.human_map for s in samples)]


def native_map_size(ref: RunRef, config: AuditConfig) -> tuple[int, int]:
    """Native map size of a run (one salience pass on a blank image, on the audit's device)."""
    from salience_audit.device import resolve_device
    from salience_audit.salience.extract import SalienceExtractor

    device = resolve_device(config.device)
    model = ref.load(device)
    # The autograd path: a blank image must not stand in for the run's first-batch check of the forward path.
    with SalienceExtractor(model, config.method, path="autograd") as extractor:
        maps = extractor(torch.zeros(1, 3, model.input_size, model.input_size, device=device)).maps
    return int(maps.shape[-2]), int(maps.shape[-1])


def run_human_shard(
    shard: Shard, samples: list[Sample], config: AuditConfig, out_dir: str, map_size: tuple[int, int]
) -> tuple[int, list[tuple[str, int, str]]]:
    """Entropy rows of the human maps of ``samples[shard.start:shard.stop]``; returns (images, rejected)."""
    rows = RowBuffer()
    rejected: list[tuple[str, int, str]] = []
    chosen = [(shard.start + k, s) for k, s in enumerate(samples[shard.start : shard.stop]) if s.human_map]
    for begin in range(0, len(chosen), config.batch_size):
        part = chosen[begin : begin + config.batch_size]
        maps, kept = [], []
        for index, s in part:
            try:
                raw = load_map(s.human_map, max(map_size) * 8)  # type: ignore[arg-type]
            except InputError as err:
                if config.on_bad_image != "skip":
                    raise
                rejected.append((s.human_map or "", s.line, f"human map: {err.problem}"))
                continue
            maps.append(raw)
            kept.append((index, s))
        if not maps:
            continue
        normed = minmax_normalize(downscale(torch.stack(maps).to(torch.float64), map_size))
        values = entropy(normed)
        for measure, vals in values.items():
            rows.add(
                dataset=shard.dataset,
                paths=[s.key or s.path for _, s in kept],
                indices=np.asarray([i for i, _ in kept], dtype=np.int64),
                labels=np.asarray([s.label for _, s in kept], dtype=np.int64),
                group=HUMAN_GROUP,
                run=HUMAN_RUN,
                measure=measure,
                variant="",
                values=vals.detach().cpu().numpy(),
            )
    side = rejected_side(rejected)
    ResultStore(out_dir).write_shard(shard.id, rows, side, metadata=dict(shard.stamp))
    return len(samples[shard.start : shard.stop]), rejected
