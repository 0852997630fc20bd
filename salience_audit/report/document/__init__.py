"""The report as content: sections, paragraphs, tables and figure slots built from a summary."""
