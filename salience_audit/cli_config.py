"""``--config FILE`` for ``train``, ``score``, ``report`` and ``demo``: the file's settings become defaults.

Its keys are the command's flag names (``batch-size`` or ``batch_size``); every flag given on the
command line wins over the file. ``audit`` reads its file through its own settings (groups,
manifests and the :class:`~salience_audit.audit.config.AuditConfig` keys). The file is read with
:func:`~salience_audit.audit.config.load_config_file` (YAML ``safe_load`` or TOML).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from salience_audit.audit.config import load_config_file
from salience_audit.errors import InputError

__all__ = ["COMMAND_LINE_ONLY", "apply_config_file", "config_in_argv"]

#: Flags never read from a config file: they change what the tool trusts or which file it reads.
COMMAND_LINE_ONLY = frozenset(
    {"config", "trust_pickle", "func", "help", "version", "command", "reads_own_config"}
)


def _key_name(action: argparse.Action) -> str:
    """The name a config file uses for a flag: its first long option without dashes, or its dest."""
    return next((o[2:] for o in action.option_strings if o.startswith("--")), action.dest)


def _actions_by_key(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Flag name (``batch-size`` and ``batch_size``) and dest -> action, positional arguments included."""
    table: dict[str, argparse.Action] = {}
    for action in parser._actions:  # argparse keeps no public list of actions
        if action.dest in COMMAND_LINE_ONLY or action.dest is argparse.SUPPRESS:
            continue
        table[action.dest] = action
        for option in action.option_strings:
            if option.startswith("--"):
                table[option[2:]] = action
                table[option[2:].replace("-", "_")] = action
    return table


def config_in_argv(argv: list[str], commands: Iterable[str]) -> tuple[str | None, str | None]:
    """(command, config path) as written in ``argv`` (``--config F`` or ``--config=F``), before parsing.

    The file must be applied before argparse checks required flags, which the file may give.
    """
    names = set(commands)
    command = next((a for a in argv if a in names), None)
    path = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith("--config="):
            path = arg.split("=", 1)[1]
    return command, path


def apply_config_file(parser: argparse.ArgumentParser, path: str) -> None:
    """Make the settings of the config file at ``path`` the defaults of ``parser`` (flags still win).

    Unknown keys and values outside a flag's choices are refused with the file's name; a flag
    that is required on the command line is not required when the file gives it.
    """
    settings = load_config_file(path)
    table = _actions_by_key(parser)
    defaults: dict[str, Any] = {}
    for key, value in settings.items():
        action = table.get(str(key))
        if action is None:
            known = sorted({_key_name(a) for a in table.values()})
            raise InputError(f"unknown setting {key!r} for '{parser.prog}'; known: {known}", path)
        if action.choices is not None:
            values = value if isinstance(value, list) else [value]
            bad = [v for v in values if v not in action.choices]
            if bad:
                raise InputError(f"setting {key!r}: {bad[0]!r} is not one of {list(action.choices)}", path)
        if isinstance(action, argparse._AppendAction) and not isinstance(value, list):
            value = [value]
        if isinstance(value, list) and action.type is not None:
            value = [action.type(v) if isinstance(v, str) else v for v in value]
        defaults[action.dest] = value
        action.required = False
        if not action.option_strings:  # a positional given by the file becomes optional
            action.nargs = "?"
            action.default = value
    parser.set_defaults(**defaults)
