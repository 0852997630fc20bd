"""``salience-audit audit`` and ``salience-audit report``: flags, config file, and the call to the pipeline."""

from __future__ import annotations

import argparse
import glob
import shlex
import sys
from pathlib import Path
from typing import Any

from salience_audit.audit.config import DEFAULT_MEASURES, MEASURES, AuditConfig, load_config_file
from salience_audit.errors import InputError


def add_audit_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "audit",
        help="audit groups of trained runs on one or more datasets and write results + report",
        description=(
            "Compute the salience measures for every run of every group on every dataset. "
            "Per-sample rows go to OUT/results/*.parquet, aggregates to OUT/summary.json, "
            "the report to OUT/report/index.html. Running the same command again resumes."
        ),
    )
    p.add_argument("--config", metavar="FILE", help="YAML or TOML file with the same settings as the flags (flags win)")
    p.add_argument(
        "--group",
        action="append",
        default=[],
        metavar="NAME=PATTERN",
        help="a group of runs: NAME=glob of run folders, e.g. xent='runs/densenet-xent-*' (repeat per group)",
    )
    p.add_argument(
        "--manifest",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a test dataset: manifest CSV or class-per-folder directory (repeat; one dataset each)",
    )
    p.add_argument(
        "--ood-manifest",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="an out-of-set dataset (unseen generators, non-faces), compared with the in-set ones",
    )
    p.add_argument("--root", help="dataset root joined to manifest paths (original-study CSVs)")
    p.add_argument("--human-maps", metavar="DIR", help="folder of human annotation maps named like the images")
    p.add_argument("--out", help="output folder (default: audit-output)")
    p.add_argument(
        "--measures",
        help=f"comma-separated measures out of {','.join(MEASURES)}, or 'all' (default: {','.join(DEFAULT_MEASURES)})",
    )
    p.add_argument("--method", help="salience method: cam, gradcam (default), gradcampp, layercam, scorecam")
    p.add_argument("--target", choices=["predicted", "label"], help="class explained: predicted (default) or the true label")
    p.add_argument("--batch-size", type=int, help="images per model pass (default 32)")
    p.add_argument("--shard-size", type=int, help="images per result shard, the unit of resume and distribution (default 1024)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes (default 0)")
    p.add_argument("--amp", action="store_true", default=None, help="mixed precision on CUDA")
    p.add_argument("--channels-last", action="store_true", default=None, help="channels-last memory format on CUDA")
    p.add_argument("--seed", type=int, help="seed of the salt-and-pepper noise (default 0)")
    p.add_argument("--deletion-steps", type=int, help="points of the deletion/insertion curves minus one (default 10)")
    p.add_argument(
        "--threshold",
        type=float,
        help="decision threshold on the probability of 'Synthetic' for accuracy, APCER, BPCER, ACER (default 0.5)",
    )
    p.add_argument("--gallery-size", type=int, help="example images per dataset in the gallery (default 3)")
    p.add_argument(
        "--on-bad-image",
        choices=["stop", "skip"],
        help="stop (default) at the first bad image with its file and line, or skip it and list it in rejected.csv",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="accept run folders whose model.pt is a pickled whole model (torch.save(model)); unpickling "
        "can run arbitrary code from the file, so use it only for files you trust (command line only, "
        "never read from --config)",
    )
    p.add_argument("--engine", choices=["local", "ray"], help="local (default) or ray (distributed)")
    p.add_argument("--address", help="address of an existing Ray cluster (with --engine ray), e.g. auto or ray://head:10001")
    p.add_argument("--compare-with", metavar="AUDIT_DIR", help="another audit folder to compare with in the report")
    p.add_argument("--no-report", action="store_true", help="write results and summary only")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_audit_command)
    return p


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="(re)write summary.json and the HTML/Markdown report of an audit folder",
        description="Rebuild OUT/summary.json and OUT/report/ from the results of an audit, optionally comparing two audits.",
    )
    p.add_argument("audit_dir", help="an audit output folder")
    p.add_argument("--compare-with", metavar="AUDIT_DIR", help="another audit folder (e.g. another architecture)")
    p.add_argument(
        "--sample-capacity",
        type=int,
        metavar="N",
        help="per-image values kept per measure x group x dataset (default 50000); beyond, CIs are normal and tests "
        "use a uniform sample of N images",
    )
    p.add_argument(
        "--min-runs",
        type=int,
        metavar="N",
        help="runs per group a family verdict (and a check against the original study) needs (default 3)",
    )
    p.set_defaults(func=run_report_command)
    return p


def _split_named(item: str) -> tuple[str | None, str]:
    if "=" in item and not Path(item).exists():
        name, path = item.split("=", 1)
        return name.strip() or None, path
    return None, item


def expand_group(name: str, pattern: str) -> list[str]:
    """Run folders matching a glob pattern (folders holding run.json), sorted."""
    matches = sorted(p for p in glob.glob(pattern) if (Path(p) / "run.json").exists())
    if not matches:
        raise InputError(f"group {name!r}: no run folder (with run.json) matches {pattern!r}")
    return matches


