"""Fast pre-flight check of every image before hours of work start.

Each file is opened and verified by Pillow (header and, for PNG, chunk checksums)
without decoding the pixels. Problems either stop the audit with one message
listing them (file, manifest line, problem) or, with ``on_bad_image="skip"``, are
removed from the audit and reported in ``rejected.csv``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from salience_audit.data.sample import Sample
from salience_audit.errors import InputError

Rejected = tuple[str, int, str]


def check_image_file(path: str) -> str | None:
    """Return a problem description for an unreadable image file, or ``None`` when it looks fine."""
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


def preflight(
    datasets: Mapping[str, list[Sample]], on_bad_image: str = "stop", progress: bool = True
) -> tuple[dict[str, list[Sample]], list[Rejected]]:
    """Check every image of every dataset; return the usable datasets and the rejected items.

    With ``on_bad_image="stop"`` any problem raises :class:`InputError` naming each bad
    file with its manifest and line. An empty dataset is always an error.
    """
    total = sum(len(s) for s in datasets.values())
    bar = tqdm(total=total, desc="pre-flight", unit="img", disable=not progress)
    kept: dict[str, list[Sample]] = {}
    problems: list[tuple[Sample, str]] = []
    try:
        for name, samples in datasets.items():
            if not samples:
                raise InputError(f"dataset {name!r} holds no images")
            good: list[Sample] = []
            for s in samples:
                problem = check_image_file(s.path)
                if problem is None:
                    good.append(s)
                else:
                    problems.append((s, problem))
                bar.update(1)
            kept[name] = good
    finally:
        bar.close()
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
