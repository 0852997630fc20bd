"""Read, check, hash and write image manifests.

Three input forms are recognised by :func:`read_manifest`:

(a) **original-study CSV** - no header, one image per line ``split,label,path``;
    split in {train, test}, label in {Real, Synthetic} (case-insensitive), path
    written like ``/stylegan2/00001.png`` and joined to the dataset ``root``
    (required). Human annotations come from a folder (``human_maps``) holding a
    map with the same file stem as the image (.png/.jpg/.jpeg/.bmp).
(b) **header CSV** - a header naming the columns ``split,label,path`` plus the
    optional ``human_map`` and ``dataset``, in any order. Labels may be
    Real/Synthetic/0/1, or ``unknown``/-1 for data without ground truth (e.g.
    out-of-set images); splits are train/test/audit. Relative paths are
    resolved against ``root`` or, without it, the manifest's folder; absolute
    paths are used as they are.
(c) **a directory** - a class-per-folder tree ``<dir>/Real/**`` and
    ``<dir>/Synthetic/**`` (folder names case-insensitive); every image found
    becomes a ``test`` sample.

Every problem found is collected and reported together in one
:class:`ManifestError`, each with its file and line, so a user can fix a
manifest in one pass.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from salience_audit.atomic import atomic_write_text
from salience_audit.data.sample import CLASS_NAMES, Sample
from salience_audit.errors import InputError
from salience_audit.folders import AUDIT_MARKER

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAP_EXTENSIONS",
    "ManifestError",
    "Problem",
    "manifest_hash",
    "read_manifest",
    "read_manifests",
    "write_manifest",
]

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""File types collected from class-per-folder trees (compared case-insensitively)."""

MAP_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
"""File types of human maps looked up by stem in a ``human_maps`` folder, in order of preference."""

HEADER_COLUMNS: tuple[str, ...] = ("split", "label", "path", "human_map", "dataset")
REQUIRED_COLUMNS: tuple[str, ...] = ("split", "label", "path")

STUDY_SPLITS: frozenset[str] = frozenset({"train", "test"})
HEADER_SPLITS: frozenset[str] = frozenset({"train", "test", "audit"})

STUDY_LABELS: dict[str, int] = {"real": 0, "synthetic": 1}
HEADER_LABELS: dict[str, int] = {**STUDY_LABELS, "0": 0, "1": 1, "-1": -1, "unknown": -1}

MAX_LISTED_PROBLEMS = 50
"""At most this many problems are spelled out in the exception message (all are in ``.problems``)."""


class Problem(NamedTuple):
    """One thing wrong with an input: where (file, 1-based line or None) and what."""

    path: str
    line: int | None
    problem: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.problem}"


