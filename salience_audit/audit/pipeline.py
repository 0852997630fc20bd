"""The audit: plan shards, run the pending ones on an engine, then summarise and report.

An audit is resumable: shards already written (complete Parquet files) are not
recomputed, and the final results of a resumed audit equal an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from salience_audit.progress import bar_disable

from salience_audit import __version__
from salience_audit.audit import engines, resume
from salience_audit.audit.config import AuditConfig
from salience_audit.audit.outdir import AuditFolderLock, claim_output_folder, remove_own_temporaries
from salience_audit.audit.plan import Shard, plan_shards
from salience_audit.audit.preflight import preflight
from salience_audit.audit.worker import RunRef, ShardReport
from salience_audit.data.sample import Sample
from salience_audit.errors import InputError
from salience_audit.measures import registry
from salience_audit.models.audit_model import AuditModel, class_order
from salience_audit.profiles import DEFAULT_PROFILE
from salience_audit.results.fingerprint import FINGERPRINT_KEY, HASH_NAME, PARTS_KEY, compute_params
from salience_audit.results.schema import schema_description
from salience_audit.results.store import (
    ResultStore,
    StoreWriteError,
    atomic_save_npz,
    atomic_write_json,
    atomic_write_text,
)

RunLike = str | Path | AuditModel | RunRef


@dataclass
class AuditResult:
    """Where an audit's outputs are."""

    out_dir: Path
    results_dir: Path
    summary_path: Path | None
    report_path: Path | None
    rejected: int


