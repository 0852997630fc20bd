"""Render a :class:`~salience_audit.report.document.blocks.Document` as Markdown.

Figures are referenced as PNG files in a ``figures/`` folder next to the Markdown file.
Every string from the data is escaped: ``<``, ``>`` and ``&`` become HTML entities (Markdown
viewers pass raw HTML through) and Markdown punctuation is backslash-escaped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from salience_audit.report.document.blocks import (
    Block,
    Cell,
    Details,
    Document,
    FigureBlock,
    Heading,
    KeyValues,
    Paragraph,
    Table,
)

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~])")
FIGURE_DIR = "figures"


def md_escape(text: str) -> str:
    """Plain text safe in Markdown (and in the HTML it may be rendered to); newlines become <br>."""
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False))
    return escaped.replace("\r", "").replace("\n", "<br>")


def _table(table: Table) -> list[str]:
    lines = []
    if table.caption:
        lines += [f"*{md_escape(table.caption)}*", ""]
    lines.append("| " + " | ".join(md_escape(h) for h in table.header) + " |")
    aligns = []
    for col in range(len(table.header)):
        numeric = any(col < len(r) and "num" in r[col].cls.split() for r in table.rows)
        aligns.append("---:" if numeric else "---")
    lines.append("| " + " | ".join(aligns) + " |")
    for row in table.rows:
        lines.append("| " + " | ".join(md_escape(c.text) for c in row) + " |")
    return lines + [""]


def _blocks(blocks: Iterable[Block], depth: int = 0) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            text = md_escape(block.text)
            lines += [f"> {text}" if block.cls == "note" else (f"*{text}*" if block.cls == "question" else text), ""]
        elif isinstance(block, Heading):
            lines += ["#" * min(6, block.level + depth) + " " + md_escape(block.text), ""]
        elif isinstance(block, Table):
            lines += _table(block)
        elif isinstance(block, FigureBlock):
            fig = block.figure
            lines += [f"![{md_escape(fig.title)}]({FIGURE_DIR}/{fig.name}.png)", "", f"*{md_escape(fig.caption)}*", ""]
        elif isinstance(block, KeyValues):
            lines += _table(Table(["Item", "Value"], [[Cell(k), Cell(v)] for k, v in block.items]))
        elif isinstance(block, Details):
            lines += [f"**{md_escape(block.summary)}**", ""] + _blocks(block.blocks, depth=1)
    return lines


def render_markdown(doc: Document) -> str:
    """The document as one Markdown string."""
    lines = [f"# {md_escape(doc.title)}", ""]
    if doc.subtitle:
        lines += [md_escape(doc.subtitle), ""]
    lines += ["Contents: " + " · ".join(md_escape(s.title) for s in doc.sections), ""]
    for section in doc.sections:
        lines += [f"## {md_escape(section.title)}", ""]
        lines += _blocks(section.blocks)
    return "\n".join(lines).rstrip() + "\n"