class ManifestError(InputError):
    """One or more problems in one or more manifests.

    ``path``, ``line`` and ``problem`` describe the first problem (as for any
    :class:`InputError`); ``problems`` lists all of them as
    ``(path, line, problem)`` tuples. ``str(err)`` has the first problem on its
    first line and the others (up to :data:`MAX_LISTED_PROBLEMS`) below.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("ManifestError needs at least one problem")
        self.problems: list[Problem] = list(problems)
        first = self.problems[0]
        super().__init__(first.problem, first.path, first.line)
        lines = [str(p) for p in self.problems[:MAX_LISTED_PROBLEMS]]
        hidden = len(self.problems) - len(lines)
        if len(self.problems) > 1:
            lines.insert(1, f"({len(self.problems)} problems in all)")
        if hidden > 0:
            lines.append(f"... and {hidden} more problem(s) not listed here")
        self.args = ("\n".join(lines),)

    def __reduce__(self) -> tuple[type[ManifestError], tuple[list[Problem]]]:
        return (type(self), (self.problems,))


# --------------------------------------------------------------------------- helpers


def _relative_inside(path: str) -> str | None:
    """Normalise a manifest path meant to lie under a root; None when it escapes it.

    Purely lexical (no symlink resolution): leading slashes are dropped, ``.``
    and ``..`` segments are folded, and a result that climbs above the root
    (``../x``, ``/../x``, ``a/../../x``) is rejected.
    """
    rel = posixpath.normpath(path.replace(os.sep, "/").lstrip("/"))
    if rel == ".." or rel.startswith("../"):
        return None
    return rel


def _resolve(path: str, base: str, allow_absolute: bool) -> str | None:
    """Absolute, normalised path of a manifest entry, or None when it escapes ``base``."""
    if allow_absolute and os.path.isabs(path):
        return os.path.normpath(path)
    rel = _relative_inside(path)
    if rel is None:
        return None
    return os.path.normpath(os.path.join(base, rel))


def _map_index(folder: str) -> dict[str, str]:
    """Map file stem -> path for the human maps in ``folder`` (top level only)."""
    rank = {ext: i for i, ext in enumerate(MAP_EXTENSIONS)}
    best: dict[str, tuple[int, str]] = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            stem, ext = os.path.splitext(entry.name)
            order = rank.get(ext.lower())
            if order is None or entry.name.startswith(".") or not entry.is_file():
                continue
            if stem not in best or order < best[stem][0]:
                best[stem] = (order, entry.path)
    return {stem: p for stem, (_, p) in best.items()}


def _check_human_map_folder(human_maps: PathLike | None, problems: list[Problem]) -> dict[str, str] | None:
    if human_maps is None:
        return None
    folder = os.fspath(human_maps)
    if not os.path.isdir(folder):
        problems.append(Problem(folder, None, "human-map folder does not exist or is not a directory"))
        return None
    return _map_index(folder)


def _read_rows(path: str, problems: list[Problem]) -> list[tuple[int, list[str]]] | None:
    """Non-blank CSV rows with their 1-based line numbers; UTF-8 (BOM allowed), any line ending."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        problems.append(Problem(path, None, f"cannot read manifest: {err.strerror or err}"))
        return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        problems.append(Problem(path, line, "manifest is not UTF-8 text"))
        return None
    if "\x00" in text:
        problems.append(Problem(path, text.count("\n", 0, text.index("\x00")) + 1, "manifest is not a text file"))
        return None
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    try:
        for row in reader:
            cells = [c.strip() for c in row]
            if any(cells):
                rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as err:
        problems.append(Problem(path, start, f"unreadable CSV: {err}"))
        return None
    return rows


def _is_header(cells: list[str]) -> bool:
    lowered = [c.lower() for c in cells]
    return lowered[0] not in STUDY_SPLITS and any(c in HEADER_COLUMNS for c in lowered)


class _RowChecker:
    """Shared per-row checks (split, label, path, duplicates, files) of both CSV forms."""

    def __init__(self, source: str, problems: list[Problem], check_files: bool) -> None:
        self.source = source
        self.problems = problems
        self.check_files = check_files
        self.seen: dict[str, int] = {}

    def report(self, line: int | None, problem: str) -> None:
        self.problems.append(Problem(self.source, line, problem))

    def split(self, line: int, value: str, allowed: frozenset[str]) -> str | None:
        split = value.lower()
        if split not in allowed:
            self.report(line, f"unknown split {value!r} (expected one of {', '.join(sorted(allowed))})")
            return None
        return split

    def label(self, line: int, value: str, allowed: dict[str, int]) -> int | None:
        label = allowed.get(value.lower())
        if label is None:
            names = ", ".join(CLASS_NAMES) + (", 0, 1, unknown, -1" if "0" in allowed else "")
            self.report(line, f"unknown label {value!r} (expected one of {names})")
        return label

    def image(self, line: int, value: str, base: str, allow_absolute: bool, what: str = "path") -> str | None:
        if not value:
            self.report(line, f"empty {what}")
            return None
        resolved = _resolve(value, base, allow_absolute)
        if resolved is None:
            self.report(line, f"{what} {value!r} escapes the dataset root {base}")
            return None
        if resolved == os.path.normpath(base):
            self.report(line, f"{what} {value!r} names the dataset root itself, not a file")
            return None
        if self.check_files and not os.path.isfile(resolved):
            self.report(line, f"{what.replace('_', ' ')} file not found: {resolved}")
            return None
        return resolved

    def unique(self, line: int, resolved: str, written: str) -> bool:
        first = self.seen.setdefault(resolved, line)
        if first != line:
            self.report(line, f"duplicate path {written!r} (first listed on line {first})")
            return False
        return True


