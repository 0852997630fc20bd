"""The ``salience-audit`` command line: demo, train, score, audit, report."""

from __future__ import annotations

import argparse
import signal
import sys
import warnings
from typing import Any, TextIO

from salience_audit import __version__
from salience_audit.cli_config import apply_config_file, config_in_argv
from salience_audit.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, SalienceAuditError
from salience_audit.progress import progress_scope


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

    parser.command_parsers = {  # type: ignore[attr-defined]
        "demo": add_demo_parser(sub),
        "train": add_train_parser(sub),
        "score": add_score_parser(sub),
        "audit": add_audit_parser(sub),
        "report": add_report_parser(sub),
    }
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


def parse_command_line(argv: list[str]) -> argparse.Namespace:
    """Flags, then the ``--config`` file's settings (for every command but ``audit``, which merges its own), then defaults.

    Raises ``SystemExit(2)`` on usage errors (argparse) and :class:`InputError` for a bad config file.
    """
    parser = build_parser()
    command, config = config_in_argv(argv, parser.command_parsers)
    if command is not None and config is not None:
        command_parser = parser.command_parsers[command]
        if not command_parser.get_default("reads_own_config"):
            apply_config_file(command_parser, config)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; returns the exit status (see :mod:`salience_audit.errors` for the table).

    Usage errors (unknown flag, missing or mistyped value) return 2 after argparse printed them.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    previous = None
    try:  # SIGTERM (kill, a batch scheduler's time limit) stops as cleanly as Ctrl-C
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        try:
            args = parse_command_line(argv)
        except SystemExit as stop:  # argparse: --help/--version (0) or a usage error (2), already printed
            return stop.code if isinstance(stop.code, int) else EXIT_USAGE
        with warnings.catch_warnings(), progress_scope(not getattr(args, "quiet", False)):
            warnings.showwarning = _show_warning
            return int(args.func(args) or EXIT_OK)
    except SalienceAuditError as err:
        print(f"salience-audit: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("salience-audit: interrupted; finished shards are kept, run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(
            "salience-audit: terminated (SIGTERM); finished shards are kept, run the same command to resume",
            file=sys.stderr,
        )
        return EXIT_TERMINATED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
