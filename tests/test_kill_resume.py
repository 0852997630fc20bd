"""Issue 14: an audit killed at a random point resumes to exactly the rows of an uninterrupted one.

20 seeded trials. Each kills a real audit process at a point drawn from the seed: the k-th
file the audit puts in place (``os.replace``: the folder marker, the lock-owner record,
``plan.json``, each shard's side file and rows, ``audit.json`` ...), either just before the
rename (a temporary file is left behind) or just after it. The process dies by
``os._exit`` (no cleanup runs, as with SIGKILL). The same command then runs again in a new
process; its rows must equal the uninterrupted audit's row for row, with no temporary file
left and ``audit.json`` written.

Speed: one helper process imports the package once and forks a child per audit (the
parent never runs model code, so forking is safe), instead of starting Python 40 times.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from hardening_fixtures import make_run, rgb_image, rows, write_csv
from salience_audit.cli import main

TRIALS = 20
MAX_EVENT = 14

HELPER = textwrap.dedent(
    """
    import json, os, sys
    import importlib
    for name in ("salience_audit.audit.pipeline", "salience_audit.audit.cli_commands", "salience_audit.audit.worker",
                 "salience_audit.audit.gallery", "salience_audit.audit.human", "salience_audit.audit.resume",
                 "salience_audit.audit.batch", "salience_audit.salience.extract", "salience_audit.data.manifest",
                 "salience_audit.audit.preflight", "pyarrow.parquet", "pandas"):
        importlib.import_module(name)  # import once in the parent; run no model code here
    from salience_audit.cli import main

    def child(args, k, after):
        pid = os.fork()
        if pid == 0:
            code = 99
            try:
                if k:
                    count = [0]
                    real = os.replace
                    def replace(src, dst, *a, **kw):
                        count[0] += 1
                        if count[0] == k and not after:
                            os._exit(137)
                        real(src, dst, *a, **kw)
                        if count[0] == k and after:
                            os._exit(137)
                    os.replace = replace
                code = main(args)
            finally:
                os._exit(code)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    results = []
    for trial in json.loads(sys.stdin.read()):
        killed = child(trial["args"], trial["k"], trial["after"])
        resumed = child(trial["args"], 0, False)
        results.append([killed, resumed])
    print(json.dumps(results))
    """
)


def _args(root: Path, out: Path) -> list[str]:
    return ["audit", "--group", f"g={root / 'runs' / 'run-*'}", "--manifest", str(root / "data" / "m.csv"),
            "--out", str(out), "--device", "cpu", "--quiet", "--no-report", "--shard-size", "2", "--batch-size", "2",
            "--measures", "entropy,stability", "--gallery-size", "1"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kill")
    for k in range(6):
        rgb_image(root / "data" / f"i{k}.png", seed=k)
    write_csv(root / "data" / "m.csv", [("test", "Real" if k % 2 else "Synthetic", f"i{k}.png") for k in range(6)])
    for k in range(2):
        make_run(root / "runs" / f"run-{k}", seed=k)
    assert main(_args(root, root / "reference")) == 0
    return root


def test_killed_at_random_points_resumes_to_identical_rows(setup: Path, tmp_path: Path) -> None:
    trials = []
    for seed in range(TRIALS):
        rng = random.Random(seed)
        trials.append({"args": _args(setup, tmp_path / f"t{seed}"), "k": rng.randint(1, MAX_EVENT),
                       "after": rng.random() < 0.5})
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": ":".join(sys.path), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", HELPER], input=json.dumps(trials), capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    reference = rows(setup / "reference")
    killed = 0
    for seed, (trial, (first, second)) in enumerate(zip(trials, results)):
        out = Path(trial["args"][trial["args"].index("--out") + 1])
        assert first in (0, 137), (seed, first)
        killed += first == 137
        assert second == 0, (seed, trial, proc.stderr[-3000:])
        pd.testing.assert_frame_equal(rows(out), reference, obj=f"trial {seed} (k={trial['k']}, after={trial['after']})")
        assert (out / "audit.json").is_file()
        assert not [p for p in out.rglob("*.tmp")], seed
    assert killed >= TRIALS // 2  # most trials really were killed mid-way