def _lookup_map(index: dict[str, str] | None, image_path: str) -> str | None:
    if index is None:
        return None
    return index.get(os.path.splitext(os.path.basename(image_path))[0])


def _log_map_coverage(source: str, index: dict[str, str] | None, samples: list[Sample]) -> None:
    if index is None or not samples:
        return
    missing = sum(1 for s in samples if s.human_map is None)
    if missing:
        log.warning(
            "%s: %d of %d images have no human map in the folder; they contribute cross-entropy only",
            source, missing, len(samples),
        )


# --------------------------------------------------------------------------- the three forms


def _read_study_csv(
    source: str,
    rows: list[tuple[int, list[str]]],
    root: str | None,
    map_index: dict[str, str] | None,
    dataset: str,
    check_files: bool,
    problems: list[Problem],
) -> list[Sample]:
    if root is None:
        problems.append(Problem(
            source, rows[0][0],
            "this is an original-study manifest (no header, split,label,path); "
            "its paths are relative to a dataset root, so a root folder is required",
        ))
        return []
    checker = _RowChecker(source, problems, check_files)
    samples: list[Sample] = []
    for line, cells in rows:
        if len(cells) != 3:
            checker.report(line, f"expected 3 columns (split,label,path), found {len(cells)}")
            continue
        split = checker.split(line, cells[0], STUDY_SPLITS)
        label = checker.label(line, cells[1], STUDY_LABELS)
        resolved = checker.image(line, cells[2], root, allow_absolute=False)
        if resolved is None or not checker.unique(line, resolved, cells[2]):
            continue
        if split is None or label is None:
            continue
        samples.append(Sample(
            path=resolved, label=label, split=split, dataset=dataset,
            human_map=_lookup_map(map_index, resolved), source=source, line=line, key=cells[2],
        ))
    return samples


def _parse_header(source: str, line: int, cells: list[str], problems: list[Problem]) -> dict[str, int] | None:
    columns: dict[str, int] = {}
    ok = True
    lowered = [c.lower() for c in cells]
    unknown = [c for c, low in zip(cells, lowered) if low not in HEADER_COLUMNS]
    if unknown:
        problems.append(Problem(
            source, line,
            f"unknown column(s) {', '.join(repr(c) for c in unknown)} "
            f"(allowed: {', '.join(HEADER_COLUMNS)})",
        ))
        ok = False
    for i, name in enumerate(lowered):
        if name in columns:
            problems.append(Problem(source, line, f"column {name!r} appears twice"))
            ok = False
        columns.setdefault(name, i)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        problems.append(Problem(source, line, f"missing required column(s): {', '.join(missing)}"))
        ok = False
    return columns if ok else None


def _read_header_csv(
    source: str,
    rows: list[tuple[int, list[str]]],
    root: str | None,
    map_index: dict[str, str] | None,
    dataset: str | None,
    check_files: bool,
    problems: list[Problem],
) -> list[Sample]:
    header_line, header = rows[0]
    columns = _parse_header(source, header_line, header, problems)
    if columns is None:
        return []
    base = root if root is not None else os.path.dirname(os.path.abspath(source))
    default_dataset = Path(source).stem
    checker = _RowChecker(source, problems, check_files)
    samples: list[Sample] = []
    for line, cells in rows[1:]:
        if len(cells) != len(header):
            checker.report(line, f"expected {len(header)} columns ({','.join(header)}), found {len(cells)}")
            continue
        split = checker.split(line, cells[columns["split"]], HEADER_SPLITS)
        label = checker.label(line, cells[columns["label"]], HEADER_LABELS)
        written = cells[columns["path"]]
        resolved = checker.image(line, written, base, allow_absolute=True)
        human_map: str | None = None
        map_ok = True
        if "human_map" in columns and cells[columns["human_map"]]:
            human_map = checker.image(line, cells[columns["human_map"]], base, True, what="human_map")
            map_ok = human_map is not None
        elif resolved is not None:
            human_map = _lookup_map(map_index, resolved)
        if resolved is None or not checker.unique(line, resolved, written):
            continue
        if split is None or label is None or not map_ok:
            continue
        row_dataset = cells[columns["dataset"]] if "dataset" in columns else ""
        samples.append(Sample(
            path=resolved, label=label, split=split,
            dataset=dataset or row_dataset or default_dataset,
            human_map=human_map, source=source, line=line, key=written,
        ))
    return samples