def _run_refs(
    groups: Mapping[str, Sequence[RunLike]], trust_pickle: bool = False, allow_unfinished: bool = False
) -> dict[str, list[RunRef]]:
    """Normalise group members to :class:`RunRef` with unique run names.

    Run folders are checked here, before anything is written: ``run.json`` must be a JSON
    object, its ``class_names`` must say which output is Synthetic, and a run whose
    ``finished`` is false (training stopped early) is refused unless ``allow_unfinished``.
    """
    out: dict[str, list[RunRef]] = {}
    seen: dict[str, tuple[str, str]] = {}
    for group, members in groups.items():
        if not members:
            raise InputError(f"group {group!r} has no runs")
        refs: list[RunRef] = []
        for k, member in enumerate(members):
            if isinstance(member, RunRef):
                ref = member
            elif isinstance(member, AuditModel):
                ref = RunRef(name=member.name or f"{group}-{k}", model=member)
            else:
                path = Path(member)
                if not (path / "run.json").exists():
                    raise InputError("not a run folder (no run.json inside)", path)
                try:
                    meta = json.loads((path / "run.json").read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                    raise InputError(f"cannot read run.json: {err}", path / "run.json") from err
                if not isinstance(meta, dict):
                    raise InputError("run.json must hold a JSON object of run metadata", path / "run.json")
                class_order(meta, path / "run.json", check_count=False)  # the rest once the checkpoint loads
                if meta.get("finished") is False and not allow_unfinished:
                    raise InputError(
                        "this training run did not finish (run.json says finished: false; it was stopped or is "
                        "still running); finish it with 'salience-audit train' (it resumes), leave it out, or "
                        "pass --allow-unfinished to audit it anyway (it is then marked unfinished)",
                        path / "run.json",
                    )
                ref = RunRef(name=str(meta.get("name") or path.name), path=str(path), trust_pickle=trust_pickle)
            if ref.name in seen:
                first_group, first_where = seen[ref.name]
                where = f" ({first_where} and {ref.path})" if ref.path and first_where else ""
                raise InputError(f"run name {ref.name!r} appears in groups {first_group!r} and {group!r}{where}")
            seen[ref.name] = (group, ref.path or "")
            refs.append(ref)
        out[group] = refs
    return out


def _run_info(ref: RunRef, group: str) -> dict[str, Any]:
    info: dict[str, Any] = {"group": group}
    if ref.maps is not None:
        info["maps"] = ref.maps.where
        info["source"] = "precomputed maps"
        return info
    if ref.recipe is not None and ref.path is not None:
        info["path"] = ref.path
        info["arch"] = ref.recipe.label
        info["source"] = "checkpoint file"
        return info
    if ref.path is not None:
        info["path"] = ref.path
        try:
            meta = json.loads((Path(ref.path) / "run.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            meta = {}
        info["finished"] = meta.get("finished") is not False
        for key in ("arch", "seed", "best_val_acc", "input_size", "loss", "alpha"):
            if key in meta:
                info[key] = meta[key]
        cfg = meta.get("config") or {}
        for key in ("loss", "alpha"):
            if key in cfg and key not in info:
                info[key] = cfg[key]
    elif ref.model is not None:
        info["arch"] = ref.model.arch
    return info


def run_audit(
    groups: Mapping[str, Sequence[RunLike]],
    datasets: Mapping[str, list[Sample]],
    out_dir: str | Path,
    config: AuditConfig | None = None,
    ood_datasets: Sequence[str] = (),
    engine: str = "local",
    address: str | None = None,
    command: str = "",
    progress: bool = True,
    report: bool = True,
    compare_with: str | Path | None = None,
    trust_pickle: bool = False,
    force: bool = False,
    allow_unfinished: bool = False,
) -> AuditResult:
    """Audit every run of every group on every dataset and write results, summary and report.

    Args:
        groups: group name -> runs (run folders, :class:`AuditModel` objects or :class:`RunRef`).
        datasets: dataset name -> samples (order defines the ``index`` column).
        out_dir: output folder; an existing audit there with the same plan is resumed.
        config: :class:`AuditConfig` (method, measures, batch and shard size, device ...).
        ood_datasets: names among ``datasets`` that are out-of-set (compared with the others).
        engine: ``local`` or ``ray``; ``address``: an existing Ray cluster.
        compare_with: another audit folder to compare against in the report.
        trust_pickle: accept run folders whose ``model.pt`` is a pickled whole model
            (unpickling runs code from the file: only for files you trust).
        force: write into a non-empty folder that is not an audit folder (nothing already
            there is overwritten or deleted).
        allow_unfinished: audit runs whose ``run.json`` says their training did not finish
            (marked ``"finished": false`` in ``audit.json``); refused otherwise.

    The output folder is locked for the whole audit (a second audit on it stops at once,
    naming this one's PID); nothing is written before every setting and input is checked.
    """
    config = config or AuditConfig()
    out = Path(out_dir)
    if engine not in engines.ENGINES:
        raise InputError(f"unknown engine {engine!r}; choose one of {list(engines.ENGINES)}")
    for name in ood_datasets:
        if name not in datasets:
            raise InputError(f"out-of-set dataset {name!r} is not among the datasets {list(datasets)}")
    if "stability" in config.measures:
        lonely = [g for g, members in groups.items() if len(members) < 2]
        if lonely and len(lonely) == len(groups):
            raise InputError(
                f"stability needs at least two runs per group; group(s) {lonely} have one. "
                "Add runs (different seeds) or leave 'stability' out of the measures."
            )
        if lonely:
            warnings.warn(
                f"stability needs at least two runs per group; group(s) {lonely} have one run, "
                "so their stability is skipped (the other groups' stability is computed)",
                stacklevel=2,
            )
    refs = _run_refs(groups, trust_pickle=trust_pickle, allow_unfinished=allow_unfinished)
    if config.batch_size == "auto":
        config = _resolve_auto_batch(config, refs)
    claim_output_folder(out, force=force, write=False)  # refuse a foreign folder before touching it
    with AuditFolderLock(out, command=command) as lock:
        if lock.stale_owner is not None:
            warnings.warn(
                f"{out}: an earlier audit (PID {lock.stale_owner.get('pid')}) ended without finishing; "
                "its lock was released when it stopped, and this audit resumes its work",
                stacklevel=2,
            )
        needs_images = any(r.maps is None for rs in refs.values() for r in rs)
        checked, rejected = preflight(datasets, on_bad_image=config.on_bad_image, progress=progress,
                                      images=needs_images)
        audit_id = claim_output_folder(out, force=force)
        assert audit_id is not None
        remove_own_temporaries(out)
        store = ResultStore(out)
        store.prepare()
        return _audit_locked(
            out, store, audit_id, refs, checked, rejected, config, ood_datasets, engine, address, command, progress,
            report, compare_with,
        )


def _audit_locked(
    out: Path,
    store: ResultStore,
    audit_id: str,
    refs: dict[str, list[RunRef]],
    checked: dict[str, list[Sample]],
    rejected: list[tuple[str, int, str]],
    config: AuditConfig,
    ood_datasets: Sequence[str],
    engine: str,
    address: str | None,
    command: str,
    progress: bool,
    report: bool,
    compare_with: str | Path | None,
) -> AuditResult:
    """The audit proper, with the output folder locked and every input checked."""
    skipped = _model_free_groups(refs, config)
    meta = {
        "version": __version__,
        "audit_id": audit_id,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "engine": engine,
        "method": config.method,
        "profile": config.profile,
        "measures": list(config.measures),
        "config": config.to_dict(),
        "groups": {g: [r.name for r in rs] for g, rs in refs.items()},
        "runs": {r.name: _run_info(r, g) for g, rs in refs.items() for r in rs},
        "datasets": {
            name: {"n": len(samples), "role": "out-of-set" if name in ood_datasets else "in"}
            for name, samples in checked.items()
        },
        "noise_levels": list(config.noise_levels),
        "compare_with": None if compare_with is None else str(compare_with),
        "batch_size_auto": bool(config.extra.get("batch_size_auto", False)),
        "skipped_measures": skipped,
        "row_schema": schema_description(),
        **registry.descriptions(config.measures),
    }
    _check_resume_compatible(out, meta)

    items = {name: resume.image_items(samples) for name, samples in checked.items()}
    compute = compute_params(config.to_dict())
    run_digests = {g: {r.name: resume.run_digest(r) for r in rs} for g, rs in refs.items()}
    shards, records = resume.stamp(
        plan_shards(list(refs), checked, config.shard_size), "model", items, run_digests, compute, audit_id
    )
    human_shards, human_records = _human_shards(refs, checked, config, items, audit_id)
    every = [*shards, *human_shards]
    done, stale = resume.reusable(store, every, audit_id)
    if stale:
        warnings.warn(resume.stale_note(stale, len(stale) + len(done)), stacklevel=2)
    meta["fingerprints"] = {"files": HASH_NAME, "compute": compute}
    meta["shards"] = {
        s.id: {
            "fingerprint": dict(s.stamp)[FINGERPRINT_KEY],
            "group": s.group,
            "dataset": s.dataset,
            "images": len(s),
        }
        for s in every
    }
    pending = [s for s in shards if s.id not in done]
    jobs = [(s, refs[s.group], checked[s.dataset]) for s in pending]
    bar = tqdm(total=sum(len(s) for s in shards), desc="audit", unit="img", disable=bar_disable(progress))
    bar.update(sum(len(s) for s in shards if s not in pending))

    def on_done(report_: ShardReport) -> None:
        bar.update(report_.images)

    try:
        _run_human_shards(human_shards, done, checked, config, out)
        if engine == "ray":
            engines.run_ray(jobs, config, str(out), on_done, address=address)
        else:
            engines.run_local(jobs, config, str(out), on_done)
    finally:
        bar.close()

    return finalize(out, meta, rejected, report=report, compare_with=compare_with, refs=refs, datasets=checked, config=config)


def _resolve_auto_batch(config: AuditConfig, refs: dict[str, list[RunRef]]) -> AuditConfig:
    """``config`` with ``batch_size="auto"`` replaced by the number (see ``audit.batchsize``)."""
    from salience_audit.audit.batchsize import CPU_AUTO_BATCH, auto_batch_size
    from salience_audit.device import resolve_device

    device = resolve_device(config.device)
    if device.type == "cuda":
        first = next(iter(refs.values()))[0]
        size = auto_batch_size(first.load(device), config, device)
    else:
        size = CPU_AUTO_BATCH
    return dataclasses.replace(config, batch_size=size, extra={**config.extra, "batch_size_auto": True})
MODEL_MEASURES: tuple[str, ...] = ("noise", "transforms", "degradation", "deletion")
"""Measures that need a model (forward passes on changed images); precomputed maps cannot give them."""


def _model_free_groups(refs: dict[str, list[RunRef]], config: AuditConfig) -> dict[str, list[str]]:
    """Groups of precomputed maps -> the configured measures they skip (one warning line per group)."""
    skipped: dict[str, list[str]] = {}
    for group, members in refs.items():
        kinds = {m.maps is not None for m in members}
        if kinds == {True, False}:
            raise InputError(f"group {group!r} mixes precomputed maps and models; put them in separate groups")
        if kinds == {True}:
            skipped[group] = ["detection", *[m for m in config.measures if m in MODEL_MEASURES]]
            warnings.warn(
                f"group {group!r} holds precomputed maps (no model), so {', '.join(skipped[group])} "
                f"{'is' if len(skipped[group]) == 1 else 'are'} skipped for it (they need a model); "
                "entropy, stability and human agreement are computed",
                stacklevel=3,
            )
    return skipped


def _human_shards(
    refs: dict[str, list[RunRef]],
    datasets: dict[str, list[Sample]],
    config: AuditConfig,
    items: dict[str, list[resume.ImageItem]],
    audit_id: str,
) -> tuple[list[Shard], dict[str, dict[str, Any]]]:
    """The stamped shards of the human maps' entropy (none without the measure or without maps)."""
    from salience_audit.audit.human import HUMAN_GROUP, datasets_with_human_maps, native_map_size

    if "human" not in config.measures:
        return [], {}
    names = datasets_with_human_maps(datasets)
    if not names:
        return [], {}
    if HUMAN_GROUP in refs:
        raise InputError(f"the group name {HUMAN_GROUP!r} is reserved for the human annotations; rename that group")
    model_refs = [r for rs in refs.values() for r in rs if r.maps is None]
    if model_refs:
        map_size = native_map_size(model_refs[0], config)
    else:  # only precomputed maps: the human maps are measured at the size of the first run's maps
        from salience_audit.data.mapmatch import relative_key

        first_run = next(iter(refs.values()))[0]
        s = datasets[names[0]][0]
        assert first_run.maps is not None
        map_size = tuple(first_run.maps.read([(relative_key(s.key, s.path, None), s.path)]).shape[-2:])
    shards = plan_shards([HUMAN_GROUP], {n: datasets[n] for n in names}, config.shard_size)
    # The human maps' entropy depends on the maps (and labels, kept in the rows) and the map size only.
    map_items = {n: [(key, label, "", map_hash) for key, label, _, map_hash in items[n]] for n in names}
    return resume.stamp(shards, "human", map_items, {}, {"map_size": list(map_size)}, audit_id)


def _run_human_shards(
    shards: list[Shard], done: set[str], datasets: dict[str, list[Sample]], config: AuditConfig, out: Path
) -> None:
    """Entropy of the human maps (no model pass; cheap, so run here whatever the engine)."""
    from salience_audit.audit.human import run_human_shard

    if not shards:
        return
    map_size = tuple(json.loads(dict(shards[0].stamp)[PARTS_KEY])["compute"]["map_size"])  # as fingerprinted
    for shard in shards:
        if shard.id not in done:
            run_human_shard(shard, datasets[shard.dataset], config, str(out), map_size)


def _check_resume_compatible(out: Path, meta: dict[str, Any]) -> None:
    """Refuse to mix shards of a different plan into an existing audit folder."""
    plan_path = out / "plan.json"
    # The structure of the audit; every setting and input content is in the shards' fingerprints
    # (a change there recomputes the affected shards, see audit/resume.py).
    # The profile stays here too: an audit's conventions do not change under it (issue 12).
    plan = {k: meta[k] for k in ("groups", "datasets", "profile")}
    plan["shard_size"] = meta["config"]["shard_size"]
    if plan_path.exists():
        try:
            previous = json.loads(plan_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            previous = None
        # Only the structure counts (plans of older versions also listed settings, now fingerprinted).
        if isinstance(previous, dict):  # plans written before profiles existed were default
            previous.setdefault("profile", DEFAULT_PROFILE)
        changed = sorted(k for k in plan if previous.get(k) != plan.get(k)) if isinstance(previous, dict) else []
        if changed:
            raise InputError(
                f"this folder holds an audit with a different plan (changed: {changed}); "
                "use a new output folder or delete the old results",
                out,
            )
    atomic_write_json(plan_path, plan)


def finalize(
    out: Path,
    meta: dict[str, Any],
    rejected: list[tuple[str, int, str]],
    *,
    report: bool,
    compare_with: str | Path | None,
    refs: dict[str, list[RunRef]],
    datasets: dict[str, list[Sample]],
    config: AuditConfig,
) -> AuditResult:
    """Merge side aggregates, write rejected.csv, audit.json, gallery, summary and report."""
    store = ResultStore(out)
    side = store.read_side()
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for parts in side.values():
        for key, value in parts.items():
            if key.startswith("mapsum::"):
                k = key[len("mapsum::") :]
                sums[k] = sums.get(k, 0) + value
            elif key.startswith("mapcount::"):
                k = key[len("mapcount::") :]
                counts[k] = counts.get(k, 0) + int(value)
            elif key == "rejected_path":
                lines = parts["rejected_line"]
                reasons = parts["rejected_reason"]
                rejected.extend((str(p), int(li), str(r)) for p, li, r in zip(value, lines, reasons))
    if sums:
        atomic_save_npz(out / "mean_maps.npz", **{k: sums[k] / max(counts.get(k, 1), 1) for k in sums})
    rejected_df = pd.DataFrame(rejected, columns=["path", "line", "reason"]).drop_duplicates()
    atomic_write_text(out / "rejected.csv", rejected_df.to_csv(index=False))
    rejected_images = int(len(rejected_df[["path", "line"]].drop_duplicates()))  # one image, several reasons
    meta["rejected"] = rejected_images
    if sums:
        any_map = next(iter(sums.values()))
        meta["map_size"] = list(any_map.shape)
    meta["transform_variants"] = _transform_names(refs, config)
    meta["input_size"] = _input_size(refs)
    atomic_write_json(out / "audit.json", meta)

    from salience_audit.audit.gallery import write_gallery

    write_gallery(out, refs, datasets, config)

    summary_path = report_path = None
    if report:
        from salience_audit.report.render.html import write_report
        from salience_audit.report.summary.build import write_summary

        try:
            summary_path = write_summary(out)
            report_path = write_report(out, compare_with=compare_with)
        except OSError as err:  # full disk, permissions: the results themselves are complete
            raise StoreWriteError(
                f"{err.filename or out}: cannot write the summary or report: {err.strerror or err}; "
                f"the per-sample results are complete - free the space and run 'salience-audit report {out}'"
            ) from err
    return AuditResult(out, store.results_dir, summary_path, report_path, rejected_images)


def _input_size(refs: dict[str, list[RunRef]]) -> int | None:
    """Input size of the first run (from the model or its run.json, without loading weights)."""
    for rs in refs.values():
        for r in rs:
            if r.model is not None:
                return int(r.model.input_size)
            if r.maps is not None:
                continue
            if r.recipe is not None:
                if r.recipe.input_size is not None:
                    return int(r.recipe.input_size)
                if r.recipe.arch is not None and not r.recipe.arch.startswith("timm:"):
                    from salience_audit.models.registry import get_spec

                    return get_spec(r.recipe.arch).input_size
                from salience_audit.device import resolve_device

                return int(r.load(resolve_device("cpu")).input_size)
            if r.path is not None:
                try:
                    meta = json.loads((Path(r.path) / "run.json").read_text(encoding="utf-8"))
                    return int(meta["input_size"])
                except (OSError, KeyError, ValueError, json.JSONDecodeError):
                    return None
    return None


def _transform_names(refs: dict[str, list[RunRef]], config: AuditConfig) -> list[str]:
    if "transforms" not in config.measures:
        return []
    from salience_audit.perturb.geometry import geometric_variants

    size = _input_size(refs) or 224
    return [v.name for v in geometric_variants(size)]
