"""One writer per audit folder, and only folders the tool may write to.

- **Claiming a folder** (:func:`claim_output_folder`): ``--out`` must not exist, be empty,
  or be an audit folder of this tool (it holds the marker file
  :data:`~salience_audit.folders.AUDIT_MARKER`). A non-empty folder of other files is
  refused unless ``force``; even then no file already there is overwritten: a name the
  audit would write that already exists is refused, naming it. The marker records the
  folder's audit id, which every result shard carries.
- **The lock** (:class:`AuditFolderLock`): an exclusive ``filelock`` lock on
  ``OUT/.salience-audit.lock`` for the whole ``audit`` / ``report``. It is an OS file
  lock (``flock``), so the kernel drops it when its process dies: a killed audit never
  leaves a lock that blocks the next one. The holder writes its PID, host, start time and
  command next to it, so a refused second writer can name the first.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from salience_audit import __version__
from salience_audit.atomic import atomic_write_text
from salience_audit.errors import InputError
from salience_audit.folders import AUDIT_LOCK, AUDIT_LOCK_OWNER, AUDIT_MARKER

OUTPUT_NAMES: tuple[str, ...] = (
    "results",
    "aggregates",
    "plan.json",
    "audit.json",
    "rejected.csv",
    "mean_maps.npz",
    "gallery.npz",
    "summary.json",
    "report",
)
"""Every name an audit writes at the top of its output folder."""

TOOL = "salience-audit"


def read_marker(out: str | Path) -> dict[str, Any] | None:
    """The marker of an audit folder, or None when ``out`` is not one."""
    path = Path(out) / AUDIT_MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("tool") != TOOL or not isinstance(data.get("audit_id"), str):
        return None
    return data


def _write_marker(out: Path) -> dict[str, Any]:
    marker = {
        "tool": TOOL,
        "version": __version__,
        "audit_id": uuid.uuid4().hex,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(out / AUDIT_MARKER, json.dumps(marker, indent=2) + "\n")
    return marker


def _legacy_audit_folder(out: Path) -> bool:
    """A folder written by a version of this tool before the marker existed (its plan.json is ours)."""
    try:
        plan = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(plan, dict) and {"groups", "datasets", "shard_size"} <= set(plan) and (out / "results").is_dir()


def claim_output_folder(out: str | Path, force: bool = False, write: bool = True) -> str | None:
    """Make sure the audit may write into ``out``; return the folder's audit id.

    With ``write=False`` only checks (nothing is created; returns the id when the folder
    already has one, else None). A folder written by an older version (its ``plan.json``
    and ``results/``, no marker) is adopted as an audit folder.

    Raises :class:`InputError` when ``out`` is a file, or a non-empty folder that is not an
    audit folder (without ``force``), or when ``force`` is given but a name the audit
    writes (``summary.json``, ``report/`` ...) is already taken by a file it did not write.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError("the output folder is a file, not a folder; choose another --out", out)
    marker = read_marker(out)
    if marker is not None:
        return str(marker["audit_id"])
    if _legacy_audit_folder(out):
        return str(_write_marker(out)["audit_id"]) if write else None
    present = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    present = [n for n in present if n not in (AUDIT_LOCK, AUDIT_LOCK_OWNER) and not _own_temporary(n)]
    if present and not force:
        shown = ", ".join(present[:5]) + (f" ... ({len(present)} entries)" if len(present) > 5 else "")
        raise InputError(
            f"the output folder is not empty and is not an audit folder of this tool (no {AUDIT_MARKER} "
            f"marker); it holds {shown}. Choose a new or empty --out, or pass --force to write into it "
            "(files already there are never overwritten or deleted)",
            out,
        )
    taken = [n for n in OUTPUT_NAMES if n in present]
    if taken:
        raise InputError(
            f"--force: the audit would overwrite {', '.join(taken)}, which this tool did not write; "
            "move them away or choose another --out",
            out,
        )
    if not write:
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the output folder: {err.strerror or err}", out) from err
    return str(_write_marker(out)["audit_id"])


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")
"""Temporary sibling of an atomic write (``atomic_write``): ``.<name>.<8 random characters>.tmp``."""


def _own_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary file left by this tool's atomic write of one of its top-level files."""
    match = _TEMPORARY.match(name)
    return bool(match) and match.group("name") in (*OUTPUT_NAMES, AUDIT_MARKER, AUDIT_LOCK_OWNER)


def remove_own_temporaries(out: str | Path) -> None:
    """Delete temporary files a killed run of this tool left at the top of its audit folder (never others)."""
    out = Path(out)
    if read_marker(out) is None:
        return
    for path in out.iterdir():
        if path.is_file() and _own_temporary(path.name):
            path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_text(out: Path) -> str:
    """Who holds the lock, from the owner file (waits briefly: the holder writes it just after locking)."""
    path = out / AUDIT_LOCK_OWNER
    for _ in range(10):
        try:
            owner = json.loads(path.read_text(encoding="utf-8"))
            break
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            time.sleep(0.05)
    else:
        return "another process (it has not written its PID yet)"
    pid = owner.get("pid")
    host = owner.get("host", "?")
    text = f"PID {pid} on {host}, started {owner.get('started', '?')}"
    if owner.get("command"):
        text += f": {owner['command']}"
    if host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
        text += " (that PID is not running here; is the folder shared with another machine?)"
    return text


class AuditFolderLock:
    """Exclusive lock of an audit folder for one ``audit`` or ``report`` (a context manager).

    ``wait`` seconds are spent waiting for another holder before giving up with an
    :class:`InputError` naming it (PID, host, start time, command).
    """

    def __init__(self, out: str | Path, command: str = "", wait: float = 0.5) -> None:
        self.out = Path(out)
        self.command = command
        self.wait = wait
        self._lock: FileLock | None = None
        self.stale_owner: dict[str, Any] | None = None
        """Owner record left by a holder that died (its lock was released by the OS), if any."""

    def __enter__(self) -> AuditFolderLock:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"cannot create the output folder: {err.strerror or err}", self.out) from err
        lock = FileLock(self.out / AUDIT_LOCK, timeout=self.wait, thread_local=False)
        try:
            lock.acquire()
        except Timeout:
            raise InputError(
                f"another salience-audit is writing to this folder ({_owner_text(self.out)}); wait for it to "
                "finish, or choose another --out",
                self.out,
            ) from None
        except OSError as err:
            raise InputError(f"cannot lock the output folder: {err.strerror or err}", self.out) from err
        self._lock = lock
        owner_path = self.out / AUDIT_LOCK_OWNER
        try:
            self.stale_owner = json.loads(owner_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            self.stale_owner = None
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
        }
        atomic_write_text(owner_path, json.dumps(owner) + "\n")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is None:
            return
        try:
            (self.out / AUDIT_LOCK_OWNER).unlink(missing_ok=True)
        finally:
            self._lock.release()
            self._lock = None
