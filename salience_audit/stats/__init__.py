"""Statistics of an audit: run x image CIs, run-level tests, false discovery rate."""
