"""A small document model shared by the HTML and Markdown renderers.

The report content is built once as plain text in these blocks (no markup inside the
strings); each renderer escapes every string itself, so names and paths taken from the
data can never inject markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class FigureOut:
    """One rendered figure: a file-safe ``name``, its section, a title, a caption and the PNG bytes."""

    name: str
    section: str
    title: str
    caption: str
    png: bytes


@dataclass
class Cell:
    """A table cell: plain text (newlines allowed) and an optional style class.

    Classes: ``num`` (right-aligned number), ``good`` / ``bad`` (verdict colours),
    ``muted`` (secondary information), ``""`` (plain text).
    """

    text: str
    cls: str = ""


@dataclass
class Paragraph:
    """A paragraph of plain text; ``cls`` ``note`` renders it as a side note."""

    text: str
    cls: str = ""


@dataclass
class Heading:
    """A sub-heading inside a section (level 3 or 4)."""

    text: str
    level: int = 3
    anchor: str = ""


@dataclass
class Table:
    """A table of cells with a header row and an optional caption."""

    header: list[str]
    rows: list[list[Cell]]
    caption: str = ""


@dataclass
class FigureBlock:
    """A rendered figure with its caption."""

    figure: FigureOut


@dataclass
class KeyValues:
    """A two-column list of facts (metadata)."""

    items: list[tuple[str, str]]


@dataclass
class Details:
    """Blocks hidden behind a summary line in HTML (``<details>``); shown normally in Markdown."""

    summary: str
    blocks: list["Block"] = field(default_factory=list)


Block = Union[Paragraph, Heading, Table, FigureBlock, KeyValues, Details]


@dataclass
class Section:
    """A top-level section: an in-page anchor, a title and its blocks."""

    anchor: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    """The whole report."""

    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)

    def figures(self) -> list[FigureOut]:
        """Every figure of the document, in order."""
        found: list[FigureOut] = []

        def walk(blocks: list[Block]) -> None:
            for block in blocks:
                if isinstance(block, FigureBlock):
                    found.append(block.figure)
                elif isinstance(block, Details):
                    walk(block.blocks)

        for section in self.sections:
            walk(section.blocks)
        return found


def kind(block: Block) -> str:
    """The renderer's name for a block type."""
    return type(block).__name__.lower()
