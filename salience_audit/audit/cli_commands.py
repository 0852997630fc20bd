"""``salience-audit audit`` and ``salience-audit report``: flags, config file, and the call to the pipeline."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from salience_audit.audit.config import DEFAULT_MEASURES, MEASURES, load_config_file
from salience_audit.cli_options import add_common_options, add_log_to_option
from salience_audit.errors import InputError, UsageError
from salience_audit.profiles import PROFILES

if TYPE_CHECKING:
    from salience_audit.audit.settings import AuditSettings


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
    p.add_argument(
        "--measures",
        help=f"comma-separated measures out of {','.join(MEASURES)}, or 'all' (default: {','.join(DEFAULT_MEASURES)})",
    )
    p.add_argument("--method", help="salience method: cam, gradcam (default), gradcampp, layercam, scorecam")
    p.add_argument(
        "--profile",
        choices=list(PROFILES),
        help="conventions of the measures: default (corrected definitions) or study (the original study's "
        "published code, bit for bit where it is deterministic, to compare with the paper; docs/fidelity.md)",
    )
    p.add_argument("--target", choices=["predicted", "label"], help="class explained: predicted (default) or the true label")
    p.add_argument("--batch-size", type=_int_or_text, help="images per model pass (default 32), or 'auto': the largest that fits on CUDA "
                   "(measured), 16 on CPU")
    p.add_argument(
        "--salience-path",
        choices=["auto", "forward", "autograd"],
        help="auto (default): maps from one forward pass where the head is global average pooling + linear "
        "(checked against autograd on each run's first batch), else autograd; forward / autograd force one",
    )
    p.add_argument("--shard-size", type=int, help="images per result shard, the unit of resume and distribution (default 1024)")
    p.add_argument("--num-workers", type=int, help="DataLoader worker processes (default 0)")
    p.add_argument("--amp", action="store_true", default=None, help="mixed-precision model passes (bfloat16; float16 on GPUs without bfloat16); maps and measures stay float32")
    p.add_argument("--channels-last", action="store_true", default=None, help="channels-last memory format for models and images (faster convolutions on GPUs and on the CPU)")
    p.add_argument("--deletion-steps", type=int, help="points of the deletion/insertion curves minus one (default 10)")
    p.add_argument(
        "--threshold",
        type=float,
        help="decision threshold on the probability of 'Synthetic' for accuracy, APCER, BPCER, ACER (default 0.5)",
    )
    p.add_argument("--gallery-size", type=int, help="example images per dataset in the gallery (default 3)")
    p.add_argument("--min-runs", type=int,
                   help="runs per group a verdict about model families needs (default 3); fewer: 'not enough runs'")
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
    p.add_argument(
        "--splits",
        help="comma-separated manifest splits to audit out of test,audit,train (default: test,audit; "
        "train rows are left out with a note)",
    )
    p.add_argument(
        "--allow-unfinished",
        action="store_true",
        default=None,
        help="audit runs whose training did not finish (run.json 'finished' false); they are marked in "
        "audit.json and the report",
    )
    p.add_argument(
        "--force",
        action="store_true",
        default=None,
        help="write into an existing non-empty folder that is not an audit folder (files already there are "
        "never overwritten or deleted; command line only)",
    )
    byo = p.add_argument_group(
        "models and maps from elsewhere (docs/byo.md)",
        "A --group glob may match checkpoint files (.pth .pt .ckpt .bin .tar .safetensors) instead of run folders; "
        "these flags say how to rebuild their network.",
    )
    byo.add_argument("--arch", help="architecture of checkpoint files: a registry name (densenet121, resnet50, ...) "
                     "or timm:NAME (optional package timm)")
    byo.add_argument("--model", metavar="MODULE:FACTORY", help="build checkpoint networks with your own code: "
                     "package.module:factory or path/file.py:Class (this imports and RUNS that code)")
    byo.add_argument("--num-classes", type=int, help="classifier outputs of the checkpoints (default 2)")
    byo.add_argument("--class-names", help="comma-separated class names in output order (default Real,Synthetic)")
    byo.add_argument("--input-size", type=int, help="square input side of the checkpoints (default: the architecture's)")
    byo.add_argument("--normalize", help="input normalisation of the checkpoints: imagenet, half, none or "
                     "'m1,m2,m3/s1,s2,s3' (default: the architecture's)")
    byo.add_argument("--target-layer", help="dotted name of the salience layer (default: found automatically)")
    byo.add_argument("--map-group", action="append", default=[], metavar="NAME=PATTERN",
                     help="a group of precomputed maps: glob of folders (one per run, files named like the images) "
                     "or of .npz / .parquet files (one per run); only map measures are computed for it")
    byo.add_argument("--human-map-match", choices=["auto", "path", "stem"],
                     help="how maps are matched to images: auto (default: relative path, then stem when "
                     "unambiguous), path only, or stem (accept images that share a stem knowingly)")
    byo.add_argument("--label", choices=["synthetic", "real"],
                     help="label of every image of a flat image folder given to --manifest")
    byo.add_argument("--ood-label", choices=["synthetic", "real", "unknown"],
                     help="label of every image of a flat image folder given to --ood-manifest (default unknown; "
                     "e.g. synthetic for an unseen generator)")
    byo.add_argument("--class-folders", metavar="FOLDER=CLASS,...",
                     help="class sub-folder names of folder datasets, e.g. 'authentic=Real,gan=Synthetic' "
                     "(default: real/fake/synthetic/0/1, any case)")
    p.add_argument("--engine", choices=["local", "ray"], help="local (default) or ray (distributed)")
    p.add_argument("--address", help="address of an existing Ray cluster (with --engine ray), e.g. auto or ray://head:10001")
    p.add_argument("--compare-with", metavar="AUDIT_DIR", help="another audit folder to compare with in the report")
    p.add_argument("--no-report", action="store_true", help="write results and summary only")
    add_common_options(
        p, out_help="output folder (default: audit-output)", out_default=None,
        seed_help="seed of the salt-and-pepper noise (default 0)",
        config_help="YAML or TOML file with the same settings as the flags, plus 'groups' and 'manifests' "
        "(flags win)",
    )
    add_log_to_option(p)
    p.set_defaults(func=run_audit_command, reads_own_config=True)
    return p


def _int_or_text(value: str) -> int | str:
    """A flag value that is a whole number becomes an int; anything else (``auto``) stays text for the schema."""
    text = value.strip()
    return int(text) if text.lstrip("+-").isdigit() else text


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="(re)write summary.json and the HTML/Markdown report of an audit folder",
        description="Rebuild OUT/summary.json and OUT/report/ from the results of an audit, optionally comparing two audits.",
    )
    p.add_argument("audit_dir", nargs="?", help="an audit output folder (or give it as --out)")
    p.add_argument("--compare-with", metavar="AUDIT_DIR", help="another audit folder (e.g. another architecture)")
    p.add_argument(
        "--sample-capacity",
        type=int,
        metavar="N",
        help="per-image values kept per measure x group x dataset (default 50000); beyond, CIs are normal and tests "
        "use a uniform sample of N images",
    )
    add_common_options(
        p, out_help="the audit folder whose summary.json and report/ are (re)written (same as AUDIT_DIR)",
        out_default=None, device=False,
        seed_help="seed of the bootstrap confidence intervals and of the per-image samples (default 0)",
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


def _group_patterns(items: list[str], flag: str = "--group") -> dict[str, str]:
    """``--group NAME=PATTERN`` flags as a mapping; a name given twice is refused (never silently replaced)."""
    groups: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"{flag} expects NAME=PATTERN, got {item!r}")
        name, pattern = item.split("=", 1)
        name = name.strip()
        if name in groups:
            raise InputError(
                f"{flag} {name!r} is given twice ({groups[name]!r} and {pattern!r}); "
                "give each group one pattern (a glob such as 'runs/xent-*' can match several folders)"
            )
        groups[name] = pattern
    return groups


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (``None`` = not given), keyed like :class:`AuditSettings`."""
    from salience_audit.audit.settings import AuditSettings

    flags = {key: getattr(args, key) for key in AuditSettings.model_fields if hasattr(args, key)}
    flags["groups"] = _group_patterns(args.group) if args.group else None
    flags["map_groups"] = _group_patterns(args.map_group, "--map-group") if args.map_group else None
    flags["manifests"] = list(args.manifest) or None
    flags["ood_manifests"] = list(args.ood_manifest) or None
    flags["trust_pickle"] = bool(args.trust_pickle) or None
    return flags


