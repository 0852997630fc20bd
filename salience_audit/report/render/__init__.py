"""Rendering of a report document: figures (matplotlib), HTML and Markdown files."""
