"""The unit of work of an audit: a shard = (model group, dataset, range of images).

Stability needs every run of a group on the same images, so a shard carries a
whole group. Shards are a pure function of the inputs and the shard size, which
makes a resumed or distributed audit produce exactly the same shards.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from salience_audit.data.sample import Sample


def _slug(name: str) -> str:
    """A file-name-safe version of a group or dataset name, disambiguated by a short hash."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:6]
    return f"{safe[:40]}-{digest}"


@dataclass(frozen=True)
class Shard:
    """Images ``start:stop`` of ``dataset``, audited with every run of ``group``."""

    group: str
    dataset: str
    start: int
    stop: int
    stamp: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)
    """Parquet key-value metadata the shard file is written with (its fingerprint and audit id)."""

    @property
    def id(self) -> str:
        """Stable identifier, also the shard's file name stem."""
        return f"{_slug(self.group)}__{_slug(self.dataset)}__{self.start:09d}-{self.stop:09d}"

    def __len__(self) -> int:
        return self.stop - self.start


def plan_shards(groups: list[str], datasets: dict[str, list[Sample]], shard_size: int) -> list[Shard]:
    """Every (group, dataset, range) shard, in a fixed order.

    Ranges are ``[k * shard_size, min((k + 1) * shard_size, n))``.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    shards: list[Shard] = []
    for group in groups:
        for name, samples in datasets.items():
            for start in range(0, len(samples), shard_size):
                shards.append(Shard(group, name, start, min(start + shard_size, len(samples))))
    return shards