def _class_of_folder(name: str) -> int | None:
    return STUDY_LABELS.get(name.lower())


def _read_class_folders(
    folder: str,
    map_index: dict[str, str] | None,
    dataset: str,
    problems: list[Problem],
) -> list[Sample]:
    found: dict[int, str] = {}
    others: list[str] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        label = _class_of_folder(entry.name)
        if label is None:
            others.append(entry.name)
        elif label in found:
            problems.append(Problem(
                folder, None, f"class folders {found[label]!r} and {entry.name!r} name the same class",
            ))
        else:
            found[label] = entry.name
    if others or not found:
        listing = ", ".join(repr(n) for n in others) if others else "no sub-folders"
        problems.append(Problem(
            folder, None,
            f"a class-per-folder dataset needs sub-folders named Real and/or Synthetic "
            f"(case-insensitive) and nothing else; found {listing}",
        ))
        return []
    samples: list[Sample] = []
    for label in sorted(found):
        class_dir = os.path.join(folder, found[label])
        for dirpath, dirnames, filenames in os.walk(class_dir):
            # hidden folders, and audit output folders written inside the dataset (their figures are no data)
            dirnames[:] = sorted(
                d for d in dirnames if not d.startswith(".") and not os.path.exists(os.path.join(dirpath, d, AUDIT_MARKER))
            )
            for name in sorted(filenames):
                if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                    continue
                full = os.path.join(dirpath, name)
                key = os.path.relpath(full, folder).replace(os.sep, "/")
                samples.append(Sample(
                    path=os.path.normpath(full), label=label, split="test", dataset=dataset,
                    human_map=_lookup_map(map_index, full), source=folder, line=0, key=key,
                ))
    if not samples:
        problems.append(Problem(folder, None, f"no images ({', '.join(IMAGE_EXTENSIONS)}) under the class folders"))
    return samples


# --------------------------------------------------------------------------- public API


def _read_one(
    path: PathLike,
    root: PathLike | None,
    human_maps: PathLike | None,
    dataset: str | None,
    check_files: bool,
    problems: list[Problem],
) -> list[Sample]:
    source = os.fspath(path)
    map_index = _check_human_map_folder(human_maps, problems)
    if os.path.isdir(source):
        name = dataset or Path(os.path.abspath(source)).name
        samples = _read_class_folders(os.path.abspath(source), map_index, name, problems)
        _log_map_coverage(source, map_index, samples)
        return samples
    if not os.path.exists(source):
        problems.append(Problem(source, None, "manifest not found"))
        return []
    if not os.path.isfile(source):  # a FIFO would block forever, a device would never end
        problems.append(Problem(
            source, None, "not a regular file (a pipe, device or socket); a manifest is a CSV file or a class-per-folder "
            "directory",
        ))
        return []
    root_str: str | None = None
    if root is not None:
        root_str = os.path.abspath(os.fspath(root))
        if check_files and not os.path.isdir(root_str):
            problems.append(Problem(source, None, f"dataset root {root_str} does not exist or is not a directory"))
            return []
    rows = _read_rows(source, problems)
    if rows is None:
        return []
    if not rows:
        problems.append(Problem(source, 1, "empty manifest: no samples"))
        return []
    if _is_header(rows[0][1]):
        samples = _read_header_csv(source, rows, root_str, map_index, dataset, check_files, problems)
        if len(rows) == 1:
            problems.append(Problem(source, rows[0][0], "empty manifest: a header but no samples"))
    else:
        samples = _read_study_csv(
            source, rows, root_str, map_index, dataset or Path(source).stem, check_files, problems,
        )
    _log_map_coverage(source, map_index, samples)
    return samples


