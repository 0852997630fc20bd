"""Statistics of per-sample values: bootstrap, two-sample tests, detection metrics, distributions, streaming aggregates."""
