"""Fast pre-flight check of every image before hours of work start.

Each file is verified by Pillow (header and, for PNG, chunk checksums), then decoded
and converted exactly as the audit pass will do it (:func:`load_image`), so a file that
passes here cannot fail later: a truncated JPEG, whose header verifies fine, is caught
here and not half-way through the audit. Human maps listed for an image are checked the
same way (:func:`load_map`); maps not stored as grayscale are converted (luma) and noted
in one warning. Problems either stop the audit with one message listing them (file,
manifest line, problem) or, with ``on_bad_image="skip"``, are removed from the audit and
reported in ``rejected.csv``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from salience_audit.progress import bar_disable

from salience_audit.data.images import load_image, load_map
from salience_audit.data.sample import Sample
from salience_audit.errors import InputError

Rejected = tuple[str, int, str]


def _verify_file(path: str) -> str | None:
    """Problem with a file's existence, size or structure (Pillow ``verify``), or ``None``."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return "image file not found"
    if size == 0:
        return "image file is empty (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return f"image is too large to decode safely ({err})"
    except UnidentifiedImageError:
        return "not an image file (Pillow cannot identify it)"
    except (OSError, SyntaxError, ValueError) as err:
        return f"corrupt or truncated image ({err})"
    return None


def check_image_file(path: str) -> str | None:
    """Return a problem description for an unreadable image file, or ``None`` when it looks fine."""
    problem = _verify_file(path)
    if problem is not None:
        return problem
    try:  # decode and convert the pixels, as the audit pass will
        load_image(path, 1)
    except InputError as err:
        return err.problem
    return None


GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
"""PIL modes read as a grayscale map without a colour conversion."""


def check_map_file(path: str) -> tuple[str | None, str | None]:
    """``(problem, mode)`` of a human map file: problem ``None`` when it loads, mode its PIL mode."""
    problem = _verify_file(path)
    if problem is not None:
        return problem, None
    try:
        with Image.open(path) as img:
            mode = img.mode
        load_map(path, 1)
    except InputError as err:
        return err.problem, None
    except (OSError, ValueError) as err:
        return f"cannot decode map ({err})", None
    return None, mode


def _check_sample(s: Sample, colour_maps: list[tuple[str, str]], images: bool = True) -> str | None:
    problem = check_image_file(s.path) if images else None
    if problem is not None or s.human_map is None:
        return problem
    map_problem, mode = check_map_file(s.human_map)
    if map_problem is not None:
        return f"human map {s.human_map}: {map_problem}"
    if mode is not None and mode not in GRAYSCALE_MODES:
        colour_maps.append((s.human_map, mode))
    return None


def preflight(
    datasets: Mapping[str, list[Sample]], on_bad_image: str = "stop", progress: bool = True, images: bool = True
) -> tuple[dict[str, list[Sample]], list[Rejected]]:
    """Check every image of every dataset; return the usable datasets and the rejected items.

    With ``on_bad_image="stop"`` any problem raises :class:`InputError` naming each bad
    file with its manifest and line. An empty dataset is always an error. ``images=False``
    (an audit of precomputed maps only: no image is ever decoded) checks the human maps only.
    """
    total = sum(len(s) for s in datasets.values())
    bar = tqdm(total=total, desc="pre-flight", unit="img", disable=bar_disable(progress))
    kept: dict[str, list[Sample]] = {}
    problems: list[tuple[Sample, str]] = []
    colour_maps: list[tuple[str, str]] = []
    try:
        for name, samples in datasets.items():
            if not samples:
                raise InputError(f"dataset {name!r} holds no images")
            good: list[Sample] = []
            for s in samples:
                problem = _check_sample(s, colour_maps, images)
                if problem is None:
                    good.append(s)
                else:
                    problems.append((s, problem))
                bar.update(1)
            kept[name] = good
    finally:
        bar.close()
    if colour_maps:
        path, mode = colour_maps[0]
        warnings.warn(
            f"{len(colour_maps)} human map(s) are not stored as grayscale (e.g. {path}, mode {mode}); "
            "they are converted to grayscale (luma) before use",
            stacklevel=2,
        )
    if problems and on_bad_image == "stop":
        listed = "\n".join(
            f"  {s.source or s.path}{':' + str(s.line) if s.line else ''}: {s.path}: {p}" for s, p in problems[:20]
        )
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        first, problem = problems[0]
        raise InputError(
            f"{len(problems)} bad image(s); fix them or pass --on-bad-image skip:\n{listed}{more}",
            first.source or first.path,
            first.line or None,
        )
    for name, good in kept.items():
        if not good:
            raise InputError(f"dataset {name!r}: every image was rejected; see the messages above")
    rejected = [(s.key or s.path, s.line, p) for s, p in problems]
    return kept, rejected
