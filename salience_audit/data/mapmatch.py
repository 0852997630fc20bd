"""Find the map file of each image in a folder of maps: by relative path first, by stem only when safe.

A folder of maps (human annotations, or salience maps saved by another tool) is matched to
the images of a dataset in two steps:

1. **Relative path** - the folder mirrors the image tree: the image ``stylegan2/000700.png``
   (its path relative to the dataset root, or to the class-per-folder directory) has the
   map ``<folder>/stylegan2/000700.<ext>`` (any known extension).
2. **Stem** - otherwise, a map anywhere in the folder whose file name without extension
   equals the image's. This is used only when it is unambiguous: exactly one map file has
   that stem, and no other image of the dataset has the same stem. Two images
   ``StyleGAN-1/000700.png`` and ``StyleGAN-2/000700.png`` would otherwise silently share
   one map, so that is an error naming both images, unless the caller chose
   ``mode="stem"`` (command line ``--human-map-match stem``) knowingly.

``mode="path"`` uses step 1 only.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MATCH_MODES", "MapFolder", "relative_key"]

MATCH_MODES: tuple[str, ...] = ("auto", "path", "stem")


def relative_key(written: str, resolved: str, base: str | None) -> str | None:
    """The image's path relative to its dataset base, posix style, without a leading slash.

    ``written`` is the path as written in the manifest; when it is absolute, the path of
    ``resolved`` relative to ``base`` is used if it lies inside it. None when neither works.
    """
    if written and not os.path.isabs(written):
        rel = posixpath.normpath(written.replace(os.sep, "/").lstrip("/"))
    elif base is not None:
        rel = os.path.relpath(resolved, base).replace(os.sep, "/")
    else:
        return None
    if rel == ".." or rel.startswith("../") or rel == ".":
        return None
    return rel


@dataclass(frozen=True)
class _Hit:
    path: str | None
    how: str  # "path", "stem" or "" (none)


class MapFolder:
    """The map files under ``folder`` (recursively), indexed by relative path and by stem.

    Args:
        folder: the folder of maps.
        extensions: file types that are maps, in order of preference when one image has
            several (``a.png`` and ``a.npy``: the first listed wins).
    """

    def __init__(self, folder: str | os.PathLike[str], extensions: Sequence[str]) -> None:
        self.folder = os.fspath(folder)
        rank = {ext.lower(): i for i, ext in enumerate(extensions)}
        entries: list[tuple[str, int, str]] = []
        for dirpath, dirnames, filenames in os.walk(self.folder):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                stem, ext = os.path.splitext(name)
                order = rank.get(ext.lower())
                if order is None or name.startswith("."):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, stem), self.folder).replace(os.sep, "/")
                entries.append((rel, order, os.path.join(dirpath, name)))
        self._index(entries)

    @classmethod
    def from_keys(cls, where: str, keys: Sequence[str]) -> MapFolder:
        """An index over the entry names of one file of maps (``.npz`` keys, Parquet ``path`` column).

        A key is a relative image path (``stylegan2/000700.png``, with or without extension,
        a leading slash ignored); :meth:`match` then returns the key itself.
        """
        self = cls.__new__(cls)
        self.folder = where
        entries = []
        for key in keys:
            rel = posixpath.normpath(key.replace(os.sep, "/").lstrip("/"))
            base, ext = posixpath.splitext(rel)
            entries.append((base if ext else rel, 0, key))
        self._index(entries)
        return self

    def _index(self, entries: Sequence[tuple[str, int, str]]) -> None:
        by_rel: dict[str, tuple[int, str]] = {}
        by_stem: dict[str, list[str]] = {}
        for rel, order, target in entries:
            if rel not in by_rel or order < by_rel[rel][0]:
                by_rel[rel] = (order, target)
            by_stem.setdefault(posixpath.basename(rel), []).append(rel)
        self.by_rel = {rel: path for rel, (_, path) in by_rel.items()}
        self.by_stem = {stem: sorted(set(rels)) for stem, rels in by_stem.items()}

    def __len__(self) -> int:
        return len(self.by_rel)

    def _lookup_path(self, rel: str | None) -> str | None:
        if rel is None:
            return None
        return self.by_rel.get(posixpath.splitext(rel)[0])

    def match(
        self, images: Sequence[tuple[str | None, str]], mode: str = "auto"
    ) -> tuple[list[str | None], list[tuple[int, str]]]:
        """The map file of each image, and the problems found.

        Args:
            images: ``(relative key or None, image path)`` per image (see :func:`relative_key`).
            mode: ``auto`` (path, then unambiguous stem), ``path`` or ``stem`` (accept shared stems).

        Returns:
            ``(maps, problems)``: a path or None per image, and ``(image position, message)``
            for each image whose stem match is ambiguous (its map is then None).
        """
        if mode not in MATCH_MODES:
            raise ValueError(f"mode must be one of {MATCH_MODES}, got {mode!r}")
        hits: list[_Hit] = []
        for rel, _path in images:
            found = None if mode == "stem" else self._lookup_path(rel)
            hits.append(_Hit(found, "path" if found else ""))
        if mode == "path":
            return [h.path for h in hits], []
        image_stems: dict[str, list[int]] = {}
        for i, (_rel, path) in enumerate(images):
            image_stems.setdefault(os.path.splitext(os.path.basename(path))[0], []).append(i)
        problems: list[tuple[int, str]] = []
        out: list[str | None] = []
        for i, ((_rel, path), hit) in enumerate(zip(images, hits)):
            if hit.path is not None:
                out.append(hit.path)
                continue
            stem = os.path.splitext(os.path.basename(path))[0]
            candidates = self.by_stem.get(stem, [])
            if not candidates:
                out.append(None)
                continue
            if mode == "auto" and len(candidates) > 1:
                shown = ", ".join(os.path.join(self.folder, c) for c in candidates[:3])
                problems.append((i, f"image {path}: several map files share its stem {stem!r} ({shown}) and none "
                                    "sits at its relative path; mirror the image tree in the map folder"))
                out.append(None)
                continue
            others = [j for j in image_stems[stem] if j != i and hits[j].path is None]
            if mode == "auto" and others:
                other = images[others[0]][1]
                problems.append((i, f"images {path} and {other} share the stem {stem!r} and would get the same "
                                    f"map {self.by_rel[candidates[0]]}; mirror the image tree in the map folder "
                                    "(maps at the images' relative paths), or pass --human-map-match stem to "
                                    "accept one map for both knowingly"))
                out.append(None)
                continue
            out.append(self.by_rel[candidates[0]])
        return out, problems
