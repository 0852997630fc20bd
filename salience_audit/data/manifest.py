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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from salience_audit.atomic import atomic_write_text
from salience_audit.data.mapmatch import MapFolder, relative_key
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
UNKNOWN_LABELS: frozenset[str] = frozenset({"unknown", "-1", ""})
"""Labels read as -1 (no ground truth) in out-of-set manifests."""

FOLDER_CLASSES: dict[str, int] = {"real": 0, "synthetic": 1, "fake": 1, "0": 0, "1": 1}
"""Default class sub-folder names of folder datasets (compared case-insensitively)."""

FLAT_LABELS: dict[str, int] = {"real": 0, "synthetic": 1, "unknown": -1}
"""Values of ``label=`` for a flat folder of images."""

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


def _check_human_map_folder(human_maps: PathLike | None, problems: list[Problem]) -> MapFolder | None:
    if human_maps is None:
        return None
    folder = os.fspath(human_maps)
    if not os.path.isdir(folder):
        problems.append(Problem(folder, None, "human-map folder does not exist or is not a directory"))
        return None
    return MapFolder(folder, MAP_EXTENSIONS)


def _attach_human_maps(
    samples: list[Sample], index: MapFolder | None, base: str | None, mode: str, problems: list[Problem]
) -> list[Sample]:
    """Give each sample without a listed map its map from ``index`` (relative path, then safe stem)."""
    if index is None or not samples:
        return samples
    todo = [i for i, s in enumerate(samples) if s.human_map is None]
    keys = [(relative_key(samples[i].key, samples[i].path, base), samples[i].path) for i in todo]
    found, clashes = index.match(keys, mode=mode)
    for pos, message in clashes:
        s = samples[todo[pos]]
        problems.append(Problem(s.source, s.line or None, message))
    out = list(samples)
    for i, hit in zip(todo, found):
        if hit is not None:
            out[i] = replace(out[i], human_map=hit)
    return out


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

    out_of_set: bool | None = None
    """True: ``unknown``/-1/empty labels allowed; False: refused; None: as the format allows."""

    def label(self, line: int, value: str, allowed: dict[str, int]) -> int | None:
        label = allowed.get(value.lower())
        if self.out_of_set and value.lower() in UNKNOWN_LABELS:
            return -1
        if label == -1 and self.out_of_set is False:
            self.report(line, f"label {value!r} (unknown) is accepted in out-of-set manifests only (--ood-manifest); "
                              "an in-set dataset needs Real or Synthetic labels")
            return None
        if label is None:
            names = ", ".join(CLASS_NAMES) + (", 0, 1, unknown, -1" if "0" in allowed else "")
            if value.lower() in UNKNOWN_LABELS:
                names += "; 'unknown' or an empty label only in out-of-set manifests (--ood-manifest)"
            self.report(line, f"unknown label {value!r} (expected one of {names})")
        return label

    base_kind: str = "--root"
    """How the base of relative paths was chosen, for messages (``--root`` or ``the manifest's folder``)."""

    def how(self, value: str, base: str, allow_absolute: bool) -> str:
        """How a written path was resolved, spelled out for messages."""
        if allow_absolute and os.path.isabs(value):
            return "an absolute path, used as written"
        note = ""
        if value.startswith(("/", "\\")):
            note = ("; a leading '/' means relative to --root in the study's CSV format"
                    if not allow_absolute else "")
        if self.base_kind == "--root":
            return f"relative to --root {base}{note}"
        return f"relative to {self.base_kind} {base} (pass --root to use another base){note}"

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
            self.report(line, f"{what.replace('_', ' ')} file not found: {resolved} "
                              f"({value!r} read as {self.how(value, base, allow_absolute)})")
            return None
        return resolved

    def unique(self, line: int, resolved: str, written: str) -> bool:
        first = self.seen.setdefault(resolved, line)
        if first != line:
            self.report(line, f"duplicate path {written!r} (first listed on line {first})")
            return False
        return True


def _log_map_coverage(source: str, index: MapFolder | None, samples: list[Sample]) -> None:
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
    dataset: str,
    check_files: bool,
    problems: list[Problem],
    out_of_set: bool | None = None,
) -> list[Sample]:
    if root is None:
        problems.append(Problem(
            source, rows[0][0],
            "this is an original-study manifest (no header, split,label,path); "
            "its paths (even those starting with '/') are relative to a dataset root, so a root folder is required (--root)",
        ))
        return []
    checker = _RowChecker(source, problems, check_files)
    checker.out_of_set = out_of_set
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
            source=source, line=line, key=cells[2],
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
    dataset: str | None,
    check_files: bool,
    problems: list[Problem],
    out_of_set: bool | None = None,
) -> list[Sample]:
    header_line, header = rows[0]
    columns = _parse_header(source, header_line, header, problems)
    if columns is None:
        return []
    base = root if root is not None else os.path.dirname(os.path.abspath(source))
    default_dataset = Path(source).stem
    checker = _RowChecker(source, problems, check_files)
    checker.out_of_set = out_of_set
    if root is None:
        checker.base_kind = "the manifest's folder"
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


