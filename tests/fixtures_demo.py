"""Session fixture: the quick demo (`salience-audit demo --quick`), run once for all tests that need it."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the quick demo through the command line; return its output folder."""
    from salience_audit.cli import main

    out = tmp_path_factory.mktemp("quick-demo")
    assert main(["demo", "--quick", "--out", str(out), "--quiet"]) == 0
    return out
