"""What made a result shard: its fingerprint, stored in the shard, checked on resume and report.

A shard's fingerprint is the SHA-256 of a canonical JSON record of everything its rows
depend on:

- ``images``: for each image of the shard, in order, ``[key, label, image hash, human-map
  hash]``; a hash is the BLAKE2b-128 digest of the file's **bytes** (the whole content,
  not size + mtime: a copied or touched dataset stays valid, an edited file never does);
- ``runs``: for each run of the group, the hash of its weights file and its ``run.json``
  (parsed), or, for an in-memory model, the hash of its state dict and its settings;
- ``compute``: every setting that changes a row (method, measures, target, batch size,
  seed, noise levels, deletion steps, threshold, amp, channels-last, and any setting added
  later such as a profile; only device, workers, bad-image policy and gallery size are
  left out), plus extras such as the human-map size;
- ``version``: the package version; ``kind``, ``group``, ``dataset``, ``range``.

The record itself (:data:`PARTS_KEY`) and the audit id of the folder (:data:`AUDIT_ID_KEY`)
are stored in the shard's Parquet key-value metadata, so a stale shard can be named with
the reason (which images, labels, maps, runs or settings changed) and a shard copied from
another audit is recognised.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

FINGERPRINT_KEY = "salience_audit.fingerprint"
AUDIT_ID_KEY = "salience_audit.audit_id"
PARTS_KEY = "salience_audit.fingerprint_parts"

HASH_NAME = "blake2b-128 of the file bytes"
"""How image, human-map and weights files are hashed (recorded in audit.json)."""

COMPUTE_EXCLUDED: frozenset[str] = frozenset({"device", "num_workers", "on_bad_image", "gallery_size", "extra"})
"""Settings that do not change a row's value (where and how fast it runs, what the report shows)."""

_CHUNK = 1 << 20


def file_hash(path: str | Path) -> str:
    """BLAKE2b-128 (hex) of a file's bytes; ``"missing"`` when it cannot be read."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except OSError:
        return "missing"
    return digest.hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)


def digest(obj: Any) -> str:
    """SHA-256 (hex) of an object's canonical JSON."""
    return hashlib.sha256(_canonical(obj).encode("utf-8")).hexdigest()


def compute_params(config_dict: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The settings a shard's rows depend on (see :data:`COMPUTE_EXCLUDED`), plus ``extra``."""
    params = {k: v for k, v in config_dict.items() if k not in COMPUTE_EXCLUDED}
    params.update(extra)
    return params


def state_dict_hash(state: Mapping[str, Any]) -> str:
    """SHA-256 of a state dict's tensors (names, dtypes, shapes and bytes), for in-memory models."""
    h = hashlib.sha256()
    for name in sorted(state):
        value = state[name]
        h.update(name.encode())
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def shard_parts(
    *,
    kind: str,
    group: str,
    dataset: str,
    start: int,
    stop: int,
    images: Sequence[Sequence[Any]],
    runs: Mapping[str, str],
    compute: Mapping[str, Any],
    version: str,
) -> dict[str, Any]:
    """The record a shard's fingerprint is the digest of (see the module docstring)."""
    return {
        "kind": kind,
        "group": group,
        "dataset": dataset,
        "range": [int(start), int(stop)],
        "images": [list(item) for item in images],
        "runs": dict(runs),
        "compute": dict(compute),
        "version": version,
    }


def shard_metadata(parts: Mapping[str, Any], audit_id: str) -> dict[str, str]:
    """Parquet key-value metadata of a shard: its fingerprint, the record and the audit id."""
    return {FINGERPRINT_KEY: digest(parts), PARTS_KEY: _canonical(parts), AUDIT_ID_KEY: audit_id}


def read_stamp(path: str | Path) -> dict[str, str] | None:
    """The fingerprint metadata of a shard file (``{}`` when it has none; None when unreadable)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowException):
        return None
    keys = (FINGERPRINT_KEY, PARTS_KEY, AUDIT_ID_KEY)
    return {k: meta[k.encode()].decode("utf-8") for k in keys if k.encode() in meta}


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def stale_reasons(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Why a shard written with record ``old`` does not hold what record ``new`` asks for."""
    if old is None:
        return ["written without a fingerprint (an older version, or not by this tool)"]
    reasons: list[str] = []
    if old.get("version") != new.get("version"):
        reasons.append(f"package version {old.get('version')} -> {new.get('version')}")
    old_images, new_images = old.get("images") or [], new.get("images") or []
    if [i[0] for i in old_images] != [i[0] for i in new_images]:
        reasons.append("other images")
    else:
        pairs = list(zip(old_images, new_images))
        changed = {
            "image bytes": [n[0] for o, n in pairs if o[2] != n[2]],
            "label": [n[0] for o, n in pairs if o[1] != n[1]],
            "human map": [n[0] for o, n in pairs if o[3] != n[3]],
        }
        for what, keys in changed.items():
            if keys:
                shown = ", ".join(map(str, keys[:3])) + (" ..." if len(keys) > 3 else "")
                reasons.append(f"{what} changed ({_count(len(keys), 'image')}: {shown})")
    old_runs, new_runs = old.get("runs") or {}, new.get("runs") or {}
    if old_runs != new_runs:
        names = sorted(n for n in set(old_runs) | set(new_runs) if old_runs.get(n) != new_runs.get(n))
        reasons.append(f"run weights or metadata changed ({', '.join(names)})")
    old_c, new_c = old.get("compute") or {}, new.get("compute") or {}
    params = sorted(k for k in set(old_c) | set(new_c) if old_c.get(k) != new_c.get(k))
    for key in params:
        reasons.append(f"{key} {old_c.get(key)!r} -> {new_c.get(key)!r}")
    for key in ("kind", "group", "dataset", "range"):
        if old.get(key) != new.get(key):
            reasons.append(f"{key} {old.get(key)!r} -> {new.get(key)!r}")
    return reasons or ["fingerprint differs"]