def parse_class_folders(spec: str | Mapping[str, object] | None) -> dict[str, int]:
    """Folder name (lower case) -> class of folder datasets.

    ``None`` gives :data:`FOLDER_CLASSES`; ``"authentic=Real,gan=Synthetic"`` or a mapping
    ``{"authentic": "Real", "gan": 1}`` replaces it (classes Real/Synthetic/0/1).
    """
    if spec is None:
        return dict(FOLDER_CLASSES)
    items = spec.items() if isinstance(spec, Mapping) else (
        part.split("=", 1) if "=" in part else (part, "") for part in str(spec).split(",") if part.strip())
    out: dict[str, int] = {}
    for folder, cls in items:
        label = {"real": 0, "synthetic": 1, "0": 0, "1": 1}.get(str(cls).strip().lower())
        if label is None or not str(folder).strip():
            raise InputError(f"class folders: expected FOLDER=Real or FOLDER=Synthetic entries, got {spec!r}")
        out[str(folder).strip().lower()] = label
    return out


def _images_under(top: str, base: str) -> list[tuple[str, str]]:
    """(path, key relative to ``base``) of every image file under ``top``, sorted, hidden files skipped."""
    found: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(top):
        # hidden folders, and audit output folders written inside the dataset (their figures are no data)
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not os.path.exists(os.path.join(dirpath, d, AUDIT_MARKER))
        )
        for name in sorted(filenames):
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            full = os.path.join(dirpath, name)
            found.append((os.path.normpath(full), os.path.relpath(full, base).replace(os.sep, "/")))
    return found


def _read_class_folders(
    folder: str,
    dataset: str,
    problems: list[Problem],
    classes: dict[str, int],
    flat_label: str | None,
    out_of_set: bool | None,
) -> list[Sample]:
    """A class-per-folder tree, or (with ``flat_label`` or no sub-folder at all) a flat folder of images."""
    found: dict[int, str] = {}
    others: list[str] = []
    subfolders = [e for e in sorted(os.scandir(folder), key=lambda e: e.name)
                  if not e.name.startswith(".") and e.is_dir()]
    all_classes = bool(subfolders) and all(e.name.lower() in classes for e in subfolders)
    if not subfolders or (flat_label is not None and not all_classes):
        return _read_flat_folder(folder, dataset, problems, flat_label, out_of_set)
    if flat_label is not None:
        log.warning("%s: read by its class sub-folders (%s); the flat-folder label %r does not apply to it",
                    folder, ", ".join(e.name for e in subfolders), flat_label)
    for entry in subfolders:
        label = classes.get(entry.name.lower())
        if label is None:
            others.append(entry.name)
        elif label in found:
            problems.append(Problem(
                folder, None, f"class folders {found[label]!r} and {entry.name!r} name the same class",
            ))
        else:
            found[label] = entry.name
    if others or not found:
        real = "/".join(n for n, c in classes.items() if c == 0)
        fake = "/".join(n for n, c in classes.items() if c == 1)
        problems.append(Problem(
            folder, None,
            f"a class-per-folder dataset needs sub-folders named {real} (Real) and/or {fake} (Synthetic), "
            f"case-insensitive, and nothing else; found {', '.join(repr(n) for n in others)}. Pass "
            "--class-folders FOLDER=Real,FOLDER=Synthetic for other names, or --label real|synthetic "
            "to take every image under the folder as one class",
        ))
        return []
    samples: list[Sample] = []
    for label in sorted(found):
        for full, key in _images_under(os.path.join(folder, found[label]), folder):
            samples.append(Sample(path=full, label=label, split="test", dataset=dataset, source=folder, line=0, key=key))
    if not samples:
        problems.append(Problem(folder, None, f"no images ({', '.join(IMAGE_EXTENSIONS)}) under the class folders"))
    return samples


def _read_flat_folder(
    folder: str, dataset: str, problems: list[Problem], flat_label: str | None, out_of_set: bool | None
) -> list[Sample]:
    """Every image under ``folder`` with one label (``real``, ``synthetic``; ``unknown`` out-of-set only)."""
    if flat_label is None:
        if out_of_set:
            flat_label = "unknown"
            log.info("%s: a flat folder of out-of-set images; their label is unknown", folder)
        else:
            problems.append(Problem(folder, None, "a folder of images without class sub-folders needs their label: "
                                    "pass --label real|synthetic (or put the images in Real/ and Synthetic/ "
                                    "sub-folders)"))
            return []
    label = FLAT_LABELS.get(flat_label.lower())
    if label is None:
        problems.append(Problem(folder, None, f"--label must be real, synthetic or unknown, got {flat_label!r}"))
        return []
    if label == -1 and not out_of_set:
        problems.append(Problem(folder, None, "--label unknown is accepted for out-of-set datasets only "
                                "(--ood-manifest)"))
        return []
    samples = [Sample(path=full, label=label, split="test", dataset=dataset, source=folder, line=0, key=key)
               for full, key in _images_under(folder, folder)]
    if not samples:
        problems.append(Problem(folder, None, f"no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder"))
    return samples