def audit_settings(args: argparse.Namespace) -> AuditSettings:
    """The config file (if any) and the flags, validated as one :class:`AuditSettings` (flags win)."""
    from salience_audit.audit.settings import settings_from_sources

    config = load_config_file(args.config) if args.config else {}
    return settings_from_sources(config, _flag_values(args), args.config)


def check_run_groups(settings: AuditSettings) -> dict[str, list[Any]]:
    """Runs of every group (run folders, checkpoint files, precomputed maps).

    A group is a pattern, or (config file) a mapping with ``pattern`` and its own recipe keys
    (``arch``, ``model``, ...), which win over the global ones. A run folder or checkpoint
    file matched by two groups is refused, naming both.
    """
    from salience_audit.audit.groups import RECIPE_KEYS, checkpoint_runs, map_runs, model_recipe

    recipe_settings = {k: getattr(settings, k) for k in RECIPE_KEYS}
    patterns: dict[str, str] = {}
    expanded: dict[str, list[Any]] = {}
    for name, entry in settings.groups.items():
        if isinstance(entry, str):
            pattern, recipe = entry, model_recipe(recipe_settings)
        else:
            own = {k: v for k, v in entry.model_dump().items() if v is not None and k != "pattern"}
            pattern, recipe = entry.pattern, model_recipe({**recipe_settings, **own})
        patterns[name] = pattern
        expanded[name] = checkpoint_runs(name, pattern, recipe, settings.trust_pickle)
    for name, pattern in settings.map_groups.items():
        if name in expanded:
            raise InputError(f"group name {name!r} is used by --group and --map-group")
        patterns[name] = pattern
        expanded[name] = map_runs(name, pattern, settings.human_map_match)
    owner: dict[str, str] = {}
    for name, members in expanded.items():
        for member in members:
            path = getattr(member, "path", None) or getattr(getattr(member, "maps", None), "where", None) or member
            key = os.path.realpath(path)
            if key in owner and owner[key] != name:
                raise InputError(
                    f"run folder {path} is in two groups: {owner[key]!r} ({patterns[owner[key]]!r}) and "
                    f"{name!r} ({patterns[name]!r}); a run belongs to one group"
                )
            owner[key] = name
    return expanded


