"""The gallery's most / least stable images, found shard by shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from salience_audit.audit.gallery import stability_extremes
from salience_audit.results.schema import RowBuffer
from salience_audit.results.store import ResultStore


def _write(store: ResultStore, shard: str, group: str, start: int, values_per_pair: list[np.ndarray]) -> None:
    n = len(values_per_pair[0])
    rows = RowBuffer()
    idx = np.arange(start, start + n)
    common = dict(dataset="faces", paths=[f"{i}.png" for i in idx], indices=idx, labels=np.zeros(n, dtype=np.int64),
                  group=group, variant="")
    for k, vals in enumerate(values_per_pair):
        rows.add(run=f"r{k}|r{k + 1}", measure="stability_ssim", values=vals, **common)
        rows.add(run=f"r{k}|r{k + 1}", measure="stability_spearman", values=-vals, **common)
    store.write_shard(shard, rows)


def test_extremes_across_shards_equal_a_global_ranking(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.prepare()
    rng = np.random.default_rng(0)
    all_means = {}
    for s, start in enumerate(range(0, 300, 100)):
        pairs = [rng.random(100) for _ in range(3)]
        _write(store, f"a-faces-{s:03d}", "a", start, pairs)
        for i, m in zip(range(start, start + 100), np.mean(pairs, axis=0)):
            all_means[("faces", i)] = m
    # A second group with larger values must not leak into the first group's ranking.
    _write(store, "b-faces-000", "b", 0, [np.full(100, 5.0)])

    group, most, least = stability_extremes(tmp_path, 4)
    order = sorted(all_means, key=all_means.get)
    assert group == "a"
    assert most == order[::-1][:4]
    assert least == order[:4]


def test_no_stability_rows_gives_none(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.prepare()
    rows = RowBuffer()
    rows.add(dataset="faces", paths=["a.png"], indices=np.array([0]), labels=np.array([0]), group="a", run="r0",
             measure="entropy", variant="", values=np.array([0.5]))
    store.write_shard("a-faces-000", rows)
    assert stability_extremes(tmp_path, 3) is None
