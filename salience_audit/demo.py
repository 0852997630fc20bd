"""``salience-audit demo``: the main job on the embedded demo data, end to end.

1. Build the demo data (real LFW faces vs DCGAN faces, proxy annotations, non-face
   out-of-set patches) into a cache folder, reused while its recipe is unchanged.
2. Train N seeds of the small CNN with cross-entropy (``xent``) and N with the
   human-salience-guided loss (``cyborg``, alpha 0.5, proxy annotations).
3. Audit both groups with every measure on the held-out test split and on the
   out-of-set patches, and write the report.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salience_audit.audit.config import AuditConfig
from salience_audit.cli_options import add_common_options, add_log_to_option
from salience_audit.data.sample import Sample


@dataclass(frozen=True)
class DemoSettings:
    """Size of the demo: the defaults finish within 10 minutes on a 2-core CPU."""

    seeds: int = 5
    epochs: int = 60
    batch_size: int = 20
    lr: float = 0.01
    alpha: float = 0.5
    width: int = 16
    audit_batch_size: int = 64
    device: str = "cpu"
    first_seed: int = 0

    @classmethod
    def quick(cls) -> DemoSettings:
        """A smaller demo for tests: 3 seeds per family (the same recipe otherwise)."""
        return cls(seeds=3)


def _train_family(
    loss: str, settings: DemoSettings, train: list[Sample], val: list[Sample], runs_dir: Path, progress: bool
) -> list[Path]:
    from salience_audit.training.config import TrainConfig
    from salience_audit.training.trainer import train_run

    run_dirs = []
    for seed in range(settings.first_seed, settings.first_seed + settings.seeds):
        config = TrainConfig(
            arch="small_cnn",
            loss=loss,
            alpha=settings.alpha if loss == "cyborg" else None,
            lr=settings.lr,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            step_size=max(1, int(settings.epochs * 0.8)),
            weights=None,
            device=settings.device,
            seed=seed,
            group=f"small_cnn-{loss}",
        )
        run_dir = runs_dir / f"small_cnn-{loss}-seed{seed}"
        train_run(config, train, val, run_dir, progress=progress)
        run_dirs.append(run_dir)
    return run_dirs


def run_demo(
    out_dir: str | Path = "demo-output",
    settings: DemoSettings | None = None,
    progress: bool = True,
    measures: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Run the whole demo; return paths of the runs, the audit and the report."""
    from salience_audit.audit.pipeline import run_audit
    from salience_audit.data.demo import build_demo_data
    from salience_audit.data.manifest import read_manifest

    settings = settings or DemoSettings()
    out = Path(out_dir)
    t0 = time.perf_counter()
    data = build_demo_data(out / "data")
    samples = read_manifest(data.manifest)
    train = [s for s in samples if s.split == "train"]
    test = [s for s in samples if s.split == "test"]
    ood = read_manifest(data.out_of_set_manifest)
    print(f"demo data: {len(train)} train / {len(test)} test images, {len(ood)} out-of-set patches ({data.root})")

    runs_dir = out / "runs"
    groups = {
        "xent": _train_family("xent", settings, train, test, runs_dir, progress),
        "cyborg": _train_family("cyborg", settings, train, test, runs_dir, progress),
    }
    t_train = time.perf_counter() - t0
    config = AuditConfig(
        method="gradcam",
        measures=measures or ("entropy", "noise", "transforms", "stability", "degradation", "deletion", "human"),
        batch_size=settings.audit_batch_size,
        shard_size=256,
        device=settings.device,
        seed=settings.first_seed,
    )
    test_ds = [_as_dataset(s, "demo-test") for s in test]
    ood_ds = [_as_dataset(s, "non-faces") for s in ood]
    result = run_audit(
        groups,
        {"demo-test": test_ds, "non-faces": ood_ds},
        out / "audit",
        config=config,
        ood_datasets=["non-faces"],
        command="salience-audit demo",
        progress=progress,
    )
    elapsed = time.perf_counter() - t0
    print(f"trained {2 * settings.seeds} runs in {t_train:.0f} s; audit + report done in {elapsed - t_train:.0f} s")
    return {"runs": groups, "audit": result.out_dir, "report": result.report_path, "summary": result.summary_path}


def _as_dataset(sample: Sample, name: str) -> Sample:
    from dataclasses import replace

    return replace(sample, dataset=name)


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="run the main job on the embedded demo data and write the report",
        description=(
            "Build the offline demo data (LFW faces vs DCGAN faces with proxy annotations), train "
            "N seeds of a small CNN with cross-entropy and N with the guided (CYBORG) loss, audit all "
            "five measures for both groups and write the HTML report."
        ),
    )
    p.add_argument("--seeds", type=int, help="runs per family (default 5)")
    p.add_argument("--epochs", type=int, help="training epochs per run (default 30)")
    p.add_argument("--quick", action="store_true", help="fewer seeds and epochs (for tests)")
    add_common_options(
        p, out_help="output folder (default: %(default)s)", out_default="demo-output", device_default="cpu",
        seed_help="first seed of each family (runs S..S+N-1) and the audit's noise seed (default 0)",
    )
    add_log_to_option(p)
    p.set_defaults(func=_run_demo_command)
    return p


def _run_demo_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    if args.seeds is not None:
        settings = replace(settings, seeds=args.seeds)
    if args.epochs is not None:
        settings = replace(settings, epochs=args.epochs)
    if args.device is not None:
        settings = replace(settings, device=args.device)
    if args.seed is not None:
        settings = replace(settings, first_seed=args.seed)
    from salience_audit.tracking import log_audit, log_training_runs, open_trackers

    trackers = open_trackers(args.log_to)
    result = run_demo(args.out, settings, progress=not args.quiet)
    log_training_runs(trackers, [d for dirs in result["runs"].values() for d in dirs])
    log_audit(trackers, result["audit"])
    print(f"report: {Path(result['report']).resolve()}")
    return 0
