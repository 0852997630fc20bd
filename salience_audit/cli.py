"""The ``salience-audit`` command line: demo, train, score, audit, report."""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from typing import Any, TextIO

from salience_audit import __version__
from salience_audit.errors import SalienceAuditError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="salience-audit",
        description="Explain image classifiers at scale through their salience maps.",
    )
    parser.add_argument("--version", action="version", version=f"salience-audit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from salience_audit.audit.cli_commands import add_audit_parser, add_report_parser
    from salience_audit.demo import add_demo_parser
    from salience_audit.training.cli_commands import add_score_parser, add_train_parser

    add_demo_parser(sub)
    add_train_parser(sub)
    add_score_parser(sub)
    add_audit_parser(sub)
    add_report_parser(sub)
    return parser


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int,
    file: TextIO | None = None, line: str | None = None, **_: Any,
) -> None:
    """Warnings as ``salience-audit: warning: <message>`` lines (no source file, no code line)."""
    print(f"salience-audit: warning: {message}", file=file or sys.stderr)


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (handled like Ctrl-C)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = None
    try:  # SIGTERM (kill, a batch scheduler's time limit) stops as cleanly as Ctrl-C
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except SalienceAuditError as err:
        print(f"salience-audit: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("salience-audit: interrupted; finished shards are kept, run the same command to resume", file=sys.stderr)
        return 130
    except Terminated:
        print(
            "salience-audit: terminated (SIGTERM); finished shards are kept, run the same command to resume",
            file=sys.stderr,
        )
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