# --------------------------------------------------------------------------- public API


def _read_one(
    path: PathLike,
    root: PathLike | None,
    human_maps: PathLike | None,
    dataset: str | None,
    check_files: bool,
    problems: list[Problem],
    out_of_set: bool | None = None,
    label: str | None = None,
    class_folders: str | Mapping[str, object] | None = None,
    human_map_match: str = "auto",
) -> list[Sample]:
    source = os.fspath(path)
    map_index = _check_human_map_folder(human_maps, problems)
    if os.path.isdir(source):
        name = dataset or Path(os.path.abspath(source)).name
        base = os.path.abspath(source)
        samples = _read_class_folders(base, name, problems, parse_class_folders(class_folders), label, out_of_set)
        samples = _attach_human_maps(samples, map_index, base, human_map_match, problems)
        _log_map_coverage(source, map_index, samples)
        return samples
    if not os.path.exists(source):
        problems.append(Problem(source, None, "manifest not found (neither a CSV file nor a folder of images; "
                                f"resolved against the current folder {os.getcwd()})"
                                if not os.path.isabs(source) else "manifest not found"))
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
        samples = _read_header_csv(source, rows, root_str, dataset, check_files, problems, out_of_set)
        base = root_str if root_str is not None else os.path.dirname(os.path.abspath(source))
        if len(rows) == 1:
            problems.append(Problem(source, rows[0][0], "empty manifest: a header but no samples"))
    else:
        samples = _read_study_csv(
            source, rows, root_str, dataset or Path(source).stem, check_files, problems, out_of_set,
        )
        base = root_str
    samples = _attach_human_maps(samples, map_index, base, human_map_match, problems)
    _log_map_coverage(source, map_index, samples)
    return samples


def read_manifest(
    path: PathLike,
    root: PathLike | None = None,
    human_maps: PathLike | None = None,
    dataset: str | None = None,
    check_files: bool = True,
    out_of_set: bool | None = None,
    label: str | None = None,
    class_folders: str | Mapping[str, object] | None = None,
    human_map_match: str = "auto",
) -> list[Sample]:
    """Read one manifest (original-study CSV, header CSV, class-per-folder or flat directory).

    Args:
        path: the CSV file, or a directory holding class sub-folders (``Real``/``Synthetic``,
            ``real``/``fake``, ``0``/``1`` by default) or, with ``label``, any images.
        root: dataset root the paths are relative to. Required for the
            original-study CSV (where a leading ``/`` still means "under root");
            optional for the header CSV (default: the manifest's folder; absolute
            paths are used as written); ignored for a directory.
        human_maps: folder of human maps (.png/.jpg/.jpeg/.bmp) matched to the images by
            relative path first, by stem only when unambiguous (see
            :mod:`salience_audit.data.mapmatch`). An image without a map is allowed (it
            contributes cross-entropy only); their number is logged as a warning.
            In a header CSV a non-empty ``human_map`` cell takes precedence.
        dataset: dataset name given to every sample; by default the header CSV's
            ``dataset`` column, else the manifest's file stem (``progan.csv`` ->
            ``progan``) or the directory's name.
        check_files: check that every image (and listed human map) exists.
        out_of_set: True for an out-of-set dataset: ``unknown``, ``-1`` and empty labels are
            read as -1 (no ground truth), and a flat folder defaults to unknown. False: such
            labels are refused. None (Python default): as each format allows (header CSV
            accepts ``unknown``, the study CSV does not).
        label: ``real``, ``synthetic`` or ``unknown`` for every image of a directory read
            as a flat folder: one without sub-folders, or whose sub-folders are not all class
            names (they are then walked, not taken as classes). A directory whose sub-folders
            are all class names is read by class whatever ``label`` says (a warning is logged).
        class_folders: class sub-folder names, ``"authentic=Real,gan=Synthetic"`` or a mapping.
        human_map_match: ``auto``, ``path`` or ``stem`` (accept shared stems knowingly).

    Returns:
        The samples in manifest order (directory trees: Real then Synthetic,
        sorted by path). ``Sample.key`` is the path as written in the manifest
        (relative to the directory for trees).

    Raises:
        ManifestError: listing every problem found, each with file and line; a missing
            file's message says how its path was resolved.
    """
    problems: list[Problem] = []
    samples = _read_one(path, root, human_maps, dataset, check_files, problems,
                        out_of_set, label, class_folders, human_map_match)
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
