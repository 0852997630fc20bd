"""Run every benchmark of the project, one after another, each in its own process.

- ``bench_audit.py``: throughput and model-pass efficiency per measure, peak memory,
  Quantus side by side (writes ``benchmarks/results/audit.json`` and its section of
  ``docs/benchmarks.md``);
- ``bench_guided_blur.py`` (when present): batched guided blur against the per-level
  scipy reference (writes ``benchmarks/results/guided_blur.json``).

Usage: ``python benchmarks/run_all.py [--quick] [--threads N]`` (``make bench`` installs
Quantus first). ``--threads`` is passed to both; ``--quick`` to the audit benchmark.
Exits non-zero when a benchmark fails, after running the others.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(script: Path, args: list[str]) -> int:
    print(f"== {script.name} {' '.join(args)}", flush=True)
    t0 = time.perf_counter()
    code = subprocess.call([sys.executable, str(script), *args])
    print(f"== {script.name}: exit {code} after {time.perf_counter() - t0:.0f} s", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller audit benchmark (smoke run)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads for every benchmark (default: all CPUs)")
    args = parser.parse_args(argv)
    threads = ["--threads", str(args.threads)] if args.threads > 0 else []

    failures = 0
    audit_args = threads + (["--quick"] if args.quick else [])
    failures += _run(HERE / "bench_audit.py", audit_args) != 0
    blur = HERE / "bench_guided_blur.py"
    if blur.exists():
        failures += _run(blur, threads) != 0
    else:
        print("== bench_guided_blur.py not found: skipped", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
