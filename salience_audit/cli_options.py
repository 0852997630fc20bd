"""The flags every sub-command shares, spelled the same way everywhere, and ``--config`` files.

Every command (``train``, ``score``, ``audit``, ``report``, ``demo``) takes

    --out DIR        the folder the command writes in
    --config FILE    a YAML/TOML file of the command's settings (keys = flag names; flags win)
    -q, --quiet      no progress bars (old spelling ``--no-progress`` kept as an alias)

and, where the command computes on a device or draws random numbers, ``--device`` and
``--seed``. The exit statuses are listed in :mod:`salience_audit.errors`.

How ``--config`` files are applied: :mod:`salience_audit.cli_config`.
"""

from __future__ import annotations

import argparse

__all__ = ["add_common_options", "add_log_to_option"]


def add_common_options(
    parser: argparse.ArgumentParser,
    *,
    out_help: str,
    out_default: str | None,
    device: bool = True,
    device_default: str = "auto",
    seed_help: str | None = None,
    config_help: str | None = None,
) -> None:
    """Add ``--out``, ``--config``, ``--quiet`` (alias ``--no-progress``) and, when asked, ``--device``/``--seed``."""
    group = parser.add_argument_group("common to every command")
    group.add_argument("--out", default=out_default, metavar="DIR", help=out_help)
    group.add_argument(
        "--config", metavar="FILE",
        help=config_help or "YAML (.yaml/.yml) or TOML (.toml) file of this command's settings, keys named "
        "like the flags (batch-size or batch_size); flags given on the command line win",
    )
    group.add_argument("-q", "--quiet", "--no-progress", dest="quiet", action="store_true",
                       help="no progress bars (they are also off when stderr is not a terminal)")
    if device:
        group.add_argument("--device", default=None,
                           help=f"'auto' (a GPU when available), 'cpu', 'cuda' or 'cuda:N' (default: {device_default})")
    if seed_help is not None:
        group.add_argument("--seed", type=int, default=None, metavar="S", help=seed_help)


def add_log_to_option(parser: argparse.ArgumentParser) -> None:
    """``--log-to mlflow[:URI] | tensorboard[:DIR] | wandb[:PROJECT]`` (repeatable; see :mod:`salience_audit.tracking`)."""
    from salience_audit.tracking.backends import checked_log_to

    parser.add_argument(
        "--log-to", action="append", default=None, type=checked_log_to, metavar="TRACKER[:WHERE]",
        help="also log to an experiment tracker: mlflow[:URI] (default ./mlruns), tensorboard[:DIR] "
        "(default ./tb-logs) or wandb[:PROJECT] (offline unless configured); repeat for several",
    )
