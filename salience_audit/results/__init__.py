"""Audit results on disk: the row schema, the shard store, the one Parquet reader, JSON I/O."""
