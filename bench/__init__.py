"""vsbench harness: registry of benchmarks, metrics, datasets, result store and report writer."""

__version__ = "0.1.0"
