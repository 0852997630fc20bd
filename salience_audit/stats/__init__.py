"""Statistics of per-sample values: bootstrap, two-sample tests, detection metrics, distributions, streaming
aggregates; run x image (crossed) CIs, run-level tests and the false discovery rate (``crossed``, ``runtests``,
``pairs``, ``fdr``)."""
