"""Benchmark modules. Every module here is imported by `bench.registry.discover()`; each registers
its benchmarks with `@register_benchmark` and writes its report through `bench.report`."""
