"""Which shards of an audit can be kept: the inputs' fingerprints against those stored in the shards.

Each planned shard gets its fingerprint record (:mod:`salience_audit.results.fingerprint`)
from the current inputs: image and human-map bytes, labels, each run's weights and
``run.json``, the settings. A shard file in ``results/`` is reused only when it carries
this folder's audit id and exactly this fingerprint; every other planned shard is
computed (a stale file is replaced by the new one: the folder is the tool's own). The
audit says how many shards were stale and why.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from salience_audit import __version__
from salience_audit.audit.plan import Shard
from salience_audit.audit.worker import RunRef
from salience_audit.data.sample import Sample
from salience_audit.results.fingerprint import (
    AUDIT_ID_KEY,
    FINGERPRINT_KEY,
    PARTS_KEY,
    digest,
    file_hash,
    read_stamp,
    shard_metadata,
    shard_parts,
    stale_reasons,
    state_dict_hash,
)
from salience_audit.results.store import ResultStore

ImageItem = tuple[str, int, str, str]
"""``(key, label, image hash, human-map hash or "")`` of one image."""


def image_items(samples: Sequence[Sample]) -> list[ImageItem]:
    """The fingerprint items of a dataset's images, in order (each file's bytes are hashed once)."""
    return [
        (s.key or s.path, int(s.label), file_hash(s.path), file_hash(s.human_map) if s.human_map else "")
        for s in samples
    ]


def _tree_hash(folder: Path) -> str:
    """Digest of every file under ``folder``: relative paths and the hashes of their bytes."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            entries.append([full.relative_to(folder).as_posix(), file_hash(full)])
    return digest(entries)


def _recipe(recipe: Any) -> Any:
    """A checkpoint recipe as plain data, with the hash of a user's model file (``path/file.py:Class``)."""
    data = dataclasses.asdict(recipe) if dataclasses.is_dataclass(recipe) else repr(recipe)
    model = getattr(recipe, "model", None)
    if isinstance(model, str) and ".py:" in model:
        data = {"recipe": data, "model_file": file_hash(model.rsplit(":", 1)[0])}
    return data


def run_digest(ref: RunRef) -> str:
    """Digest of what a run contributes to its rows.

    A run folder: the hash of ``model.pt`` and the parsed ``run.json``; a bare checkpoint:
    its hash and its recipe (and the user's model file, when it is one); precomputed maps:
    every map file's hash (any change recomputes the group's shards); an in-memory model:
    its state dict and settings.
    """
    if ref.maps is not None:
        where = Path(ref.maps.where)
        source = _tree_hash(where) if where.is_dir() else file_hash(where)
        return digest({"maps": source, "match": ref.maps.match})
    if ref.path is not None:
        path = Path(ref.path)
        if not path.is_dir():  # a bare checkpoint file with its recipe
            return digest({"weights": file_hash(path), "recipe": _recipe(ref.recipe), "trust_pickle": ref.trust_pickle})
        try:
            meta: Any = json.loads((path / "run.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            meta = None
        return digest({"weights": file_hash(path / "model.pt"), "run.json": meta, "trust_pickle": ref.trust_pickle})
    model = ref.model
    assert model is not None
    return digest({"state": state_dict_hash(model.module.state_dict()), "settings": model.metadata()})


def stamp(
    shards: Sequence[Shard],
    kind: str,
    items: Mapping[str, Sequence[ImageItem]],
    runs: Mapping[str, Mapping[str, str]],
    compute: Mapping[str, Any],
    audit_id: str,
) -> tuple[list[Shard], dict[str, dict[str, Any]]]:
    """The shards with their fingerprint metadata attached, and each shard's fingerprint record by id."""
    stamped: list[Shard] = []
    records: dict[str, dict[str, Any]] = {}
    for shard in shards:
        parts = shard_parts(
            kind=kind,
            group=shard.group,
            dataset=shard.dataset,
            start=shard.start,
            stop=shard.stop,
            images=items[shard.dataset][shard.start : shard.stop],
            runs=runs.get(shard.group, {}),
            compute=compute,
            version=__version__,
        )
        records[shard.id] = parts
        stamped.append(replace(shard, stamp=tuple(shard_metadata(parts, audit_id).items())))
    return stamped, records


def reusable(store: ResultStore, shards: Sequence[Shard], audit_id: str) -> tuple[set[str], dict[str, list[str]]]:
    """``(ids of shards to keep, {id: reasons} of stale shard files)`` among ``shards``.

    An unreadable shard file is moved aside to a hidden ``.<name>.corrupt`` (never read as
    a result) and recomputed.
    """
    keep: set[str] = set()
    stale: dict[str, list[str]] = {}
    for shard in shards:
        path = store.shard_path(shard.id)
        if not path.exists():
            continue
        found = read_stamp(path)
        if found is None:
            os.replace(path, path.with_name(f".{path.name}.corrupt"))
            stale[shard.id] = ["unreadable file (moved aside)"]
            continue
        expected = dict(shard.stamp)
        if found.get(AUDIT_ID_KEY) not in (None, audit_id):
            stale[shard.id] = ["written by another audit"]
        elif found.get(FINGERPRINT_KEY) == expected[FINGERPRINT_KEY] and found.get(AUDIT_ID_KEY) == audit_id:
            keep.add(shard.id)
        else:
            old = json.loads(found[PARTS_KEY]) if PARTS_KEY in found else None
            stale[shard.id] = stale_reasons(old, json.loads(expected[PARTS_KEY]))
    return keep, stale


def stale_note(stale: Mapping[str, list[str]], total: int) -> str:
    """One line: how many shards were stale and why (most common reasons first)."""
    reasons = Counter(reason for rs in stale.values() for reason in rs)
    listed = "; ".join(f"{reason} ({n} shard{'s' if n != 1 else ''})" for reason, n in reasons.most_common(6))
    more = f"; and {len(reasons) - 6} more reason(s)" if len(reasons) > 6 else ""
    return f"{len(stale)} of {total} finished shard(s) were stale and are recomputed: {listed}{more}"