def _merged_settings(args: argparse.Namespace) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.config:
        settings = load_config_file(args.config)
    flag_map = {
        "method": args.method,
        "target": args.target,
        "batch_size": args.batch_size,
        "shard_size": args.shard_size,
        "device": args.device,
        "num_workers": args.num_workers,
        "amp": args.amp,
        "channels_last": args.channels_last,
        "seed": args.seed,
        "deletion_steps": args.deletion_steps,
        "gallery_size": args.gallery_size,
        "threshold": args.threshold,
        "on_bad_image": args.on_bad_image,
        "engine": args.engine,
        "address": args.address,
        "root": args.root,
        "human_maps": args.human_maps,
        "out": args.out,
        "compare_with": args.compare_with,
    }
    for key, value in flag_map.items():
        if value is not None:
            settings[key] = value
    if args.measures:
        settings["measures"] = args.measures
    if args.group:
        groups = {}
        for item in args.group:
            if "=" not in item:
                raise InputError(f"--group expects NAME=PATTERN, got {item!r}")
            name, pattern = item.split("=", 1)
            groups[name] = pattern
        settings["groups"] = groups
    if args.manifest:
        settings["manifests"] = list(args.manifest)
    if args.ood_manifest:
        settings["ood_manifests"] = list(args.ood_manifest)
    return settings


def _parse_measures(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        if value.strip() == "all":
            return MEASURES
        return tuple(m.strip() for m in value.split(",") if m.strip())
    return tuple(value)


def run_audit_command(args: argparse.Namespace) -> int:
    from salience_audit.audit.pipeline import run_audit
    from salience_audit.data.manifest import read_manifest

    settings = _merged_settings(args)
    source = args.config
    groups_cfg = settings.pop("groups", None)
    manifests = settings.pop("manifests", None)
    ood = settings.pop("ood_manifests", []) or []
    if not groups_cfg:
        raise InputError("give at least one --group NAME=PATTERN (or 'groups' in the config file)", source)
    if not manifests:
        raise InputError("give at least one --manifest (or 'manifests' in the config file)", source)
    root = settings.pop("root", None)
    human_maps = settings.pop("human_maps", None)
    out = settings.pop("out", None) or "audit-output"
    engine = settings.pop("engine", "local")
    address = settings.pop("address", None)
    compare_with = settings.pop("compare_with", None)
    if "measures" in settings:
        settings["measures"] = _parse_measures(settings["measures"])
    config = AuditConfig.from_dict(settings, source)

    groups = {name: expand_group(name, pattern) for name, pattern in groups_cfg.items()}
    datasets: dict[str, list] = {}
    ood_names: list[str] = []
    for items, is_ood in ((manifests, False), (ood, True)):
        for item in items:
            name, path = _split_named(str(item))
            samples = read_manifest(path, root=root, human_maps=human_maps, dataset=name)
            ds_name = name or (samples[0].dataset if samples else Path(path).stem)
            if ds_name in datasets:
                raise InputError(f"two datasets are named {ds_name!r}; name them with NAME=PATH", path)
            datasets[ds_name] = samples
            if is_ood:
                ood_names.append(ds_name)
    result = run_audit(
        groups,
        datasets,
        out,
        config=config,
        ood_datasets=ood_names,
        engine=engine,
        address=address,
        command="salience-audit " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        progress=not args.quiet,
        report=not args.no_report,
        compare_with=compare_with,
        trust_pickle=bool(getattr(args, "trust_pickle", False)),
    )
    print(f"results: {result.results_dir}")
    if result.summary_path:
        print(f"summary: {result.summary_path}")
    if result.report_path:
        print(f"report:  {result.report_path}")
    if result.rejected:
        print(f"rejected: {result.rejected} image(s), listed in {Path(out) / 'rejected.csv'}")
    return 0


def run_report_command(args: argparse.Namespace) -> int:
    from salience_audit.report.html import write_report
    from salience_audit.report.summary import write_summary

    out = Path(args.audit_dir)
    if not (out / "audit.json").exists():
        raise InputError("not an audit folder (no audit.json inside)", out)
    from salience_audit.report.accumulate import DEFAULT_CAPACITY

    capacity = args.sample_capacity if getattr(args, "sample_capacity", None) is not None else DEFAULT_CAPACITY
    if capacity < 1:
        raise InputError("--sample-capacity must be at least 1")
    min_runs = getattr(args, "min_runs", None)
    if min_runs is not None and min_runs < 2:
        raise InputError("--min-runs must be at least 2")
    try:
        write_summary(out, capacity=capacity, min_runs=min_runs)
        path = write_report(out, compare_with=args.compare_with, capacity=capacity, min_runs=min_runs)
    except OSError as err:  # full disk, permissions
        from salience_audit.audit.store import StoreWriteError

        raise StoreWriteError(f"{err.filename or out}: cannot write the summary or report: {err.strerror or err}") from err
    print(f"report: {path}")
    return 0