def read_manifest(
    path: PathLike,
    root: PathLike | None = None,
    human_maps: PathLike | None = None,
    dataset: str | None = None,
    check_files: bool = True,
) -> list[Sample]:
    """Read one manifest (original-study CSV, header CSV, or class-per-folder directory).

    Args:
        path: the CSV file, or a directory holding ``Real/`` and/or ``Synthetic/``.
        root: dataset root the paths are relative to. Required for the
            original-study CSV; optional for the header CSV (default: the
            manifest's folder); ignored for a directory.
        human_maps: folder of human maps named like the images (same stem, any of
            .png/.jpg/.jpeg/.bmp). An image without a map is allowed (it
            contributes cross-entropy only); their number is logged as a warning.
            In a header CSV a non-empty ``human_map`` cell takes precedence.
        dataset: dataset name given to every sample; by default the header CSV's
            ``dataset`` column, else the manifest's file stem (``progan.csv`` ->
            ``progan``) or the directory's name.
        check_files: check that every image (and listed human map) exists.

    Returns:
        The samples in manifest order (directory trees: Real then Synthetic,
        sorted by path). ``Sample.key`` is the path as written in the manifest
        (relative to the directory for trees).

    Raises:
        ManifestError: listing every problem found, each with file and line.
    """
    problems: list[Problem] = []
    samples = _read_one(path, root, human_maps, dataset, check_files, problems)
    if problems:
        raise ManifestError(problems)
    return samples


def read_manifests(
    paths: Iterable[PathLike],
    root: PathLike | None = None,
    human_maps: PathLike | None = None,
    check_files: bool = True,
) -> list[Sample]:
    """Read several manifests (one dataset each) and concatenate their samples.

    Each manifest is read as by :func:`read_manifest` with its default dataset
    name(s). A dataset name that comes from two different manifests (e.g.
    ``a/test.csv`` and ``b/test.csv``) is an error. Problems of all manifests
    are collected into one :class:`ManifestError`.
    """
    problems: list[Problem] = []
    owner: dict[str, str] = {}
    samples: list[Sample] = []
    for path in paths:
        source = os.fspath(path)
        found = _read_one(path, root, human_maps, None, check_files, problems)
        for name in dict.fromkeys(s.dataset for s in found):
            if name in owner and owner[name] != source:
                problems.append(Problem(
                    source, None,
                    f"dataset name {name!r} is also used by {owner[name]}; rename one of the manifests "
                    "or set its dataset column",
                ))
            owner.setdefault(name, source)
        samples.extend(found)
    if problems:
        raise ManifestError(problems)
    return samples


def manifest_hash(samples: Iterable[Sample]) -> str:
    """SHA-256 (hex) of the sorted ``(relative path, label)`` pairs, for run metadata.

    The path used is ``Sample.key`` (the path as written in the manifest), so the
    hash does not depend on where the dataset root is mounted.
    """
    digest = hashlib.sha256()
    for key, label in sorted((s.key or s.path, s.label) for s in samples):
        digest.update(f"{key}\t{label}\n".encode())
    return digest.hexdigest()


def _label_text(label: int) -> str:
    if label in (0, 1):
        return CLASS_NAMES[label]
    if label == -1:
        return "unknown"
    raise ValueError(f"cannot write label {label!r}: expected 0, 1 or -1")


def _written_path(path: str, folder: str) -> str:
    """Path relative to the manifest's folder (posix separators) when inside it, else absolute."""
    absolute = os.path.abspath(path)
    rel = os.path.relpath(absolute, folder)
    if rel == ".." or rel.startswith(".." + os.sep):
        return absolute
    return rel.replace(os.sep, "/")


def write_manifest(samples: Iterable[Sample], path: PathLike) -> None:
    """Write samples as a header CSV (``split,label,path,human_map,dataset``).

    Paths inside the manifest's folder are written relative to it (so the
    folder can be moved); others are written absolute. Labels are written as
    Real / Synthetic / unknown. The file is replaced atomically.
    """
    target = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(target)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER_COLUMNS)
    for s in samples:
        writer.writerow([
            s.split, _label_text(s.label), _written_path(s.path, folder),
            "" if s.human_map is None else _written_path(s.human_map, folder), s.dataset,
        ])
    atomic_write_text(target, buffer.getvalue())