def _audited_splits(samples: list, splits: tuple[str, ...], path: str) -> list:
    """Samples of the asked splits; a note says how many rows of other splits were left out."""
    kept = [s for s in samples if s.split in splits]
    left = len(samples) - len(kept)
    if left:
        skipped = sorted({s.split for s in samples if s.split not in splits})
        warnings.warn(
            f"{path}: {left} row(s) of split(s) {', '.join(skipped)} left out of the audit "
            f"(audited splits: {', '.join(splits)}; pass --splits {','.join((*splits, *skipped))} to include them)",
            stacklevel=2,
        )
    if samples and not kept:
        raise InputError(f"no rows of the audited split(s) {', '.join(splits)} (pass --splits to choose)", path)
    return kept


def run_audit_command(args: argparse.Namespace) -> int:
    from salience_audit.audit.pipeline import run_audit
    from salience_audit.data.manifest import read_manifest

    from salience_audit.tracking import log_audit, open_trackers

    settings = audit_settings(args)
    trackers = open_trackers(settings.log_to)  # a missing tracker extra stops here, before any work
    config = settings.audit_config()
    out = settings.out
    groups = check_run_groups(settings)
    datasets: dict[str, list] = {}
    ood_names: list[str] = []
    for items, is_ood in ((settings.manifests, False), (settings.ood_manifests, True)):
        for item in items:
            name, path = _split_named(str(item))
            samples = read_manifest(path, root=settings.root, human_maps=settings.human_maps, dataset=name,
                                    out_of_set=is_ood, label=settings.ood_label if is_ood else settings.label,
                                    class_folders=settings.class_folders,
                                    human_map_match=settings.human_map_match)
            samples = _audited_splits(samples, settings.splits, path)
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
        engine=settings.engine,
        address=settings.address,
        command="salience-audit " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        progress=not args.quiet,
        report=not args.no_report,
        compare_with=settings.compare_with,
        trust_pickle=settings.trust_pickle,
        force=settings.force,
        allow_unfinished=settings.allow_unfinished,
    )
    log_audit(trackers, out)
    print(f"results: {result.results_dir}")
    if result.summary_path:
        print(f"summary: {result.summary_path}")
    if result.report_path:
        print(f"report:  {result.report_path}")
    if result.rejected:
        images = "image" if result.rejected == 1 else "images"
        print(f"rejected: {result.rejected} {images}, listed in {Path(out) / 'rejected.csv'}")
    return 0


def run_report_command(args: argparse.Namespace) -> int:
    from salience_audit.report.render.html import write_report
    from salience_audit.report.summary.build import write_summary

    if args.audit_dir and args.out and Path(args.audit_dir) != Path(args.out):
        raise UsageError(f"two audit folders given: {args.audit_dir} and --out {args.out}; give one")
    if not (args.audit_dir or args.out):
        raise UsageError("give the audit folder: salience-audit report AUDIT_DIR (or --out AUDIT_DIR)")
    out = Path(args.audit_dir or args.out)
    seed = args.seed or 0
    if not (out / "audit.json").exists():
        raise InputError("not an audit folder (no audit.json inside)", out)
    from salience_audit.report.summary.accumulate import DEFAULT_CAPACITY

    capacity = args.sample_capacity if getattr(args, "sample_capacity", None) is not None else DEFAULT_CAPACITY
    if capacity < 1:
        raise InputError("--sample-capacity must be at least 1")
    min_runs = getattr(args, "min_runs", None)
    if min_runs is not None and min_runs < 2:
        raise InputError("--min-runs must be at least 2")
    from salience_audit.audit.outdir import AuditFolderLock

    with AuditFolderLock(out, command="salience-audit " + " ".join(shlex.quote(a) for a in sys.argv[1:])):
        try:
            write_summary(out, capacity=capacity, seed=seed, min_runs=min_runs)
            path = write_report(out, compare_with=args.compare_with, capacity=capacity, seed=seed,
                                min_runs=min_runs)
        except OSError as err:  # full disk, permissions
            from salience_audit.results.store import StoreWriteError

            raise StoreWriteError(
                f"{err.filename or out}: cannot write the summary or report: {err.strerror or err}"
            ) from err
    print(f"report: {path}")
    return 0
